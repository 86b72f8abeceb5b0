"""Hot-path SQL, run on the DBAPI cursor directly.

SQLAlchemy Core builds the searches; the few statements every read and write runs are plain SQL
on the driver's cursor, because SQLAlchemy's per-statement overhead (~150 µs) was the largest cost
of a write (measured: bench/RESULTS.md). Statements are written once with ``?`` placeholders;
PostgreSQL (psycopg) gets the ``%s`` form.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Q", "cursor_of"]


class Q:
    """One statement in both paramstyles."""

    __slots__ = ("format", "qmark")

    def __init__(self, sql: str) -> None:
        self.qmark = sql
        self.format = sql.replace("%", "%%").replace("?", "%s")

    def __call__(self, pg: bool) -> str:
        return self.format if pg else self.qmark


def cursor_of(conn: Any) -> Any:
    """The DBAPI cursor of a SQLAlchemy Connection (inside its current transaction)."""
    return conn.connection.driver_connection.cursor()


SELECT_CURRENT = Q(
    "SELECT r.version, r.last_updated, r.deleted, v.raw FROM resource r "
    "JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
    "WHERE r.res_type = ? AND r.res_id = ?"
)
SELECT_FOR_WRITE = Q("SELECT pk, version, deleted FROM resource WHERE res_type = ? AND res_id = ?")
IDS_PER_LOOKUP = 500
"""Most ids in one ``EXISTING_IDS`` statement (SQLite allows 32,766 parameters since 3.32; PostgreSQL 65,535)."""


def existing_ids(n: int, pg: bool) -> str:
    """Which of ``n`` ids of one resource type are stored (deleted or not): parameters type, id…"""
    marks = ", ".join(["%s" if pg else "?"] * n)
    return f"SELECT res_id FROM resource WHERE res_type = {'%s' if pg else '?'} AND res_id IN ({marks})"
SELECT_FOR_WRITE_PG = Q("SELECT pk, version, deleted FROM resource WHERE res_type = ? AND res_id = ? FOR UPDATE")
INSERT_RESOURCE = Q(
    "INSERT INTO resource (res_type, res_id, version, last_updated, deleted) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (res_type, res_id) DO NOTHING RETURNING pk"
)
# Bulk creates (WriteSession._create_fresh): keys taken up front, rows inserted with executemany.
MAX_PKS = "SELECT (SELECT coalesce(max(pk), 0) FROM resource), (SELECT coalesce(max(vpk), 0) FROM resource_version)"
NEXT_PKS_PG = "SELECT nextval(pg_get_serial_sequence('resource', 'pk')) FROM generate_series(1, %s)"
NEXT_VPKS_PG = "SELECT nextval(pg_get_serial_sequence('resource_version', 'vpk')) FROM generate_series(1, %s)"
COPY_RESOURCE = "COPY resource (pk, res_type, res_id, version, last_updated, deleted) FROM STDIN"
COPY_VERSION = (
    "COPY resource_version (vpk, res_pk, res_type, res_id, version, last_updated, method, deleted, raw) FROM STDIN"
)
INSERT_RESOURCE_PK = Q(
    "INSERT INTO resource (pk, res_type, res_id, version, last_updated, deleted) VALUES (?, ?, ?, 1, ?, false)"
)
INSERT_VERSION_PK = Q(
    "INSERT INTO resource_version (vpk, res_pk, res_type, res_id, version, last_updated, method, deleted, raw) "
    "VALUES (?, ?, ?, ?, 1, ?, ?, false, ?)"
)
UPDATE_RESOURCE = Q("UPDATE resource SET version = ?, last_updated = ?, deleted = ? WHERE pk = ?")
INSERT_VERSION = Q(
    "INSERT INTO resource_version (res_pk, res_type, res_id, version, last_updated, method, deleted, raw) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING vpk"
)
SELECT_VERSION = Q(
    "SELECT version, last_updated, deleted, raw, method FROM resource_version "
    "WHERE res_type = ? AND res_id = ? AND version = ?"
)
SELECT_VERSION_RAW = Q("SELECT last_updated, raw FROM resource_version WHERE res_pk = ? AND version = ?")
LOCK_CRITERIA = Q(
    "INSERT INTO cond_lock (res_type, criteria_hash, touched) VALUES (?, ?, ?) "
    "ON CONFLICT (res_type, criteria_hash) DO UPDATE SET touched = excluded.touched"
)
# Conditional writes on one identifier (WriteSession._find_identifier): the token index's
# (res_type, param, code, res_pk, system) index, same conditions as search/sql.py ``_token``.
_FIND_IDENTIFIER = (
    "SELECT DISTINCT r.pk, r.res_id FROM idx_token t JOIN resource r ON r.pk = t.res_pk "
    "WHERE t.res_type = ? AND t.param = 'identifier' AND t.code = ? {} AND r.deleted = ? LIMIT 1002"
)
FIND_IDENTIFIER = Q(_FIND_IDENTIFIER.format("AND (t.system = ? OR t.system IS NULL)"))
FIND_IDENTIFIER_NO_SYSTEM = Q(_FIND_IDENTIFIER.format("AND t.system IS NULL"))
FIND_IDENTIFIER_ANY = Q(_FIND_IDENTIFIER.format(""))
INSERT_OUTBOX = Q(
    "INSERT INTO outbox (vpk, res_type, res_id, version, action, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_COMPARTMENT = Q("INSERT INTO compartment (res_pk, res_type, patient_id) VALUES (?, ?, ?)")

# Index tables: column order after (res_pk, res_type) equals the row dataclass's field order.
INDEX_COLUMNS = {
    "strings": ("idx_string", ("param", "norm", "exact")),
    "tokens": ("idx_token", ("param", "system", "code", "text", "type_system", "type_code")),
    "references": ("idx_reference", ("param", "target_type", "target_id", "url")),
    "dates": ("idx_date", ("param", "low", "high")),
    "numbers": ("idx_number", ("param", "value")),
    "quantities": ("idx_quantity", ("param", "value", "system", "code", "unit")),
    "uris": ("idx_uri", ("param", "uri")),
    "composites": (
        "idx_composite",
        ("param", "system", "code", "value", "value_system", "value_code", "value_unit", "value_text"),
    ),
}
INSERT_INDEX = {
    name: Q(f"INSERT INTO {table} (res_pk, res_type, {', '.join(cols)}) VALUES ({', '.join('?' * (len(cols) + 2))})")
    for name, (table, cols) in INDEX_COLUMNS.items()
}
COPY_INDEX = {
    name: f"COPY {table} (res_pk, res_type, {', '.join(cols)}) FROM STDIN" for name, (table, cols) in INDEX_COLUMNS.items()
}
COPY_COMPARTMENT = "COPY compartment (res_pk, res_type, patient_id) FROM STDIN"
DELETE_INDEX = {
    name: Q(f"DELETE FROM {table} WHERE res_pk = ?") for name, (table, _cols) in INDEX_COLUMNS.items()
}
DELETE_COMPARTMENT = Q("DELETE FROM compartment WHERE res_pk = ?")


OLDEST_WRITE_AGE_PG = Q(
    "SELECT (extract(epoch FROM clock_timestamp() - min(a.xact_start)) * 1000)::bigint"
    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'relation' AND l.relation = to_regclass('resource')"
    " AND l.mode IN ('RowShareLock', 'RowExclusiveLock') AND l.pid <> pg_backend_pid() AND l.pid <> ALL(?)"
)
"""How long ago (ms, by the server's clock) the oldest transaction that writes (or locks rows of) the
``resource`` table began; NULL when none does. ``to_regclass`` resolves the name on the ``search_path``, so only
this store's table counts (``Store.write_horizon``). The parameter: backend pids to leave out (this
process's writes, whose stamps the store knows)."""

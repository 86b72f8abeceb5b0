"""The one write path of the FHIR store (DESIGN: "The store is the centre").

Every write — REST, transaction bundle, HL7 conversion, console, workflow API — goes through a
``WriteSession``: validate → assign version → write version and current row → extract index rows
and patient-compartment membership → append an outbox event, all in one database transaction.
Nothing else writes resource tables.

Index rows are buffered per session and flushed in batches (before any read in the session and at
commit), which is what makes bulk loads fast without a second code path. A bulk load may run the
pure steps (validate, extract, serialise: ``prepare.py``) in other processes and pass the results to
``write_prepared``, which does the rest here (``_write``, or ``_create_fresh`` for a batch of new
server-assigned ids); ``savepoint`` lets one database transaction carry many all-or-nothing units
(transaction Bundles).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any

import sqlalchemy as sa

from ..errors import (
    BadRequest,
    Conflict,
    FhirError,
    Gone,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from ..jsonio import dumps
from ..search.types import IndexRows
from . import sql as q
from .engine import WRITE_OPTION
from .model import Stored, WriteResult, iso_instant
from .prepare import (
    _LIMITS,
    PreparedBatch,
    check_resource,
    index_tuples,
    stored_json,
)
from .sql import cursor_of

__all__ = ["ID_PATTERN", "Store", "WriteSession", "parse_etag"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FOREIGN_WRITE_SLACK_MS = 1000
"""``write_horizon`` on PostgreSQL: how long before its transaction's first statement a write of
another process may have been stamped (the time it takes from ``Store.writer()`` to touching a row)."""
_INTERACTION = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stored_form(res_type: str, res_id: str, resource: dict[str, Any] | None,
                 prepared: tuple[PreparedBatch, int] | None, version: int,
                 last_updated: int) -> tuple[bytes, dict[str, Any] | None]:
    """The stored JSON of ``resource`` (or of the prepared entry) as version ``version`` written at
    ``last_updated``: ``resourceType``, ``id``, ``meta`` (with versionId and lastUpdated) first.
    Also the resource in that form (None for a prepared entry, which is already serialised)."""
    stamp = {"versionId": str(version), "lastUpdated": iso_instant(last_updated)}
    if prepared is not None:
        entry = prepared[0].entries[prepared[1]]
        return stored_json(res_type, res_id, {**entry.meta, **stamp}, entry.body), None
    assert resource is not None
    meta = dict(resource.get("meta") or {})
    meta.update(stamp)
    ordered: dict[str, Any] = {"resourceType": res_type, "id": res_id, "meta": meta}
    for key, value in resource.items():
        if key not in ordered:
            ordered[key] = value
    return dumps(ordered), ordered


def _if_match_holds(value: str, current: int | None) -> bool:
    """RFC 9110 §13.1.1: ``If-Match: *`` holds when a current version exists (``current`` not None),
    an ETag when it names that version. A value that is neither answers 400, even with no version."""
    if value.strip() == "*":
        return current is not None
    return parse_etag(value) == current


def _asked(if_match: str) -> str:
    return "any current version" if if_match.strip() == "*" else f"version {parse_etag(if_match)}"


def parse_etag(value: str) -> int:
    """``W/"3"`` or ``"3"`` or ``3`` → 3 (http://hl7.org/fhir/R4/http.html#versioning)."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise BadRequest(f"ETag {value!r} is not a version; expected W/\"<versionId>\".")
    return int(text)


_VALIDATE: Callable[[dict[str, Any]], list[Any]] | None = None
_EXTRACT: Callable[[dict[str, Any]], IndexRows] | None = None


def _default_validate(resource: dict[str, Any]) -> list[Any]:
    # Imported on first use (loading the R4 tables takes a while), then kept: this runs per write.
    global _VALIDATE
    if _VALIDATE is None:
        from ..validation import validate

        _VALIDATE = validate
    return _VALIDATE(resource)


def _default_extract(resource: dict[str, Any]) -> IndexRows:
    global _EXTRACT
    if _EXTRACT is None:
        from ..search.extract import extract_index

        _EXTRACT = extract_index
    return _EXTRACT(resource)


def _memory_journal(conn: sa.Connection) -> Any:
    """Keep this SQLite connection's statement journal in memory for its next transaction; returns
    the DBAPI connection (the caller sets ``temp_store`` back to the default after the transaction).

    Every savepoint (a transaction Bundle of a load) copies each page it is first to change into
    the statement journal, a temporary file once it passes 64 KiB (sqlite.org/tempfiles.html,
    "Statement Journal Files"): a ``pwrite`` per page, ~9% of the writer's CPU in a profile of a
    load. With ``temp_store=MEMORY`` the journal is memory, truncated when the outermost savepoint
    is released, so it holds at most the pages of one unit. It only serves ROLLBACK TO within the
    transaction: durability is the WAL's, unchanged. The pragma must come before BEGIN (SQLite
    fixes the journal's place when a transaction starts)."""
    raw: Any = conn.connection.driver_connection
    raw.execute("PRAGMA temp_store=MEMORY")
    return raw


def new_uuid() -> str:
    """The default server-assigned id (a module function, so other processes can be handed it)."""
    return str(uuid.uuid4())


class Store:
    """Owns the engine; hands out read connections and write sessions."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        clock: Callable[[], int] = now_ms,
        new_id: Callable[[], str] = new_uuid,
        validate: Callable[[dict[str, Any]], list[Any]] = _default_validate,
        extract: Callable[[dict[str, Any]], IndexRows] = _default_extract,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.new_id = new_id
        self.validate = validate
        self.extract = extract
        self.dialect = engine.dialect.name
        self.inline = self.dialect == "sqlite"
        """True when calls are cheap enough to run on the event loop (embedded SQLite)."""
        self.executor: ThreadPoolExecutor | None = None
        if not self.inline:
            # A bounded set of threads for database calls, each keeping its read connection.
            size = getattr(engine.pool, "size", lambda: 8)()
            self.executor = ThreadPoolExecutor(max_workers=max(2, size), thread_name_prefix="ehrgate-db")
        self._local = threading.local()
        self._writes: dict[object, tuple[int, int]] = {}
        """(stamp - ``WriteSession.now`` -, PostgreSQL backend pid or 0) of this process's write
        transactions in progress."""
        self._writes_lock = threading.Lock()

    # -- sessions ---------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def writer(self, *, bulk: bool = False) -> Iterator[WriteSession]:
        """A write transaction. ``bulk`` (long transactions of many savepoints: the loader's, the
        ``fhir_store`` destination's batches): on SQLite its statement journal is kept in memory
        (``_memory_journal``)."""
        with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
            key = object()
            journal = _memory_journal(conn) if bulk and self.dialect == "sqlite" else None
            try:
                with conn.begin():
                    session = self._stamped_session(key, conn)
                    yield session
                    session.flush()
            finally:
                with self._writes_lock:
                    self._writes.pop(key, None)  # after the commit (or rollback)
                if journal is not None:
                    with suppress(sqlite3.Error):  # never hide what ended the transaction
                        journal.execute("PRAGMA temp_store=DEFAULT")

    def _stamped_session(self, key: object, conn: sa.Connection) -> WriteSession:
        """A ``WriteSession`` whose stamp is taken and recorded as one step, for ``write_horizon``."""
        raw: Any = conn.connection.driver_connection
        pid = raw.info.backend_pid if self.dialect == "postgresql" else 0
        with self._writes_lock:
            session = WriteSession(self, conn)
            self._writes[key] = (session.now, pid)
        return session

    def write_horizon(self) -> int:
        """An instant H (epoch ms) such that every write stamped before H has ended (committed or
        rolled back) and every write still running or yet to come is stamped at H or later. A write
        stamps ``lastUpdated`` when it starts, before it commits, so "now" is not such an instant:
        an export whose transactionTime is H - 1 reads every resource changed at or before it, and
        leaves the later ones to the next ``_since`` (Bulk Data IG, export.html, transactionTime).

        SQLite: one writer at a time, stamped after it takes the write lock; H is read while this
        call holds the lock, so no write is in progress (in any process) and later ones stamp after.
        PostgreSQL: the oldest stamp of this process's writes in progress, and the start of the
        oldest transaction of other processes that writes this store's ``resource`` table, less
        ``FOREIGN_WRITE_SLACK_MS`` (such a write was stamped just before its first statement)."""
        if self.dialect == "sqlite":
            with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
                with conn.begin():  # BEGIN IMMEDIATE: waits for the write in progress, if any
                    return self.clock()
        with self._writes_lock:
            now = self.clock()
            ours = list(self._writes.values())
        horizon = min([now, *(stamp for stamp, _pid in ours)])
        with self.engine.connect() as conn:
            cur = cursor_of(conn)
            cur.execute(q.OLDEST_WRITE_AGE_PG.format, ([pid for _stamp, pid in ours],))
            age = cur.fetchone()[0]
        if age is not None:
            horizon = min(horizon, now - int(age) - FOREIGN_WRITE_SLACK_MS)
        return horizon

    def holds_connection(self) -> bool:
        """True when this thread keeps a database connection open for reads (see ``_fetch``)."""
        return getattr(self._local, "raw", None) is not None

    # -- reads ------------------------------------------------------------------------------

    def _fetch(self, stmt: q.Q, params: tuple[Any, ...], conn: sa.Connection | None) -> Any:
        """One row of a hot-path SELECT: inside ``conn`` when given, else on a short read."""
        pg = self.dialect == "postgresql"
        if conn is not None:
            cur = cursor_of(conn)
            cur.execute(stmt(pg), params)
            return cur.fetchone()
        if not pg:
            # Embedded SQLite: a per-thread connection in autocommit mode; one SELECT is atomic.
            raw: Any = getattr(self._local, "raw", None)
            if raw is None:
                # Keep the pool's proxy referenced: dropping it would hand the connection back to
                # the pool while this thread still uses it.
                self._local.fairy = self.engine.raw_connection()
                raw = self._local.raw = self._local.fairy.driver_connection
            return raw.execute(stmt.qmark, params).fetchone()
        # PostgreSQL: a per-thread connection in autocommit mode (one round trip per read instead
        # of a pool checkout, a pre-ping, the SELECT and a rollback); reconnects after an error.
        raw = getattr(self._local, "raw", None)
        if raw is None:
            fairy = self.engine.raw_connection()
            raw = fairy.driver_connection
            fairy.detach()  # ours for the thread's lifetime, no longer the pool's
            raw.autocommit = True
            self._local.raw = raw
        try:
            with raw.cursor() as cur:
                cur.execute(stmt.format, params)
                return cur.fetchone()
        except Exception:
            self._local.raw = None
            try:
                raw.close()
            except Exception:  # noqa: BLE001 - the connection is gone either way
                pass
            raise

    def read(self, res_type: str, res_id: str, conn: sa.Connection | None = None) -> Stored:
        try:
            row = self._fetch(q.SELECT_CURRENT, (res_type, res_id), conn)
        except Exception:
            if "\x00" not in res_id:
                raise
            row = None  # PostgreSQL's driver refuses U+0000 before sending; no id holds one (ID_PATTERN)
        if row is None:
            raise NotFound(f"{res_type}/{res_id} is not known.")
        version, last_updated, deleted, raw = row
        stored = Stored(res_type, res_id, version, last_updated, bool(deleted), bytes(raw) if raw is not None else None)
        if stored.deleted:
            err = Gone(f"{res_type}/{res_id} was deleted (version {version}).")
            err.headers["ETag"] = stored.etag
            raise err
        return stored

    def vread(self, res_type: str, res_id: str, version: int) -> Stored:
        row = self._fetch(q.SELECT_VERSION, (res_type, res_id, version), None) if ID_PATTERN.match(res_id) else None
        if row is None:
            raise NotFound(f"{res_type}/{res_id} has no version {version}.")
        ver, last_updated, deleted, raw, method = row
        stored = Stored(res_type, res_id, ver, last_updated, bool(deleted), bytes(raw) if raw is not None else None, method)
        if stored.deleted:
            raise Gone(f"Version {version} of {res_type}/{res_id} is a deletion.")
        return stored

    # -- one-shot writes --------------------------------------------------------------------

    def create(self, res_type: str, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        with self.writer() as w:
            return w.create(res_type, resource, if_none_exist=if_none_exist)

    def update(self, res_type: str, res_id: str, resource: dict[str, Any], *, if_match: str | None = None) -> WriteResult:
        with self.writer() as w:
            return w.update(res_type, res_id, resource, if_match=if_match)

    def delete(self, res_type: str, res_id: str, *, if_match: str | None = None) -> WriteResult:
        with self.writer() as w:
            return w.delete(res_type, res_id, if_match=if_match)


class WriteSession:
    """One database transaction of writes. Use through ``Store.writer()``."""

    def __init__(self, store: Store, conn: sa.Connection) -> None:
        self.store = store
        self.conn = conn
        self._pending: dict[int, tuple[str, str, IndexRows]] = {}
        """Index rows not yet written: pk -> (type, id, rows)."""
        self._locked: set[tuple[str, str]] = set()
        self._stale: set[int] = set()
        self._outbox: list[tuple[Any, ...]] = []
        # Rows of prepared writes, already keyed by pk: table name -> rows, and compartments.
        self._flat: dict[str, list[tuple[Any, ...]]] = {}
        self._flat_comps: list[tuple[Any, ...]] = []
        self._flat_pks: set[int] = set()
        self._last_pk = 0
        self._pg = store.dialect == "postgresql"
        self.cur = cursor_of(conn)
        self.now = store.clock()
        self.guard: Callable[[sa.Connection, str, str, str | None, Any], None] | None = None
        """Called before every write (and conditional match) with (conn, interaction, type, id,
        resource): the caller's access rules, applied inside the transaction (fhir/guard.py)."""

    # -- helpers ----------------------------------------------------------------------------

    def _check(self, res_type: str, resource: dict[str, Any]) -> None:
        check_resource(res_type, resource, self.store.validate)

    def _current(self, res_type: str, res_id: str) -> Any:
        stmt = q.SELECT_FOR_WRITE_PG if self._pg else q.SELECT_FOR_WRITE
        self.cur.execute(stmt(self._pg), (res_type, res_id))
        return self.cur.fetchone()

    def lock_criteria(self, res_type: str, criteria: str) -> None:
        """Serialise conditional writes on the same criteria (a row lock, not a read-then-write race).

        PostgreSQL: a row of ``cond_lock``, taken once per transaction. SQLite needs none: every
        write transaction begins with ``BEGIN IMMEDIATE`` and holds the database's one write lock
        from its first statement to its commit, so no other writer runs between search and write.
        """
        if not self._pg:
            return
        key = (res_type, criteria)
        if key in self._locked:
            return
        self.cur.execute(q.LOCK_CRITERIA(self._pg), (res_type, _criteria_digest(criteria), self.now))
        self._locked.add(key)

    def lock_criteria_all(self, items: Iterable[tuple[str, str]]) -> None:
        """Take the locks of several conditional writes now, in one global order (resource type,
        then the criteria's digest), before any of them is written. Two transactions that take
        their locks one by one, in the order of their entries, can each hold one the other waits
        for - a deadlock PostgreSQL ends by failing one of them; taken in one order, the second
        waits for the first instead. A transaction Bundle takes its conditional entries' locks
        this way, and the ``fhir_store`` destination those of every message of a batch. SQLite:
        nothing to do (one writer at a time)."""
        if not self._pg:
            return
        wanted: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for res_type, criteria in items:
            if (res_type, criteria) not in self._locked:
                wanted.setdefault((res_type, _criteria_digest(criteria)), []).append((res_type, criteria))
        for (res_type, digest), keys in sorted(wanted.items()):
            self.cur.execute(q.LOCK_CRITERIA(self._pg), (res_type, digest, self.now))
            self._locked.update(keys)

    def find(self, res_type: str, criteria: str) -> list[tuple[int, str]]:
        """(pk, id) of the current resources that match a search query string."""
        token = _identifier_criteria(res_type, criteria)
        if token is not None and not self._flat_pks:
            return self._find_identifier(res_type, *token)
        from ..search.engine import match_ids

        self.flush()
        return match_ids(self.conn, res_type, criteria, self.store.dialect)

    def _find_identifier(self, res_type: str, system: str | None, code: str, any_system: bool) -> list[tuple[int, str]]:
        """``identifier=[system|]code`` (the criteria of nearly every conditional write a converted
        HL7 message makes) answered from the token index directly and from this session's
        buffered rows, without flushing them: the same matches as the search (sql.py ``_token``:
        ``system|code`` also matches an identifier indexed without a system), as
        ``flush(); match_ids(...)`` would return them."""
        if len(self._pending) > _SCAN_PENDING_MAX:
            self.flush()
        pg = self._pg
        if any_system:
            self.cur.execute(q.FIND_IDENTIFIER_ANY(pg), (res_type, code, False))
        elif system is None:
            self.cur.execute(q.FIND_IDENTIFIER_NO_SYSTEM(pg), (res_type, code, False))
        else:
            self.cur.execute(q.FIND_IDENTIFIER(pg), (res_type, code, system, False))
        # Rows of resources rewritten since the last flush are stale (their new rows are pending).
        stale = self._stale
        out = [(pk, rid) for pk, rid in self.cur.fetchall() if pk not in stale and pk not in self._pending]
        if not self._pending:
            return out
        limit_system, limit_code = _LIMITS["tokens"][1], _LIMITS["tokens"][2]
        for pk, (rtype, rid, rows) in self._pending.items():
            if rtype != res_type:
                continue
            for row in rows.tokens:
                if row.param != "identifier" or row.code is None or row.code[:limit_code] != code:
                    continue
                have = row.system[:limit_system] if row.system is not None else None
                if any_system or have is None or (system is not None and have == system):
                    out.append((pk, rid))
                    break
        return out

    def _write(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any] | None,
        *,
        method: str,
        if_match: str | None = None,
        fresh_id: bool = False,
        prepared: tuple[PreparedBatch, int] | None = None,
    ) -> WriteResult:
        """Write a new version (``resource`` None = delete). The single place versions are made.

        ``fresh_id``: the id was just generated by the server, so no current row can exist and the
        lookup is skipped (the insert's ON CONFLICT still guards it). ``prepared``: (batch, entry
        number) of an entry validated, extracted and serialised by ``prepare.py``; ``resource`` is
        then None and the JSON and index rows come from the batch.
        """
        pg = self._pg
        cur = self.cur
        if self.guard is not None:
            self.flush()
            self.guard(self.conn, _INTERACTION[method], res_type, res_id, resource)
        row = None if fresh_id else self._current(res_type, res_id)
        if if_match is not None:
            current = None if row is None or row[2] else row[1]
            if not _if_match_holds(if_match, current):
                have = "no current version" if current is None else f"version {current}"
                raise PreconditionFailed(
                    f"If-Match asked for {_asked(if_match)} of {res_type}/{res_id}, but the server has {have}."
                )
        if resource is None and prepared is None:
            if row is None:
                raise NotFound(f"{res_type}/{res_id} is not known.")
            if row[2]:
                return WriteResult(Stored(res_type, res_id, row[1], self.now, True, None), 204, "unchanged")

        deleted = resource is None and prepared is None
        if row is not None and not row[2] and not deleted:
            same = self._unchanged(row, res_type, res_id, resource, prepared, method)
            if same is not None:
                return same
        if row is None:
            cur.execute(q.INSERT_RESOURCE(pg), (res_type, res_id, 1, self.now, deleted))
            created = cur.fetchone()
            if created is None:  # another transaction created it between our lookup and insert
                row = self._current(res_type, res_id)
                if row is None:
                    raise Conflict(f"{res_type}/{res_id} is being created by another request; retry.")
            else:
                pk, version, is_new = created[0], 1, True
        if row is not None:
            pk, version, is_new = row[0], row[1] + 1, bool(row[2])
            self._stale.add(pk)
            cur.execute(q.UPDATE_RESOURCE(pg), (version, self.now, deleted, pk))

        self._last_pk = pk
        raw: bytes | None = None
        if prepared is not None or resource is not None:
            raw, resource = _stored_form(res_type, res_id, resource, prepared, version, self.now)
        cur.execute(q.INSERT_VERSION(pg), (pk, res_type, res_id, version, self.now, method, deleted, raw))
        vpk = cur.fetchone()[0]
        if pk in self._flat_pks:
            self._drop_flat(pk)
        if prepared is not None:
            self._pending.pop(pk, None)
            self._flat_pks.add(pk)
        elif resource is not None:
            self._pending[pk] = (res_type, res_id, self.store.extract(resource))
        else:
            self._pending.pop(pk, None)
        action = "delete" if deleted else ("create" if is_new else "update")
        self._outbox.append((vpk, res_type, res_id, version, action, self.now))
        stored = Stored(res_type, res_id, version, self.now, deleted, raw, method)
        if deleted:
            return WriteResult(stored, 204, "deleted")
        return WriteResult(stored, 201 if is_new else 200, "created" if is_new else "updated")

    def _unchanged(self, row: Any, res_type: str, res_id: str, resource: dict[str, Any] | None,
                   prepared: tuple[PreparedBatch, int] | None, method: str) -> WriteResult | None:
        """The current version, when the new content is byte for byte that version's (its
        ``meta.versionId`` and ``meta.lastUpdated`` aside): an update that changes nothing makes no
        new version, no index rows and no store event (a replayed HL7 message, a client that PUTs
        back what it read). Else None. Checked before anything is written; the comparison is of the
        stored JSON, so a difference in key order alone still makes a version."""
        pk, version = row[0], row[1]
        self.cur.execute(q.SELECT_VERSION_RAW(self._pg), (pk, version))
        found = self.cur.fetchone()
        if found is None or found[1] is None:
            return None
        last_updated, current = found[0], bytes(found[1])
        candidate, _ = _stored_form(res_type, res_id, resource, prepared, version, last_updated)
        if candidate != current:
            return None
        self._last_pk = pk
        return WriteResult(Stored(res_type, res_id, version, last_updated, False, current, method), 200, "unchanged")

    def _copy(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        """PostgreSQL COPY … FROM STDIN: many rows at a fraction of the server work of INSERTs."""
        with self.cur.copy(statement) as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def _drop_flat(self, pk: int) -> None:
        """Forget the buffered rows of ``pk`` (written again in this session before a flush)."""
        for rows in self._flat.values():
            rows[:] = [r for r in rows if r[0] != pk]
        self._flat_comps = [r for r in self._flat_comps if r[0] != pk]
        self._flat_pks.discard(pk)

    def write_prepared(self, batch: PreparedBatch) -> list[WriteResult]:
        """Store every entry of ``batch`` (see prepare.py), in order: through ``_write``, or
        ``_create_fresh`` when every entry is a POST (new server-assigned ids).

        POST entries are creates with the server-assigned id the batch carries; PUT entries are
        create-or-update by id. Raises the store's FhirError like the single writes; wrap the call in
        ``savepoint()`` to keep a failed batch from leaving part of itself behind.
        """
        if self.guard is not None:
            raise RuntimeError("write_prepared applies no access rules; use create/update under a guard")
        if batch.entries and (all(e.method == "POST" for e in batch.entries) or self._all_new(batch)):
            results, pks = self._create_fresh(batch)
        else:
            results, pks = [], []
            write = self._write
            for n, entry in enumerate(batch.entries):
                post = entry.method == "POST"
                result = write(entry.res_type, entry.res_id, None, method=entry.method, fresh_id=post, prepared=(batch, n))
                results.append(result)
                pks.append(self._last_pk)
        types = [e.res_type for e in batch.entries]
        # One resource twice: its last version's rows. An unchanged one (no new version): none.
        latest = {pk: n for n, pk in enumerate(pks) if results[n].outcome != "unchanged"}
        keep = None if len(latest) == len(pks) else set(latest.values())
        for name, rows in batch.rows.items():
            if rows:
                self._flat.setdefault(name, []).extend(
                    (pks[r[0]], types[r[0]], *r[1:]) for r in rows if keep is None or r[0] in keep
                )
        self._flat_comps.extend((pks[n], types[n], p) for n, p in batch.compartments if keep is None or n in keep)
        return results

    def _all_new(self, batch: PreparedBatch) -> bool:
        """Whether every PUT of ``batch`` creates its resource: its id is not stored (not even
        deleted) and comes once in the batch - as when a load of NDJSON files with ids (a Bulk Data
        export) meets an empty or another system's database. Then the batch is written as creates,
        in a few statements, instead of a lookup and two inserts per resource. One query per type
        and ``IDS_PER_LOOKUP`` ids."""
        wanted: dict[str, list[str]] = {}
        seen: set[tuple[str, str]] = set()
        for e in batch.entries:
            if e.method != "PUT":
                continue
            key = (e.res_type, e.res_id)
            if key in seen:
                return False
            seen.add(key)
            wanted.setdefault(e.res_type, []).append(e.res_id)
        cur, pg = self.cur, self._pg
        for res_type, ids in wanted.items():
            for start in range(0, len(ids), q.IDS_PER_LOOKUP):
                chunk = ids[start:start + q.IDS_PER_LOOKUP]
                cur.execute(q.existing_ids(len(chunk), pg), (res_type, *chunk))
                if cur.fetchone() is not None:
                    return False
        return True

    def _create_fresh(self, batch: PreparedBatch) -> tuple[list[WriteResult], list[int]]:
        """Version 1 of resources that do not exist yet (POSTs with new server-assigned ids, PUTs of
        ids ``_all_new`` found free): what ``_write`` does for each, in batched statements
        (executemany; COPY on PostgreSQL). Keys are taken up front: on PostgreSQL from the sequences, on
        SQLite as max + 1… while this transaction holds the write lock (BEGIN IMMEDIATE)."""
        pg, cur, now = self._pg, self.cur, self.now
        n = len(batch.entries)
        if pg:
            cur.execute(q.NEXT_PKS_PG, (n,))
            pks = [r[0] for r in cur.fetchall()]
            cur.execute(q.NEXT_VPKS_PG, (n,))
            vpks = [r[0] for r in cur.fetchall()]
        else:
            cur.execute(q.MAX_PKS)
            pk0, vpk0 = cur.fetchone()
            pks = list(range(pk0 + 1, pk0 + 1 + n))
            vpks = list(range(vpk0 + 1, vpk0 + 1 + n))
        instant = iso_instant(now)
        stamp = {"versionId": "1", "lastUpdated": instant}
        raws = [stored_json(e.res_type, e.res_id, {**e.meta, **stamp}, e.body) for e in batch.entries]
        entries = batch.entries
        try:
            if pg:
                self._copy(q.COPY_RESOURCE, [(pk, e.res_type, e.res_id, 1, now, False) for pk, e in zip(pks, entries, strict=True)])
            else:
                cur.executemany(q.INSERT_RESOURCE_PK.qmark, [(pk, e.res_type, e.res_id, now) for pk, e in zip(pks, entries, strict=True)])
        except self.conn.dialect.loaded_dbapi.IntegrityError:
            raise Conflict("A resource with one of the new ids already exists; retry.") from None
        if pg:
            self._copy(q.COPY_VERSION, [(vpk, pk, e.res_type, e.res_id, 1, now, e.method, False, raw)
                                        for vpk, pk, e, raw in zip(vpks, pks, entries, raws, strict=True)])
        else:
            cur.executemany(q.INSERT_VERSION_PK.qmark, [
                (vpk, pk, e.res_type, e.res_id, now, e.method, raw)
                for vpk, pk, e, raw in zip(vpks, pks, entries, raws, strict=True)
            ])
        self._outbox.extend((vpk, e.res_type, e.res_id, 1, "create", now)
                            for vpk, e in zip(vpks, batch.entries, strict=True))
        results = [WriteResult(Stored(e.res_type, e.res_id, 1, now, False, raw, e.method), 201, "created")
                   for e, raw in zip(batch.entries, raws, strict=True)]
        self._flat_pks.update(pks)
        return results, pks

    @contextmanager
    def savepoint(self) -> Iterator[WriteSession]:
        """An all-or-nothing unit inside this transaction: on an exception everything written in
        the block is rolled back (SQL SAVEPOINT) and the exception propagates; the rest of the
        transaction stays."""
        self.flush()
        self.cur.execute("SAVEPOINT ehrgate_unit")
        try:
            yield self
            self.flush()
        except BaseException:
            self.cur.execute("ROLLBACK TO SAVEPOINT ehrgate_unit")
            self.cur.execute("RELEASE SAVEPOINT ehrgate_unit")
            self._pending.clear()
            self._stale.clear()
            self._outbox = []
            self._flat.clear()
            self._flat_comps = []
            self._flat_pks.clear()
            self._locked.clear()  # PostgreSQL releases the row locks taken inside the savepoint
            raise
        self.cur.execute("RELEASE SAVEPOINT ehrgate_unit")

    def flush(self) -> None:
        """Write buffered index rows, compartments and outbox events (batched executemany)."""
        pg = self._pg
        cur = self.cur
        if self._stale:
            pks = [(pk,) for pk in self._stale]
            for name in q.INDEX_COLUMNS:
                cur.executemany(q.DELETE_INDEX[name](pg), pks)
            cur.executemany(q.DELETE_COMPARTMENT(pg), pks)
            self._stale.clear()
        if self._pending:
            batches: dict[str, list[tuple[Any, ...]]] = {name: [] for name in q.INDEX_COLUMNS}
            comps: list[tuple[Any, ...]] = []
            for pk, (res_type, _rid, rows) in self._pending.items():
                head = (pk, res_type)
                for name, batch in batches.items():
                    found = getattr(rows, name)
                    if found:
                        index_tuples(name, found, head, batch)
                comps.extend((pk, res_type, p) for p in rows.compartments)
            for name, batch in batches.items():
                if batch:
                    cur.executemany(q.INSERT_INDEX[name](pg), batch)
            if comps:
                cur.executemany(q.INSERT_COMPARTMENT(pg), comps)
            self._pending.clear()
        if self._flat_pks:
            insert = self._copy if pg else cur.executemany
            for name, batch in self._flat.items():
                if batch:
                    insert(q.COPY_INDEX[name] if pg else q.INSERT_INDEX[name].qmark, batch)
            if self._flat_comps:
                insert(q.COPY_COMPARTMENT if pg else q.INSERT_COMPARTMENT.qmark, self._flat_comps)
            self._flat.clear()
            self._flat_comps = []
            self._flat_pks.clear()
        if self._outbox:
            cur.executemany(q.INSERT_OUTBOX(pg), self._outbox)
            self._outbox = []

    # -- interactions -----------------------------------------------------------------------

    def create(
        self,
        res_type: str,
        resource: dict[str, Any],
        *,
        if_none_exist: str | None = None,
        res_id: str | None = None,
        fresh_id: bool = False,
    ) -> WriteResult:
        """create (http://hl7.org/fhir/R4/http.html#create); ``If-None-Exist`` makes it conditional."""
        self._check(res_type, resource)
        if if_none_exist:
            self.lock_criteria(res_type, if_none_exist)
            matches = self.find(res_type, if_none_exist)
            if len(matches) > 1:
                raise PreconditionFailed(
                    f"If-None-Exist '{if_none_exist}' matches {len(matches)} {res_type} resources; expected at most one."
                )
            if matches:
                if self.guard is not None:
                    self.guard(self.conn, "read", res_type, matches[0][1], None)
                stored = self.store.read(res_type, matches[0][1], self.conn)
                return WriteResult(stored, 200, "matched")
        if res_id is not None:
            # ids handed in are server-generated too (a transaction assigns them up front)
            return self._write(res_type, res_id, resource, method="POST", fresh_id=fresh_id)
        return self._write(res_type, self.store.new_id(), resource, method="POST", fresh_id=True)

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """update, or create with a client-assigned id (http://hl7.org/fhir/R4/http.html#upsert)."""
        if not ID_PATTERN.match(res_id):
            raise BadRequest(f"Id {res_id!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .).")
        body_id = resource.get("id") if isinstance(resource, dict) else None
        if body_id is None:
            raise BadRequest(f"The {res_type} in the body has no id; an update must carry id {res_id!r}.", expression="id")
        if body_id != res_id:
            raise BadRequest(f"The body's id {body_id!r} does not match the URL's id {res_id!r}.", expression="id")
        self._check(res_type, resource)
        return self._write(res_type, res_id, resource, method="PUT", if_match=if_match)

    def conditional_update(
        self,
        res_type: str,
        criteria: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """Conditional update (http://hl7.org/fhir/R4/http.html#cond-update)."""
        self._check(res_type, resource)
        self.lock_criteria(res_type, criteria)
        matches = self.find(res_type, criteria)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"Conditional update criteria '{criteria}' match {len(matches)} {res_type} resources; expected at most one."
            )
        body_id = resource.get("id")
        if matches:
            found = matches[0][1]
            if body_id is not None and body_id != found:
                raise BadRequest(
                    f"The body's id {body_id!r} differs from the matching resource {res_type}/{found}.", expression="id"
                )
            resource = {**resource, "id": found}
            return self._write(res_type, found, resource, method="PUT", if_match=if_match)
        # No match: a create, which an If-Match refuses (RFC 9110 13.1.1: no current representation).
        if body_id is not None:
            if not ID_PATTERN.match(str(body_id)):
                raise BadRequest(f"Id {body_id!r} is not a valid FHIR id.", expression="id")
            return self._write(res_type, body_id, resource, method="PUT", if_match=if_match)
        return self._write(res_type, self.store.new_id(), resource, method="PUT", fresh_id=True, if_match=if_match)

    def delete(self, res_type: str, res_id: str, *, if_match: str | None = None) -> WriteResult:
        if not ID_PATTERN.match(res_id):
            raise NotFound(f"{res_type}/{res_id} is not known.")
        return self._write(res_type, res_id, None, method="DELETE", if_match=if_match)

    def conditional_delete(self, res_type: str, criteria: str, *, if_match: str | None = None) -> list[WriteResult]:
        """Conditional delete; deleting several matches is allowed (R4 lets the server choose).

        ``If-Match`` names one resource's version, so it applies to a single match: with none there
        is no current version (412, RFC 9110 §13.1.1), and several are refused with 412 as well.
        """
        matches = self.find(res_type, criteria)
        if if_match is not None:
            if len(matches) > 1:
                raise PreconditionFailed(
                    f"Conditional delete criteria '{criteria}' match {len(matches)} resources; If-Match applies to "
                    "exactly one."
                )
            if not matches and not _if_match_holds(if_match, None):  # a malformed value still answers 400
                raise PreconditionFailed(
                    f"If-Match asked for {_asked(if_match)} of the {res_type} matching '{criteria}', but none matches."
                )
        return [self._write(res_type, rid, None, method="DELETE", if_match=if_match) for _pk, rid in matches]

    def patch(
        self,
        res_type: str,
        res_id: str,
        patch: Any,
        *,
        kind: str,
        if_match: str | None = None,
    ) -> WriteResult:
        """patch with JSON Patch (RFC 6902) or JSON merge patch (RFC 7386)."""
        from ..jsonio import loads
        from .patching import apply_patch

        current = self.store.read(res_type, res_id, self.conn)
        if if_match is not None and not _if_match_holds(if_match, current.version):
            raise PreconditionFailed(
                f"If-Match asked for {_asked(if_match)} of {res_type}/{res_id}, "
                f"but the server has version {current.version}."
            )
        assert current.raw is not None
        patched = apply_patch(loads(current.raw), patch, kind)
        if patched.get("id") != res_id or patched.get("resourceType") != res_type:
            raise Unprocessable("A patch may not change the resource's id or resourceType.")
        self._check(res_type, patched)
        return self._write(res_type, res_id, patched, method="PATCH")


_SCAN_PENDING_MAX = 64
"""``_find_identifier`` scans up to this many buffered resources; with more it flushes them first."""

_IDENTIFIER_CRITERIA = re.compile(r"\??identifier=(?:([^&=%+\\,|]*)\|)?([^&=%+\\,|]+)")
"""One plain ``identifier`` value: nothing to unquote or unescape, no second value or parameter."""


@cache
def _has_identifier_token(res_type: str) -> bool:
    from ..search.params import params_for

    param = params_for(res_type).get("identifier")
    return param is not None and param.type == "token"


def _identifier_criteria(res_type: str, criteria: str) -> tuple[str | None, str, bool] | None:
    """(system or None, code, any system) when ``criteria`` is one plain ``identifier`` token value
    of a type that has that search parameter, else None (the search engine answers)."""
    match = _IDENTIFIER_CRITERIA.fullmatch(criteria)
    if match is None or not _has_identifier_token(res_type):
        return None
    system, code = match.group(1), match.group(2)
    if system is None:
        return None, code, True
    return system or None, code, False


def _criteria_digest(criteria: str) -> str:
    """The key of a criteria lock (``cond_lock.criteria_hash``): the same for the same parameters
    in any order."""
    return hashlib.sha256(_canonical_criteria(criteria).encode()).hexdigest()


def _canonical_criteria(criteria: str) -> str:
    from urllib.parse import parse_qsl, urlencode

    pairs = sorted(parse_qsl(criteria.lstrip("?"), keep_blank_values=True))
    return urlencode(pairs)


# Re-exported so callers catching store errors need one import.
StoreError = FhirError

"""Database engines: SQLite (embedded default) and PostgreSQL, one schema, versioned migrations.

SQLite runs in WAL mode. pysqlite's own transaction handling is switched off so that EHRGate
emits ``BEGIN`` itself: write transactions use ``BEGIN IMMEDIATE`` (take the write lock first, so
a search-then-insert inside the transaction cannot race another writer), reads a plain ``BEGIN``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["at_heads", "begin_immediate", "create_engine", "migrate", "migration_heads", "normalize_url", "writers_waiting"]

WRITE_OPTION = "ehrgate_write"
MMAP_BYTES = 0x7FFF0000
"""SQLite reads the database file through a memory map of up to this many bytes (address space, not
memory): in WAL mode a connection's page cache is dropped whenever another connection commits, and
with a map the pages come back from the OS cache without a read() and a copy each. 0x7FFF0000 (2 GB)
is the compile-time cap of common SQLite builds (``MAX_MMAP_SIZE``; larger values are cut to it), so
a store of that size is read wholly through the map. The ``sqlite_mmap_mb`` setting lowers it or
turns it off (0): through a map, an I/O error reading the file is a SIGBUS that kills the process
(sqlite.org/mmap.html), where read() would return an error."""

WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""``PRAGMA journal_size_limit``: once a checkpoint has emptied the WAL, the next writer cuts the file
back to at most this many bytes. Without it a WAL that one large transaction (a bulk load) or a long
reader (a Bulk Data export holding back checkpoints) made hundreds of MB kept that size on disk until
every connection closed; in steady operation it stays near ``wal_autocheckpoint`` (1,000 pages, ~4 MB)."""

BUSY_TIMEOUT_S = 30.0
_POLL_S = (0.0001, 0.0002, 0.0005)
_waiting = 0
"""Threads of this process waiting in ``begin_immediate`` for a write lock (``writers_waiting``)."""
_waiting_lock = threading.Lock()


def writers_waiting() -> int:
    """How many threads of this process are waiting in ``begin_immediate`` for a SQLite write lock
    (of any database) right now. A writer that holds the lock for a batch of work (the
    ``fhir_store`` destination) ends its batch early only when someone waits: the same commit then
    serves more messages while nobody else needs the lock. Writers of other processes are not seen."""
    return _waiting


def begin_immediate(dbapi_conn: Any, timeout: float = BUSY_TIMEOUT_S, *, kept_at_zero: bool = False) -> None:
    """``BEGIN IMMEDIATE`` on a SQLite connection, waiting for the write lock in steps of at most
    0.5 ms for up to ``timeout`` seconds (then SQLite's "database is locked" error, as before).

    SQLite's own busy handler sleeps 25-100 ms between tries once a wait passes a few ms, so a
    writer that holds the lock for tens of ms and takes it again ~1 ms after each commit (a
    ``fhir_store`` destination writing batches) kept the engine's receipts — and so the ACKs —
    waiting for hundreds of ms. Polling keeps a waiter within half a millisecond of a release.
    A waiter is counted in ``writers_waiting`` from its first refused try until it returns.
    ``kept_at_zero``: the connection's ``busy_timeout`` is 0 already and stays so (the engine's
    receipt connections, ``engine/sql.py``): the usual case - the lock is free - is one statement."""
    global _waiting
    if not dbapi_conn.in_transaction:
        if not kept_at_zero:
            dbapi_conn.execute("PRAGMA busy_timeout=0")
        counted = False
        try:
            deadline = time.monotonic() + timeout
            attempt = 0
            while True:
                try:
                    dbapi_conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF != sqlite3.SQLITE_BUSY:
                        raise
                    if time.monotonic() >= deadline:
                        raise
                if not counted:
                    with _waiting_lock:
                        _waiting += 1
                    counted = True
                time.sleep(_POLL_S[min(attempt, len(_POLL_S) - 1)])
                attempt += 1
        finally:
            if counted:
                with _waiting_lock:
                    _waiting -= 1
            if not kept_at_zero:
                dbapi_conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    dbapi_conn.execute("BEGIN IMMEDIATE")  # raises SQLite's own "within a transaction" error


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``postgres://`` URLs and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def create_engine(url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 8,
                  sqlite_mmap_bytes: int = MMAP_BYTES, sqlite_wal_limit: int = WAL_SIZE_LIMIT) -> sa.Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=4,
        )
        sync = sqlite_synchronous.upper()
        if sync not in ("NORMAL", "FULL", "OFF"):
            raise ValueError(f"Setting 'sqlite_synchronous' has value {sqlite_synchronous!r}. Expected NORMAL or FULL.")
        mmap_bytes = min(int(sqlite_mmap_bytes), MMAP_BYTES)
        if mmap_bytes < 0:
            raise ValueError(f"Setting 'sqlite_mmap_mb' has value {sqlite_mmap_bytes // (1024 * 1024)}. "
                             "Expected 0 (no memory map) or a number of megabytes.")

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute(f"PRAGMA mmap_size={mmap_bytes}")
            cur.execute(f"PRAGMA journal_size_limit={int(sqlite_wal_limit)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            if conn.get_execution_options().get(WRITE_OPTION):
                begin_immediate(conn.connection.driver_connection)
            else:
                conn.exec_driver_sql("BEGIN")

        return engine
    return sa.create_engine(url, pool_size=pool_size, max_overflow=8, pool_pre_ping=True)


FHIR_MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def _alembic_config(connection: sa.Connection, locations: Sequence[Path]) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    # Each package that owns tables keeps its own chain (a branch label per package, rooted on the
    # FHIR store's); the application passes the directories in, so the store knows no one else.
    dirs = [str(FHIR_MIGRATIONS), *[str(p) for p in locations]]
    cfg.set_main_option("version_locations", " ".join(dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: sa.Engine, locations: Sequence[Path] = ()) -> None:
    """Bring every schema chain to its newest version (idempotent; safe to run at every start).

    ``locations`` are the migration directories of other packages (engine, smart, bulk). A
    database already at every chain's newest version is left without loading alembic
    (``at_heads``): importing it and reading its script directory cost ~0.3-0.5 s, which every
    ``ehrgate messages`` or ``users`` command paid before doing its work.
    """
    import logging

    if at_heads(engine, locations):
        return
    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        if engine.dialect.name == "postgresql":
            # One migrator at a time when several processes start together.
            with conn.begin():
                conn.exec_driver_sql("SELECT pg_advisory_lock(80872001)")
            try:
                command.upgrade(_alembic_config(conn, locations), "heads")
                conn.commit()
            finally:
                with conn.begin():
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(80872001)")
        else:
            command.upgrade(_alembic_config(conn, locations), "heads")
            conn.commit()


def current_revisions(engine: sa.Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.*)$", re.M)
_REVISION_ID = re.compile(r"[\"']([^\"']+)[\"']")


def migration_heads(locations: Sequence[Path] = ()) -> set[str]:
    """The newest revision of every chain, read from the migration files' ``revision`` and
    ``down_revision`` lines (what alembic's ``heads`` are: revisions no other names as its
    ``down_revision``) without importing alembic or the files."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for folder in (FHIR_MIGRATIONS, *locations):
        for path in Path(folder).glob("*.py"):
            for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
                ids = _REVISION_ID.findall(value)
                (revisions if name == "revision" else parents).update(ids)
    return revisions - parents


def at_heads(engine: sa.Engine, locations: Sequence[Path] = ()) -> bool:
    """Whether the database's ``alembic_version`` rows are exactly the migration files' heads (a
    database that is new, older or newer than this code answers False: alembic then upgrades it, or
    reports what it does not know)."""
    heads = migration_heads(locations)
    try:
        with engine.connect() as conn:
            current = {row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    except sa.exc.DBAPIError:  # no such table: a new database
        return False
    return bool(heads) and current == heads


if os.environ.get("EHRGATE_SQL_ECHO"):  # pragma: no cover - developer aid only
    import logging

    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)

"""Hot-path SQL of the engine - receipt and queue claims - run on DBAPI cursors.

As in the FHIR store (``fhir/store/sql.py``): SQLAlchemy Core costs more per statement (and ~150 µs
per transaction for the connection checkout and its events) than SQLite needs to run the statement,
so the statements every message goes through are plain SQL, written once with ``?`` placeholders
(PostgreSQL gets ``%s``), on connections that ``Connections`` keeps checked out of the store's pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from ..fhir.store.engine import BUSY_TIMEOUT_S, begin_immediate
from ..fhir.store.sql import Q

__all__ = ["Connections", "Q"]

MESSAGE_COLUMNS = ("id, channel, received_at, updated_at, status, msg_type, control_id, sender, source, parent_id, "
                   "duplicate_of, order_key, raw, transformed, bundle, error, patients, traceparent")
INSERT_MESSAGE = Q(f"INSERT INTO eng_message ({MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 18)})")
INSERT_MESSAGE_PG = Q(f"INSERT INTO eng_message ({MESSAGE_COLUMNS}, search) VALUES ({', '.join('?' * 18)}, "
                      "to_tsvector('simple'::regconfig, ?))")
MAX_MESSAGE_ID = Q("SELECT COALESCE(MAX(id), 0) FROM eng_message")
NEXT_MESSAGE_IDS_PG = Q("SELECT nextval(pg_get_serial_sequence('eng_message', 'id')) FROM generate_series(1, ?)")
INSERT_FTS = Q("INSERT INTO eng_message_fts(rowid, body) VALUES (?, ?)")
INSERT_PATIENT = Q("INSERT INTO eng_message_patient (message_id, identifier) VALUES (?, ?)")
INSERT_QUEUE = Q("INSERT INTO eng_queue (message_id, channel, step, order_key, seq, enqueued_at, next_at, attempts) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, 0)")
# COALESCE(...) = 0, not "IS NULL": an expression keeps the planner on the control-id index (nearly
# every row has parent_id NULL; SQLite would otherwise walk ix_eng_message_parent).
# SQLite, up to DUPLICATE_ARMS control ids: one arm per control id, UNION ALL, not "control_id IN
# (?, ...)": for an IN list of bound values SQLite builds an ephemeral index each time the statement
# runs, a fixed cost: in batches of 7 the lookup cost the writer ~10 us per message, as UNION ALL ~5
# (in batches of 4, 7.5 us less; interleaved A/B, 2026-12-07, docs/engine.md). Each arm costs a
# little more than a value of the IN list, so from ~24 control ids on the IN list is as cheap (at
# 32 and 64, by 1-3 us per message cheaper), and larger batches use it. ?1 is the window's start;
# the caller takes the smallest id per key.
_DUPLICATE_ARM = ("SELECT channel, sender, control_id, id FROM eng_message WHERE control_id = ?{} "
                  "AND received_at >= ?1 AND COALESCE(duplicate_of, parent_id, 0) = 0 AND status <> 'ERROR'")
_DUPLICATES_IN = ("SELECT channel, sender, control_id, MIN(id) FROM eng_message WHERE control_id IN ({}) "
                  "AND received_at >= ?1 AND COALESCE(duplicate_of, parent_id, 0) = 0 AND status <> 'ERROR' "
                  "GROUP BY channel, sender, control_id")
DUPLICATE_ARMS = 16
# PostgreSQL: ``received_at + 0``, not ``received_at``, so that the only index the planner can use
# is the control id's. Given both, its generic plan ANDed the control id's bitmap with a scan of
# ix_eng_message_received over the whole duplicate window (24 h by default): every receipt batch
# read one index entry per message of the last day (measured: 4 ms at 4,400 messages, growing with
# the window), where the control ids match a handful of rows.
DUPLICATES_PG = Q("SELECT channel, sender, control_id, MIN(id) FROM eng_message WHERE control_id = ANY(?) "
                  "AND received_at + 0 >= ? AND COALESCE(duplicate_of, parent_id, 0) = 0 AND status <> 'ERROR' "
                  "GROUP BY channel, sender, control_id")
# PostgreSQL: the batch's new ids and its duplicates in one round trip (id rows have a NULL channel)
IDS_AND_DUPLICATES_PG = Q(
    "SELECT NULL, NULL, NULL, nextval(pg_get_serial_sequence('eng_message', 'id')) FROM generate_series(1, ?) "
    "UNION ALL SELECT channel, sender, control_id, MIN(id) FROM eng_message WHERE control_id = ANY(?) "
    "AND received_at + 0 >= ? AND COALESCE(duplicate_of, parent_id, 0) = 0 AND status <> 'ERROR' "
    "GROUP BY channel, sender, control_id")
# PostgreSQL: a receipt's transaction, sent in one pipeline with its inserts (Connections.pipelined)
BEGIN = "BEGIN"
COMMIT = "COMMIT"
_duplicates_sqlite: dict[int, str] = {}


def duplicates_sqlite(n: int) -> str:
    """The SQLite duplicate lookup for ``n`` control ids: parameters are the window's start, then the
    control ids; rows are (channel, sender, control_id, id), several per key possibly."""
    sql = _duplicates_sqlite.get(n)
    if sql is None:
        if n <= DUPLICATE_ARMS:
            sql = " UNION ALL ".join(_DUPLICATE_ARM.format(i + 2) for i in range(n))
        else:
            sql = _DUPLICATES_IN.format(", ".join(f"?{i + 2}" for i in range(n)))
        if len(_duplicates_sqlite) < 1024:
            _duplicates_sqlite[n] = sql
    return sql


QUEUE_COLUMNS = "id, message_id, channel, step, order_key, seq, enqueued_at, attempts"
_ELIGIBLE = "q.channel = ? AND q.step = ? AND q.next_at <= ? AND (q.lease_until IS NULL OR q.lease_until < ?)"
_IN_ORDER = (" AND NOT EXISTS (SELECT 1 FROM eng_queue p WHERE p.channel = q.channel AND p.order_key = q.order_key "
             "AND p.step IN ('', q.step) AND (p.seq < q.seq OR (p.seq = q.seq AND p.message_id < q.message_id)))")


def _claim(ordered: bool, pg: bool) -> Q:
    where = _ELIGIBLE + (_IN_ORDER if ordered else "")
    if pg:
        return Q(f"WITH c AS (SELECT q.id FROM eng_queue q WHERE {where} ORDER BY q.seq, q.message_id LIMIT ? "
                 "FOR UPDATE SKIP LOCKED) UPDATE eng_queue SET lease_owner = ?, lease_until = ? FROM c "
                 "WHERE eng_queue.id = c.id RETURNING " + ", ".join("eng_queue." + c for c in QUEUE_COLUMNS.split(", ")))
    # SQLite: the subquery's parameters come after the SET ones.
    return Q(f"UPDATE eng_queue SET lease_owner = ?, lease_until = ? WHERE id IN (SELECT q.id FROM eng_queue q "
             f"WHERE {where} ORDER BY q.seq, q.message_id LIMIT ?) RETURNING {QUEUE_COLUMNS}")


CLAIM = {(ordered, pg): _claim(ordered, pg) for ordered in (False, True) for pg in (False, True)}


class Connections:
    """DBAPI connections for the hot paths, kept checked out of ``engine``'s pool between uses.

    ``write()`` yields a cursor inside a write transaction: ``BEGIN IMMEDIATE`` on SQLite (the
    connections come from the store's engine, so they run with its PRAGMAs: WAL, synchronous=FULL;
    while kept here their ``busy_timeout`` is 0, see ``_begin``); on PostgreSQL
    ``synchronous_commit = on`` is set once per connection, and a connection idle for more than
    ``ping_after`` seconds is pinged first (the pool's pre-ping, which kept connections skip). A failed transaction is rolled back; a connection that cannot even roll
    back is discarded. At most ``keep`` idle connections are kept; the rest go back to the pool.
    """

    def __init__(self, engine: sa.Engine, *, keep: int = 2, ping_after: float = 5.0) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        self.keep = keep
        self.ping_after = ping_after
        self._idle: list[tuple[Any, float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> Any:
        with self._lock:
            held = self._idle.pop() if self._idle else None
        if held is not None:
            conn, since = held
            if not self.pg or time.monotonic() - since < self.ping_after:
                return conn
            try:
                with conn.driver_connection.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.driver_connection.rollback()
                return conn
            except Exception:  # noqa: BLE001 - stale (the server restarted): take a fresh one
                self._discard(conn)
        conn = self.engine.raw_connection()
        dbapi: Any = conn.driver_connection
        if self.pg:
            with dbapi.cursor() as cur:
                cur.execute("SET synchronous_commit TO on")
            dbapi.commit()
        else:
            dbapi.execute("PRAGMA busy_timeout=0")  # while kept: see _begin
        return conn

    def _give(self, conn: Any) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.keep:
                self._idle.append((conn, time.monotonic()))
                return
        self._release(conn)

    def _release(self, conn: Any) -> None:
        """Back to the pool, as the pool's other users expect it (SQLite: the engine's busy_timeout)."""
        if not self.pg:
            try:
                conn.driver_connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            except Exception:  # noqa: BLE001 - the connection is gone
                self._discard(conn)
                return
        conn.close()

    @staticmethod
    def _begin(dbapi: Any) -> None:
        """SQLite: ``BEGIN IMMEDIATE`` on a kept connection, whose ``busy_timeout`` is 0.

        ``begin_immediate`` otherwise sets busy_timeout to 0 before it tries and back after (so
        that waiting for the lock polls in steps of at most 0.5 ms instead of SQLite's sleeps of up
        to 100 ms): two PRAGMAs per transaction, which cost the writer ~4 us per message at 7
        messages per commit (~28 us per transaction; interleaved A/B, 2026-12-07, docs/engine.md).
        A kept connection stays at 0 instead (``kept_at_zero``), so the usual case - the lock is
        free - is one statement, and only a refused try goes on to the polling. Inside a transaction that holds
        the write lock nothing waits for a lock in WAL mode (the commit's automatic checkpoint is
        PASSIVE: it never waits), so 0 changes nothing else; a connection goes back to the pool
        with the engine's busy_timeout (``_release``)."""
        begin_immediate(dbapi, kept_at_zero=True)

    @staticmethod
    def _discard(conn: Any) -> None:
        try:
            conn.invalidate()
        except Exception:  # noqa: BLE001
            pass

    @contextmanager
    def pipelined(self) -> Iterator[Any]:
        """PostgreSQL: a cursor on a kept connection in autocommit mode, for a caller that sends its
        own ``BEGIN`` ... ``COMMIT`` inside one pipeline (``MessageStore.receive``): a statement before
        it runs on its own, and the transaction costs one round trip. psycopg's own transactions
        cost more: its implicit BEGIN goes alone (in a pipeline too, followed by a sync), and leaving
        a pipeline after ``commit()`` syncs again - four round trips per receipt where two do.
        Whatever a failure leaves open is rolled back; the connection goes back in its usual mode."""
        conn = self._take()
        dbapi = conn.driver_connection
        try:
            dbapi.autocommit = True
            yield dbapi.cursor()
            dbapi.autocommit = False
        except BaseException:
            try:
                dbapi.rollback()  # only if the caller's transaction is still open (psycopg checks)
                dbapi.autocommit = False
            except Exception:  # noqa: BLE001 - the connection is gone
                self._discard(conn)
                raise
            self._give(conn)
            raise
        self._give(conn)

    @contextmanager
    def write(self, *, derived: bool = False) -> Iterator[Any]:
        """A write transaction on a kept connection. ``derived=True`` (SQLite): the transaction only
        writes what can be rebuilt from committed rows (the text and patient indexes), so its COMMIT
        skips the fsync (``synchronous=NORMAL`` for that one transaction; the connection is back to
        FULL afterwards). Its WAL frames become durable with the next FULL commit's fsync, which
        covers the whole log; a power cut before that loses only the rebuildable rows."""
        conn = self._take()
        dbapi = conn.driver_connection
        relaxed = derived and not self.pg
        try:
            cur = dbapi.cursor()
            if relaxed:
                cur.execute("PRAGMA synchronous=NORMAL")
            if not self.pg:
                self._begin(dbapi)
            yield cur
            if self.pg:
                dbapi.commit()
            else:
                cur.execute("COMMIT")
        except BaseException:
            try:
                if self.pg:
                    dbapi.rollback()
                elif dbapi.in_transaction:
                    dbapi.execute("ROLLBACK")
                if relaxed:
                    dbapi.execute("PRAGMA synchronous=FULL")
            except Exception:  # noqa: BLE001 - the connection is gone
                self._discard(conn)
                raise
            self._give(conn)
            raise
        if relaxed:
            try:
                cur.execute("PRAGMA synchronous=FULL")
            except BaseException:
                self._discard(conn)  # never hand out a connection that would commit receipts without fsync
                raise
        self._give(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            try:
                self._release(conn)
            except Exception:  # noqa: BLE001
                pass


# -- finishing queue rows (pipeline and deliveries) ------------------------------------------------

TAKE = Q("DELETE FROM eng_queue WHERE id = ? AND lease_owner = ?")
SET_RESULT = Q("UPDATE eng_message SET status = ?, error = ?, transformed = ?, bundle = ?, updated_at = ? WHERE id = ?")
INSERT_DELIVERY = Q("INSERT INTO eng_delivery (message_id, destination, status, attempts, updated_at) "
                    "VALUES (?, ?, 'QUEUED', 0, ?)")
RETRY_LATER = Q("UPDATE eng_queue SET attempts = ?, next_at = ?, lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?")
UPDATE_DELIVERY = Q("UPDATE eng_delivery SET status = ?, attempts = ?, updated_at = ?, last_error = ?, request = ?, "
                    "response = ? WHERE message_id = ? AND destination = ?")
INSERT_ATTEMPT = Q("INSERT INTO eng_attempt (message_id, destination, number, at, outcome, duration_ms, error) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)")
LOCK_MESSAGE_PG = Q("SELECT id FROM eng_message WHERE id = ? FOR UPDATE")
DELIVERY_STATES = Q("SELECT status, destination, last_error FROM eng_delivery WHERE message_id = ?")
SET_ERROR = Q("UPDATE eng_message SET status = 'ERROR', error = ?, updated_at = ? WHERE id = ?")
SET_SENT = Q("UPDATE eng_message SET status = 'SENT', updated_at = ? WHERE id = ?")
CLEAN_TEXT_INDEX_PG = "SELECT gin_clean_pending_list('ix_eng_message_search'::regclass)"
SET_SEARCH_PG = Q("UPDATE eng_message SET search = to_tsvector('simple'::regconfig, ?) WHERE id = ?")


def cursor(conn: Any) -> Any:
    """A DBAPI cursor for ``conn``: a SQLAlchemy Connection's own (inside its transaction), or ``conn``
    itself when it already is a cursor (from ``Connections.write``)."""
    if isinstance(conn, sa.Connection):
        dbapi: Any = conn.connection.driver_connection
        return dbapi.cursor()
    return conn


# -- the SQLite text and patient indexes (filled after receipt, see MessageStore.index_pending) ------------------

TEXT_MARK = Q("SELECT last_id FROM eng_text_index WHERE id = 1")
TEXT_PENDING = Q("SELECT id, raw, patients FROM eng_message WHERE id > ? ORDER BY id LIMIT ?")
SET_TEXT_MARK = Q("UPDATE eng_text_index SET last_id = ? WHERE id = 1")
# Bounded FTS5 merge work (~n pages) for an index step; automerge is 0 (migration e0005).
MERGE_FTS = Q("INSERT INTO eng_message_fts(eng_message_fts, rank) VALUES ('merge', ?)")

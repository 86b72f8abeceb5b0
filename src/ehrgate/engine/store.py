"""The message store: durable receipt (group commit), search, detail, reprocess, retention.

Durability: the store has its own SQLAlchemy engine. On SQLite its connections run with
``PRAGMA synchronous=FULL`` (the FHIR store's ``sqlite_synchronous`` setting does not apply here):
in WAL mode FULL syncs the log at every commit, so a committed receipt survives a power cut. On
PostgreSQL each receipt transaction sets ``synchronous_commit = on`` locally, whatever the server
default. ``receive`` writes a whole batch (the messages that arrived together) in one transaction;
the caller releases the ACKs only after it returns.

Queue operations (claim, finish) live in ``queue.py`` and share this engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from ..fhir.store.engine import WRITE_OPTION, create_engine
from . import audit as A
from . import schema as t
from . import sql as q
from .access import Actor
from .info import query_words, search_text

__all__ = [
    "FINAL_STATUSES",
    "Incoming",
    "MessageStore",
    "Receipt",
    "SearchQuery",
    "STATUSES",
    "now_ms",
    "patients_json",
]

STATUSES = ("RECEIVED", "FILTERED", "TRANSFORMED", "QUEUED", "SENT", "ERROR")
FINAL_STATUSES = ("FILTERED", "TRANSFORMED", "SENT", "ERROR")
MIN_MERGE_PAGES = 16  # FTS5 merge work of the smallest index step (index_pending)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def patients_json(ids: Sequence[str]) -> str | None:
    """``eng_message.patients``: the identifiers as a JSON array, NULL for none. Identifiers that JSON
    writes verbatim (no quote, backslash or control character) are joined directly: the same text as
    ``json.dumps(..., ensure_ascii=False)``, without the encoder's cost on every received message."""
    if not ids:
        return None
    for i in ids:
        if '"' in i or "\\" in i or not i.isprintable():
            return json.dumps(list(ids), ensure_ascii=False)
    return '["' + '", "'.join(ids) + '"]'


def db_text(value: str | None) -> str | None:
    """``value`` with each NUL replaced by a space: PostgreSQL refuses NUL in text columns, and one
    in an error text or a header fact (a byte, or HL7's \\X00\\) failed the whole transaction."""
    return value.replace("\x00", " ") if value and "\x00" in value else value


def _without_nul(item: Incoming) -> None:
    """PostgreSQL: the header facts of a received message, NUL-free (the raw bytes are kept as they are)."""
    if "\x00" in item.control_id + item.sender + item.msg_type + item.order_key + "".join(item.patient_ids):
        item.control_id, item.sender = item.control_id.replace("\x00", " "), item.sender.replace("\x00", " ")
        item.msg_type, item.order_key = item.msg_type.replace("\x00", " "), item.order_key.replace("\x00", " ")
        item.patient_ids = tuple(dict.fromkeys(p.replace("\x00", " ") for p in item.patient_ids))
    item.error = db_text(item.error)


@dataclass(slots=True)
class Incoming:
    """A message as a source hands it over, before it is stored."""

    channel: str
    raw: bytes
    source: str
    msg_type: str = ""
    control_id: str = ""
    sender: str = ""
    patient_ids: tuple[str, ...] = ()
    order_key: str = ""
    error: str | None = None
    check_duplicates: bool = True
    trace: str | None = None
    """W3C traceparent of the message's ``receive`` span (tracing on), stored with the message."""
    span: Any = None
    """That span, while the message is being received (``tracing.py``); never stored."""


@dataclass(frozen=True, slots=True)
class Receipt:
    id: int
    status: str
    duplicate_of: int | None = None


@dataclass(slots=True)
class SearchQuery:
    channel: str | None = None
    status: str | None = None
    since: int | None = None
    until: int | None = None
    msg_type: str | None = None
    control_id: str | None = None
    patient: str | None = None
    text: str | None = None
    before_id: int | None = None
    limit: int = 100
    extra: dict[str, Any] = field(default_factory=dict)


_SUMMARY = (t.message.c.id, t.message.c.channel, t.message.c.received_at, t.message.c.updated_at,
            t.message.c.status, t.message.c.msg_type, t.message.c.control_id, t.message.c.sender,
            t.message.c.source, t.message.c.parent_id, t.message.c.duplicate_of, t.message.c.error)


class MessageStore:
    """Messages, deliveries and the work queue in the application database."""

    def __init__(self, engine: sa.Engine, *, clock: Any = now_ms) -> None:
        self.engine = engine
        self.clock = clock
        self.pg = engine.dialect.name == "postgresql"
        self.fast = q.Connections(engine, keep=6 if self.pg else 2)  # PostgreSQL: 4 receipt writers + claims

    @classmethod
    def open(cls, url: str, *, sqlite_mmap_bytes: int | None = None, **kwargs: Any) -> MessageStore:
        """A store on ``url`` with its own connections (synchronous=FULL on SQLite; memory map as
        ``sqlite_mmap_bytes``, default the FHIR store's default). The schema must already be migrated
        (``app.open_store`` does it)."""
        mmap = {} if sqlite_mmap_bytes is None else {"sqlite_mmap_bytes": sqlite_mmap_bytes}
        return cls(create_engine(url, sqlite_synchronous="FULL", pool_size=4, **mmap), **kwargs)

    def close(self) -> None:
        self.fast.close()
        self.engine.dispose()

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite; synchronous commit on PostgreSQL)."""
        with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
            with conn.begin():
                if self.pg:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
                yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    # -- receipt ---------------------------------------------------------------------------

    def receive(self, batch: Sequence[Incoming], *, duplicate_window_ms: int = 0) -> list[Receipt]:
        """Store ``batch`` in one transaction and queue each good message for its channel's pipeline.

        A message whose (channel, sender, MSH-10) was seen within ``duplicate_window_ms`` is stored
        with status FILTERED and ``duplicate_of`` set, and not processed again. One that could not
        be parsed is stored with status ERROR.

        Plain SQL on a kept DBAPI connection (``sql.py``): message ids are allocated first (SQLite:
        after MAX(id), under the write lock; PostgreSQL: from the sequence), so each table gets one
        executemany and duplicates inside the batch are resolved before anything is written. On
        SQLite the text and patient indexes are written later, in batches (``index_pending``): what
        a receipt commits is the message row and its queue row. On PostgreSQL the lookup runs on
        its own and BEGIN, the inserts and COMMIT go in one pipeline (``Connections.pipelined``):
        two round trips per batch.
        """
        if not batch:
            return []
        pg = self.pg
        if pg:
            for item in batch:
                _without_nul(item)
        with self.fast.pipelined() if pg else self.fast.write() as cur:
            now = self.clock()
            if pg:  # round trips are the cost here: ids and duplicates in one, the inserts in one
                ids, dups = self._ids_and_duplicates_pg(cur, batch, now - duplicate_window_ms, duplicate_window_ms > 0)
            else:
                dups = (self._duplicates(cur, batch, now - duplicate_window_ms)
                        if duplicate_window_ms > 0 else {})
                ids = self.new_ids(cur, len(batch))
            rows: list[tuple[Any, ...]] = []
            receipts: list[Receipt] = []
            patients: list[tuple[int, str]] = []
            work: list[tuple[Any, ...]] = []
            for mid, item in zip(ids, batch, strict=True):
                key = (item.channel, item.sender, item.control_id)
                dup = dups.get(key) if item.check_duplicates else None
                if item.error is not None:
                    status, error = "ERROR", item.error
                elif dup is not None:
                    status = "FILTERED"
                    error = (f"Duplicate of message {dup} (same sender {item.sender!r} and MSH-10 "
                             f"{item.control_id!r} within the duplicate window)")
                else:
                    status, error = "RECEIVED", None
                    if item.control_id and item.check_duplicates:
                        dups[key] = mid  # later messages in the same batch see this one
                    work.append((mid, item.channel, "", item.order_key, mid, now, now))
                pids = item.patient_ids
                row = (mid, item.channel, now, now, status, item.msg_type, item.control_id, item.sender,
                       item.source[:160], None, dup, item.order_key, item.raw, None, None, error,
                       patients_json(pids), item.trace)
                receipts.append(Receipt(mid, status, dup))
                if pg:
                    rows.append(row + (search_text(item.raw),))
                    patients.extend((mid, p) for p in pids)
                else:
                    rows.append(row)
            if pg:  # the whole transaction in one round trip; its reply comes after the COMMIT's WAL flush
                with cur.connection.pipeline():
                    cur.execute(q.BEGIN, prepare=False)
                    cur.executemany(q.INSERT_MESSAGE_PG(True), rows)
                    if patients:
                        cur.executemany(q.INSERT_PATIENT(True), patients)
                    if work:
                        cur.executemany(q.INSERT_QUEUE(True), work)
                    cur.execute(q.COMMIT, prepare=False)
                if cur.statusmessage != "COMMIT":  # never an ACK for a transaction the server rolled back
                    raise RuntimeError(f"receipt transaction ended with {cur.statusmessage!r}, not COMMIT")
            else:
                cur.executemany(q.INSERT_MESSAGE(False), rows)
                if work:
                    cur.executemany(q.INSERT_QUEUE(False), work)
        return receipts

    def _ids_and_duplicates_pg(self, cur: Any, batch: Sequence[Incoming], since: int,
                               check: bool) -> tuple[list[int], dict[tuple[str, str, str], int]]:
        wanted = {(b.channel, b.sender, b.control_id) for b in batch
                  if check and b.control_id and b.check_duplicates}
        # Planned at each execution (psycopg would otherwise prepare it after 5): a plan made while
        # eng_message is small is a sequential scan, and a prepared plan is kept until autovacuum
        # first analyzes the table (a minute or more), reading every message of the table per batch
        # meanwhile (measured: 1,204 scans of up to 3,700 rows in the first seconds of a bench run).
        cur.execute(q.IDS_AND_DUPLICATES_PG(True), (len(batch), list({w[2] for w in wanted}), since), prepare=False)
        ids: list[int] = []
        dups: dict[tuple[str, str, str], int] = {}
        for r in cur.fetchall():
            if r[0] is None:
                ids.append(int(r[3]))
            elif (r[0], r[1], r[2]) in wanted:
                dups[(r[0], r[1], r[2])] = int(r[3])
        return sorted(ids), dups

    def _duplicates(self, cur: Any, batch: Sequence[Incoming], since: int) -> dict[tuple[str, str, str], int]:
        wanted = {(b.channel, b.sender, b.control_id) for b in batch if b.control_id and b.check_duplicates}
        if not wanted:
            return {}
        controls = list({w[2] for w in wanted})
        if self.pg:
            cur.execute(q.DUPLICATES_PG(True), (controls, since), prepare=False)  # see _ids_and_duplicates_pg
            return {(r[0], r[1], r[2]): int(r[3]) for r in cur.fetchall() if (r[0], r[1], r[2]) in wanted}
        found: dict[tuple[str, str, str], int] = {}
        cur.execute(q.duplicates_sqlite(len(controls)), (since, *controls))
        for r in cur.fetchall():  # a key may come in several rows (see sql.duplicates_sqlite): the smallest id
            key, mid = (r[0], r[1], r[2]), int(r[3])
            if key in wanted and (key not in found or mid < found[key]):
                found[key] = mid
        return found

    def new_ids(self, cur: Any, n: int) -> list[int]:
        """``n`` increasing ids for new messages, inside the caller's write transaction: after MAX(id)
        on SQLite (the write lock is held, so nobody else inserts), from the sequence on PostgreSQL."""
        if self.pg:
            cur.execute(q.NEXT_MESSAGE_IDS_PG(True), (n,))
            return sorted(int(r[0]) for r in cur.fetchall())
        cur.execute(q.MAX_MESSAGE_ID(False))
        top = int(cur.fetchone()[0])
        return list(range(top + 1, top + 1 + n))

    def index_text(self, conn: Any, ids: Sequence[int], raws: Sequence[bytes]) -> None:
        """Index messages inserted outside ``receive`` (children of a split). On SQLite nothing to do:
        ``index_pending`` takes every message above its mark."""
        if self.pg:
            q.cursor(conn).executemany(q.SET_SEARCH_PG(True), [(search_text(r), i)
                                                               for i, r in zip(ids, raws, strict=True)])

    def index_pending(self, limit: int = 256) -> int:
        """SQLite: add up to ``limit`` messages stored since the last call to the text index and the
        patient index, in one transaction; returns how many (fewer than ``limit``: both are complete).

        FTS5 writes a new segment per transaction, so indexing each receipt batch cost a third of
        its pages and CPU; batches of hundreds cost a fraction of that per message. Patient rows are
        keyed by random identifiers (a page dirtied per row), so they too cost less per message when
        hundreds share a commit (migration e0003). The mark (``eng_text_index.last_id``) moves in the
        same transaction, and ids only grow (they are allocated under the write lock), so after a
        crash the next call carries on where it was. For the same reason the step commits without
        its own fsync (``Connections.write(derived=True)``): the next receipt's FULL commit syncs the
        log, this step's frames with it, and a step lost to a power cut is simply done again. A
        step of 256 messages held the writer for a median 8 ms with its own fsync, 5 ms without
        (3.8 ms of it CPU; receipts that arrive meanwhile wait for it).

        Each step also merges the index's segments, about a page of merge work per 4 messages
        indexed (``MIN_MERGE_PAGES`` at least): FTS5's own automatic merging is off (migration e0005)
        because it now and then made one step do a merge that grew with the index. 64 pages per 256
        messages kept the index about as merged as automerge did over 512,000 messages (2% more
        segment rows); 16 fell behind (FTS5's crisis merges took up to 0.7 s).
        """
        if self.pg:
            return 0
        with self.fast.write(derived=True) as cur:
            cur.execute(q.TEXT_MARK(False))
            mark = int(cur.fetchone()[0])
            cur.execute(q.TEXT_PENDING(False), (mark, limit))
            rows = cur.fetchall()
            if not rows:
                return 0
            cur.executemany(q.INSERT_FTS(False), [(int(r[0]), search_text(bytes(r[1]))) for r in rows])
            cur.execute(q.MERGE_FTS(False), (max(MIN_MERGE_PAGES, len(rows) // 4),))
            patients = [(int(r[0]), p) for r in rows if r[2] for p in json.loads(r[2])]
            if patients:
                cur.executemany(q.INSERT_PATIENT(False), patients)
            cur.execute(q.SET_TEXT_MARK(False), (int(rows[-1][0]),))
        return len(rows)

    def clean_text_index(self) -> int:
        """PostgreSQL: move the entries waiting in the text index's pending list into the index;
        returns the pages that took (SQLite: nothing to do, 0).

        ``ix_eng_message_search`` is a GIN index with fast update: an insert appends its message's
        words to a pending list, and the insert that finds the list above ``gin_pending_list_limit``
        (4 MB: ~2,050 of the benchmark's ADT messages) moves all of it into the index itself, inside
        its transaction: that receipt took 46-70 ms against a median 1.4 (one connection, quiet
        machine; over 100 ms on a busy one), every two seconds at 1,000 msgs/s, and the senders
        behind it paid for it too. ``GroupCommitter`` calls this between receipts, on another
        connection, so the list stays far below the limit and no receipt does the move (256
        messages: 64 pages, 5-15 ms; inserts go on meanwhile - the move locks out other movers, not
        inserters). Only the index's owner may run it, as VACUUM; otherwise the inserts keep doing it."""
        if not self.pg:
            return 0
        with self.engine.connect() as conn:
            pages = conn.exec_driver_sql(q.CLEAN_TEXT_INDEX_PG).scalar()
            conn.commit()
        return int(pages or 0)

    def index_all(self) -> None:
        """Bring the text and patient indexes up to date (before a search by text or patient, so it
        sees every stored message)."""
        while self.index_pending(2000) == 2000:
            pass

    # -- search and detail -----------------------------------------------------------------

    def search(self, q: SearchQuery) -> list[dict[str, Any]]:
        """Newest first. Every criterion uses an index; text goes through FTS5 / a GIN tsvector."""
        m = t.message.c
        stmt = sa.select(*_SUMMARY)
        if self.pg:  # a NUL as stored there (receive): a space; as a parameter it was a 500
            q = replace(q, channel=db_text(q.channel), msg_type=db_text(q.msg_type), control_id=db_text(q.control_id),
                        patient=db_text(q.patient))
        if q.channel:
            stmt = stmt.where(m.channel == q.channel)
        if q.status:
            stmt = stmt.where(m.status == q.status.upper())
        if q.since is not None:
            stmt = stmt.where(m.received_at >= q.since)
        if q.until is not None:
            stmt = stmt.where(m.received_at < q.until)
        if q.msg_type:
            kind = q.msg_type.replace("_", "^")
            stmt = stmt.where(m.msg_type == kind if "^" in kind else m.msg_type.like(kind + "^%"))
        if q.control_id:
            stmt = stmt.where(m.control_id == q.control_id)
        if q.patient:
            self.index_all()
            stmt = stmt.where(m.id.in_(sa.select(t.message_patient.c.message_id)
                                       .where(t.message_patient.c.identifier == q.patient)))
        if q.before_id:
            stmt = stmt.where(m.id < q.before_id)
        if q.text:
            words = query_words(q.text)
            if not words:
                return []
            self.index_all()
            if self.pg:
                stmt = stmt.where(sa.text("eng_message.search @@ to_tsquery('simple', :tsq)").bindparams(
                    tsq=" & ".join(w + ":*" for w in words)))
            else:
                stmt = stmt.where(m.id.in_(sa.text("SELECT rowid FROM eng_message_fts WHERE eng_message_fts "
                                                   "MATCH :fts").bindparams(
                    fts=" ".join(f'"{w}"*' for w in words)).columns(sa.column("rowid"))))
        stmt = stmt.order_by(m.id.desc()).limit(max(1, min(q.limit, 10000)))
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def get(self, message_id: int) -> dict[str, Any] | None:
        """Everything kept about one message: content of each stage, deliveries, attempts, children.

        ``runs``: the message's passes through its channel - run 1 at receipt, one more per reprocess
        (``at``, ``by``: the actor's name, None when not known). Each attempt carries its ``run``
        (numbers restart at 1 in each run: a reprocess gives every destination its whole retry
        budget again); the deliveries are those of the last run."""
        with self.read() as conn:
            row = conn.execute(sa.select(t.message).where(t.message.c.id == message_id)).first()
            if row is None:
                return None
            out = dict(row._mapping)
            kept = out.pop("patients", None)
            out["patient_ids"] = json.loads(kept) if kept is not None else [r[0] for r in conn.execute(
                sa.select(t.message_patient.c.identifier).where(t.message_patient.c.message_id == message_id))]
            out["deliveries"] = [dict(r._mapping) for r in conn.execute(
                sa.select(t.delivery).where(t.delivery.c.message_id == message_id)
                .order_by(t.delivery.c.destination))]
            out["attempts"] = [dict(r._mapping) for r in conn.execute(
                sa.select(t.attempt).where(t.attempt.c.message_id == message_id).order_by(t.attempt.c.id))]
            again = conn.execute(sa.select(t.reprocess.c.at, t.reprocess.c.actor, t.reprocess.c.after_attempt)
                                 .where(t.reprocess.c.message_id == message_id).order_by(t.reprocess.c.id)).all()
            out["runs"] = [{"run": 1, "at": out["received_at"], "by": None}] + [
                {"run": n, "at": r[0], "by": r[1] or None} for n, r in enumerate(again, start=2)]
            for a in out["attempts"]:
                a["run"] = 1 + sum(1 for r in again if a["id"] > r[2])
            for d in out["deliveries"]:
                d["run"] = len(out["runs"])
            out["children"] = [int(r[0]) for r in conn.execute(
                sa.select(t.message.c.id).where(t.message.c.parent_id == message_id).order_by(t.message.c.id))]
            out["queued"] = [dict(r._mapping) for r in conn.execute(
                sa.select(t.queue.c.step, t.queue.c.attempts, t.queue.c.next_at, t.queue.c.lease_owner)
                .where(t.queue.c.message_id == message_id))]
        return out

    def statuses(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        with self.read() as conn:
            return {int(r[0]): r[1] for r in conn.execute(
                sa.select(t.message.c.id, t.message.c.status).where(t.message.c.id.in_(list(ids))))}

    def outcome(self, message_id: int) -> tuple[str, str | None] | None:
        """(status, error) of a message, counting a split parent as its children's worst status;
        None while any part of it is still being processed."""
        with self.read() as conn:
            row = conn.execute(sa.select(t.message.c.status, t.message.c.error)
                               .where(t.message.c.id == message_id)).first()
            if row is None:
                return ("ERROR", f"Message {message_id} is not in the store")
            status, error = row[0], row[1]
            if status in ("RECEIVED", "QUEUED"):
                return None
            if status != "TRANSFORMED":
                return (status, error)
            kids = conn.execute(sa.select(t.message.c.status, t.message.c.error)
                                .where(t.message.c.parent_id == message_id)).all()
        if any(k[0] in ("RECEIVED", "QUEUED") for k in kids):
            return None
        bad = [k for k in kids if k[0] == "ERROR"]
        return ("ERROR", bad[0][1]) if bad else ("SENT", None)

    # -- reprocess and retention ----------------------------------------------------------

    def reprocess(self, ids: Sequence[int], *, actor: Actor | None = None,
                  criteria: dict[str, Any] | None = None) -> tuple[list[int], list[str]]:
        """Send finished messages through their channel again (same row; attempt history kept, and
        a new run recorded: its attempts are numbered from 1, see ``get``'s ``runs``).
        Returns (ids queued, one sentence per message skipped). With ``actor``, the audit row
        (``criteria``: how the messages were chosen) commits in the same transaction."""
        done: list[int] = []
        skipped: list[str] = []
        now = self.clock()
        with self.write() as conn:
            for mid in ids:
                row = conn.execute(sa.select(t.message.c.status, t.message.c.channel, t.message.c.order_key)
                                   .where(t.message.c.id == mid)).first()
                if row is None:
                    skipped.append(f"Message {mid} is not in the store.")
                    continue
                if row[0] not in FINAL_STATUSES:
                    skipped.append(f"Message {mid} is {row[0]} (still being processed); reprocess it once "
                                   "it is SENT, FILTERED or ERROR.")
                    continue
                conn.execute(sa.delete(t.delivery).where(t.delivery.c.message_id == mid))
                last = conn.execute(sa.select(sa.func.max(t.attempt.c.id)).where(t.attempt.c.message_id == mid)).scalar()
                conn.execute(t.reprocess.insert().values(message_id=mid, at=now, actor=actor.name[:160] if actor else "",
                                                         after_attempt=last or 0))
                conn.execute(sa.update(t.message).where(t.message.c.id == mid).values(
                    status="RECEIVED", transformed=None, bundle=None, error=None, duplicate_of=None,
                    updated_at=now))
                conn.execute(t.queue.insert().values(message_id=mid, channel=row[1], step="", order_key=row[2],
                                                     seq=mid, enqueued_at=now, next_at=now, attempts=0))
                done.append(mid)
            if actor is not None:
                outcome = "success" if not skipped else ("partial" if done else "failure")
                detail = {**A.ids_detail(done), "requested": len(ids), "skipped": len(skipped)}
                if criteria:
                    detail["criteria"] = criteria
                A.record(conn, actor, "reprocess", "messages", outcome, detail, at=now)
        return done, skipped

    def prune(self, channel: str | None, older_than_ms: int, *, batch: int = 500,
              max_batches: int = 1_000_000, actor: Actor | None = None,
              criteria: dict[str, Any] | None = None) -> int:
        """Delete finished messages received before ``older_than_ms`` (epoch ms), ``batch`` per
        transaction so the database is never locked for long. Queued messages are never pruned.
        With ``actor``, an audit row records the criteria and the count once it is done (or failed:
        then the count so far)."""
        if actor is None:
            return self._prune(channel, older_than_ms, batch, max_batches, [0])
        done = [0]
        detail: dict[str, Any] = {**(criteria or {}), "channel": channel, "received_before": older_than_ms}
        try:
            total = self._prune(channel, older_than_ms, batch, max_batches, done)
        except Exception:
            self.audit(actor, "prune", channel or "messages", "failure", {**detail, "count": done[0],
                                                                        "reason": "database error"})
            raise
        self.audit(actor, "prune", channel or "messages", "success", {**detail, "count": total})
        return total

    def _prune(self, channel: str | None, older_than_ms: int, batch: int, max_batches: int, done: list[int]) -> int:
        total = 0
        m = t.message.c
        for _ in range(max_batches):
            with self.write() as conn:
                stmt = sa.select(m.id, m.raw).where(m.received_at < older_than_ms, m.status.in_(FINAL_STATUSES))
                if channel:
                    stmt = stmt.where(m.channel == channel)
                rows = conn.execute(stmt.order_by(m.received_at).limit(batch)).all()
                if not rows:
                    break
                ids = [int(r[0]) for r in rows]
                if not self.pg:
                    # only what is in the index: a contentless FTS5 table must not be told to delete
                    # text it never had (messages above the mark were never indexed)
                    mark = int(conn.exec_driver_sql("SELECT last_id FROM eng_text_index WHERE id = 1").scalar() or 0)
                    indexed = [(int(r[0]), search_text(bytes(r[1]))) for r in rows if int(r[0]) <= mark]
                    if indexed:
                        conn.exec_driver_sql(
                            "INSERT INTO eng_message_fts(eng_message_fts, rowid, body) VALUES ('delete', ?, ?)",
                            indexed)
                for table, col in ((t.message_patient, t.message_patient.c.message_id),
                                   (t.delivery, t.delivery.c.message_id), (t.attempt, t.attempt.c.message_id),
                                   (t.reprocess, t.reprocess.c.message_id),
                                   (t.queue, t.queue.c.message_id), (t.message, m.id)):
                    conn.execute(sa.delete(table).where(col.in_(ids)))
                total += len(ids)
            done[0] = total
            if len(rows) < batch:
                break
        return total

    # -- channel state and statistics -----------------------------------------------------

    def channel_states(self) -> dict[str, dict[str, Any]]:
        with self.read() as conn:
            return {r[0]: {"deployed": bool(r[1]), "paused": bool(r[2]), "generation": int(r[3])}
                    for r in conn.execute(sa.select(t.channel_state.c.name, t.channel_state.c.deployed,
                                                    t.channel_state.c.paused, t.channel_state.c.generation))}

    def set_channel_state(self, name: str, *, deployed: bool | None = None, paused: bool | None = None,
                          bump: bool = False, actor: Actor | None = None, action: str = "") -> dict[str, Any]:
        """Record the desired state of a channel; every running process follows within a second.
        With ``actor``, the audit row of ``action`` commits in the same transaction."""
        now = self.clock()
        with self.write() as conn:
            state = self._set_state(conn, name, deployed, paused, bump, now)
            if actor is not None:
                A.record(conn, actor, action, name, "success", {"state": {
                    k: state[k] for k in ("deployed", "paused", "generation")}}, at=now)
        return state

    def _set_state(self, conn: sa.Connection, name: str, deployed: bool | None, paused: bool | None, bump: bool,
                   now: int) -> dict[str, Any]:
        c = t.channel_state.c
        row = conn.execute(sa.select(c.deployed, c.paused, c.generation).where(c.name == name)).first()
        if row is None:
            # A channel without a row runs as generation 0 (as declared): only a deploy (bump)
            # asks for a new one. Pausing it must not look like a redeploy - that restarted the
            # channel, dropping its senders' connections (and, with port 0, moving the port).
            values = {"name": name, "deployed": True if deployed is None else deployed,
                      "paused": bool(paused), "generation": 1 if bump else 0, "updated_at": now}
            conn.execute(t.channel_state.insert().values(**values))
            return values
        values = {"deployed": bool(row[0]) if deployed is None else deployed,
                  "paused": bool(row[1]) if paused is None else paused,
                  "generation": int(row[2]) + (1 if bump else 0), "updated_at": now}
        conn.execute(sa.update(t.channel_state).where(c.name == name).values(**values))
        return {"name": name, **values}

    # -- audit trail ------------------------------------------------------------------------

    def audit(self, actor: Actor, action: str, target: str, outcome: str, detail: dict[str, Any]) -> None:
        """Record one administrative action in a transaction of its own (``engine/audit.py``)."""
        with self.write() as conn:
            A.record(conn, actor, action, target, outcome, detail, at=self.clock())

    def audit_log(self, query: A.AuditQuery) -> list[dict[str, Any]]:
        with self.read() as conn:
            return A.query(conn, query)

    def queue_stats(self) -> dict[tuple[str, str], tuple[int, int | None]]:
        """(channel, step) → (queued count, enqueued_at of the oldest). The queue holds only pending work."""
        q = t.queue.c
        with self.read() as conn:
            return {(r[0], r[1]): (int(r[2]), int(r[3]) if r[3] is not None else None) for r in conn.execute(
                sa.select(q.channel, q.step, sa.func.count(), sa.func.min(q.enqueued_at)).group_by(q.channel, q.step))}

    def status_counts(self, since: int | None = None) -> dict[tuple[str, str], int]:
        """(channel, status) → messages received since ``since`` (epoch ms; all when None)."""
        m = t.message.c
        stmt = sa.select(m.channel, m.status, sa.func.count()).group_by(m.channel, m.status)
        if since is not None:
            stmt = stmt.where(m.received_at >= since)
        with self.read() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(stmt)}

    def delivery_counts(self, since: int | None = None) -> dict[tuple[str, str, str], int]:
        """(channel, destination, status) → deliveries of messages received since ``since``."""
        m, d = t.message.c, t.delivery.c
        stmt = (sa.select(m.channel, d.destination, d.status, sa.func.count())
                .select_from(t.delivery.join(t.message, m.id == d.message_id))
                .group_by(m.channel, d.destination, d.status))
        if since is not None:
            stmt = stmt.where(m.received_at >= since)
        with self.read() as conn:
            return {(r[0], r[1], r[2]): int(r[3]) for r in conn.execute(stmt)}

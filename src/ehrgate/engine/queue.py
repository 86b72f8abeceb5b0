"""The durable work queue: claim with a lease, finish in the same transaction as the state change.

Rows of ``eng_queue`` are pending work: ``step`` ``''`` runs the channel pipeline, any other value
delivers to that destination. A worker *claims* rows by writing its owner id and a lease deadline;
it *finishes* a row by deleting it (done) or rescheduling it (retry), checking that it still holds
the lease. A worker that dies leaves leases that expire (or that the next process on the same host
releases at start when the owner's pid is gone), so the rows are claimed again: at-least-once.

* PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks rows no other claimer is looking at, so
  several processes share one queue.
* SQLite: the claim is one ``UPDATE ... RETURNING`` inside ``BEGIN IMMEDIATE`` (one writer at a time).

Ordering (``ordered: true``): a row is claimable only when no row of the same channel and order key
with an earlier position (``seq``, then message id) is pending in the pipeline or in the same
destination. A failing message therefore holds back its own key only; other keys flow.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import schema as t
from . import sql as q
from .store import MessageStore, db_text, patients_json

__all__ = ["Delivered", "Item", "LeaseLost", "Queue", "new_owner"]

PIPELINE = ""


def new_owner() -> str:
    """host:pid:random - the lease owner id of one running engine."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(4).hex()}"


class LeaseLost(Exception):
    """The row was claimed by another worker after this one's lease expired: its work is discarded."""


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    message_id: int
    channel: str
    step: str
    order_key: str
    seq: int
    enqueued_at: int
    attempts: int


@dataclass(slots=True)
class Delivered:
    """The result of one delivery attempt."""

    ok: bool
    request: bytes | None = None
    response: bytes | None = None
    error: str | None = None
    retry: bool = True
    duration_ms: int = 0


class Queue:
    def __init__(self, store: MessageStore, owner: str) -> None:
        self.store = store
        self.owner = owner

    def claim(self, channel: str, step: str, *, limit: int, lease_ms: int, ordered: bool = False) -> list[Item]:
        """Lease up to ``limit`` due rows of (channel, step), in queue order (one statement, plain SQL)."""
        now = self.store.clock()
        pg = self.store.pg
        sql = q.CLAIM[(ordered and step != PIPELINE, pg)](pg)
        if pg:
            params: tuple[Any, ...] = (channel, step, now, now, limit, self.owner, now + lease_ms)
        else:
            params = (self.owner, now + lease_ms, channel, step, now, now, limit)
        with self.store.fast.write() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        items = [Item(int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7])) for r in rows]
        items.sort(key=lambda i: (i.seq, i.message_id))
        return items

    def next_due(self, channel: str, step: str) -> int | None:
        """Epoch ms of the earliest ``next_at`` of unleased rows (to sleep until then), None if none."""
        q = t.queue.c
        with self.store.read() as conn:
            v = conn.execute(sa.select(sa.func.min(q.next_at)).where(q.channel == channel, q.step == step)).scalar()
        return None if v is None else int(v)

    def release_dead_leases(self) -> int:
        """At start: free leases held by engines on this host whose process is gone (after kill -9),
        so their work is taken over at once instead of after the lease expires."""
        host = socket.gethostname()[:60]
        now = self.store.clock()
        with self.store.read() as conn:
            owners = [r[0] for r in conn.execute(sa.select(t.queue.c.lease_owner).distinct()
                                                 .where(t.queue.c.lease_until >= now))]
        dead = []
        for owner in owners:
            parts = (owner or "").rsplit(":", 2)
            if len(parts) != 3 or parts[0] != host or owner == self.owner:
                continue
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                dead.append(owner)
            except (PermissionError, ValueError):
                continue
        if not dead:
            return 0
        with self.store.write() as conn:
            res = conn.execute(sa.update(t.queue).where(t.queue.c.lease_owner.in_(dead))
                               .values(lease_owner=None, lease_until=None))
            return int(res.rowcount or 0)

    # -- finishing -------------------------------------------------------------------------
    # ``conn`` is a SQLAlchemy Connection (the FHIR store destination finishes inside the store's
    # transaction) or a DBAPI cursor from ``store.fast.write()``; either way the statements are plain
    # SQL on the driver's cursor, in the caller's transaction.

    def _take(self, cur: Any, item: Item) -> None:
        cur.execute(q.TAKE(self.store.pg), (item.id, self.owner))
        if cur.rowcount != 1:
            raise LeaseLost(f"Queue row {item.id} (message {item.message_id}) is no longer leased by this worker")

    def finish_pipeline(self, conn: Any, item: Item, *, status: str, error: str | None = None,
                        transformed: bytes | None = None, bundle: bytes | None = None,
                        destinations: Sequence[str] = (), children: Sequence[dict[str, Any]] = ()) -> list[int]:
        """Record the pipeline's result for one message and queue its deliveries (one transaction,
        the caller's). ``children`` (from a split) become new messages, each with its destinations.
        Returns the ids of the children."""
        cur = q.cursor(conn)
        pg = self.store.pg
        self._take(cur, item)
        now = self.store.clock()
        cur.execute(q.SET_RESULT(pg), (status, db_text(error), transformed, bundle, now, item.message_id))
        self._queue_deliveries(cur, item.message_id, item, destinations, now)
        if not children:
            return []
        kids = self.store.new_ids(cur, len(children))
        rows: list[tuple[Any, ...]] = []
        patients: list[tuple[int, str]] = []
        for cid, child in zip(kids, children, strict=True):
            rows.append((cid, item.channel, now, now, "QUEUED" if child["destinations"] else "FILTERED",
                         db_text(child.get("msg_type", "")), db_text(child.get("control_id", "")),
                         db_text(child.get("sender", "")),
                         f"split of message {item.message_id}", item.message_id, None, item.order_key,
                         child["raw"], child["raw"], child.get("bundle"),
                         None if child["destinations"] else "No destination matched",
                         patients_json(child.get("patient_ids") or ()), child.get("trace")))
            if pg:  # SQLite: index_pending writes them, as for received messages (migration e0003)
                patients.extend((cid, p) for p in dict.fromkeys(p.replace("\x00", " ")
                                                                 for p in child.get("patient_ids") or ()))
        cur.executemany(q.INSERT_MESSAGE(pg), rows)
        if patients:
            cur.executemany(q.INSERT_PATIENT(pg), patients)
        for cid, child in zip(kids, children, strict=True):
            self._queue_deliveries(cur, cid, item, child["destinations"], now)
        self.store.index_text(cur, kids, [c["raw"] for c in children])
        return kids

    def _queue_deliveries(self, cur: Any, message_id: int, item: Item, destinations: Sequence[str],
                          now: int) -> None:
        if not destinations:
            return
        pg = self.store.pg
        cur.executemany(q.INSERT_DELIVERY(pg), [(message_id, d, now) for d in destinations])
        cur.executemany(q.INSERT_QUEUE(pg), [(message_id, item.channel, d, item.order_key, item.seq, now, now)
                                             for d in destinations])

    def finish_delivery(self, conn: Any, item: Item, result: Delivered, *, give_up: bool, next_at: int) -> str:
        """Record one attempt: SENT, a retry at ``next_at`` or ERROR (``give_up`` or not retryable).
        Returns the delivery status. Runs in the caller's transaction (for the FHIR store
        destination, the same one that wrote the resources)."""
        cur = q.cursor(conn)
        pg = self.store.pg
        now = self.store.clock()
        attempt_no = item.attempts + 1
        error = db_text(result.error)
        if result.ok:
            status = "SENT"
        elif give_up or not result.retry:
            status = "ERROR"
        else:
            status = "QUEUED"
        if status == "QUEUED":
            cur.execute(q.RETRY_LATER(pg), (attempt_no, next_at, item.id, self.owner))
            if cur.rowcount != 1:
                raise LeaseLost(f"Queue row {item.id} (message {item.message_id}) is no longer leased by this worker")
        else:
            self._take(cur, item)
        cur.execute(q.UPDATE_DELIVERY(pg), (status, attempt_no, now, error, result.request, result.response,
                                            item.message_id, item.step))
        cur.execute(q.INSERT_ATTEMPT(pg), (item.message_id, item.step, attempt_no, now,
                                           "SENT" if result.ok else ("ERROR" if status == "ERROR" else "RETRY"),
                                           result.duration_ms, error))
        if status != "QUEUED":
            self._settle(cur, item.message_id, now)
        return status

    def _settle(self, cur: Any, message_id: int, now: int) -> None:
        """Set the message's status once none of its deliveries is queued (row-locked on PostgreSQL
        so two destinations finishing at once cannot both miss the last one)."""
        pg = self.store.pg
        if pg:
            cur.execute(q.LOCK_MESSAGE_PG(pg), (message_id,))
            cur.fetchall()
        cur.execute(q.DELIVERY_STATES(pg), (message_id,))
        rows = cur.fetchall()
        if any(r[0] == "QUEUED" for r in rows):
            return
        errors = [r for r in rows if r[0] == "ERROR"]
        if errors:
            text = "; ".join(f"{r[1]}: {r[2]}" for r in errors)[:4000]
            cur.execute(q.SET_ERROR(pg), (text, now, message_id))
        else:
            cur.execute(q.SET_SENT(pg), (now, message_id))

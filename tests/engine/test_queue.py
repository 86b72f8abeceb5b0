"""The durable queue: leases, ordering per key, take-over after a crash, concurrent claimers."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from ehrgate.engine import MessageStore
from ehrgate.engine.queue import Delivered, LeaseLost, Queue
from ehrgate.engine.retry import RetryPolicy

from .conftest import hl7
from .test_store import incoming


def _to_destination(messages: MessageStore, q: Queue, n: int, *, keys: list[str] | None = None) -> list[int]:
    """n messages through a trivial pipeline to destination 'd' (optionally ordered by PID-3.1)."""
    raws = [hl7(f"Q{i}", patient=(keys[i] if keys else "P")) for i in range(n)]
    receipts = messages.receive([incoming(r, order_by="PID-3.1" if keys else None) for r in raws])
    items = q.claim("adt", "", limit=1000, lease_ms=60_000)
    with messages.write() as conn:
        for item in items:
            q.finish_pipeline(conn, item, status="QUEUED", transformed=b"x", destinations=["d"])
    return [r.id for r in receipts]


def test_a_lease_keeps_others_off_until_it_expires(messages: MessageStore) -> None:
    a, b = Queue(messages, "host:1:a"), Queue(messages, "host:1:b")
    _to_destination(messages, a, 3)
    got = a.claim("adt", "d", limit=2, lease_ms=60_000)
    assert len(got) == 2
    assert [i.message_id for i in b.claim("adt", "d", limit=5, lease_ms=60_000)] == [got[-1].message_id + 1]
    assert b.claim("adt", "d", limit=5, lease_ms=60_000) == []
    # an expired lease is taken over; the first owner's late finish is refused
    with messages.write() as conn:
        conn.execute(sa.text("UPDATE eng_queue SET lease_until = 0 WHERE lease_owner = 'host:1:a'"))
    taken = b.claim("adt", "d", limit=5, lease_ms=60_000)
    assert {i.id for i in taken} == {i.id for i in got}
    try:
        with messages.write() as conn:
            a.finish_delivery(conn, got[0], Delivered(True), give_up=False, next_at=0)
        raise AssertionError("expected LeaseLost")
    except LeaseLost:
        pass


def test_delivery_outcomes_retry_then_sent_and_error(messages: MessageStore) -> None:
    q = Queue(messages, "host:1:a")
    ids = _to_destination(messages, q, 2)
    first, second = q.claim("adt", "d", limit=2, lease_ms=60_000)
    with messages.write() as conn:
        assert q.finish_delivery(conn, first, Delivered(False, error="down"), give_up=False, next_at=0) == "QUEUED"
        assert q.finish_delivery(conn, second, Delivered(False, error="AR", retry=False), give_up=False, next_at=0) == "ERROR"
    [again] = q.claim("adt", "d", limit=2, lease_ms=60_000)
    assert again.attempts == 1
    with messages.write() as conn:
        assert q.finish_delivery(conn, again, Delivered(True, response=b"ok"), give_up=False, next_at=0) == "SENT"
    one, two = messages.get(ids[0]), messages.get(ids[1])
    assert one is not None and two is not None
    assert one["status"] == "SENT" and [a["outcome"] for a in one["attempts"]] == ["RETRY", "SENT"]
    assert two["status"] == "ERROR" and "d: AR" in two["error"]
    assert two["deliveries"][0]["last_error"] == "AR"


def test_ordered_claims_hold_back_only_the_failing_key(messages: MessageStore) -> None:
    q = Queue(messages, "host:1:a")
    ids = _to_destination(messages, q, 5, keys=["A", "B", "A", "B", "C"])
    heads = q.claim("adt", "d", limit=10, lease_ms=60_000, ordered=True)
    assert [i.message_id for i in heads] == [ids[0], ids[1], ids[4]]  # one per key, oldest first
    a, b, c = heads
    with messages.write() as conn:  # A fails (retry later), B and C succeed
        q.finish_delivery(conn, a, Delivered(False, error="down"), give_up=False, next_at=messages.clock() + 60_000)
        q.finish_delivery(conn, b, Delivered(True), give_up=False, next_at=0)
        q.finish_delivery(conn, c, Delivered(True), give_up=False, next_at=0)
    nxt = q.claim("adt", "d", limit=10, lease_ms=60_000, ordered=True)
    assert [i.message_id for i in nxt] == [ids[3]]  # B's second; A's second waits behind A's first


def test_retry_policy_backs_off_with_jitter_and_gives_up() -> None:
    import random

    p = RetryPolicy(max_attempts=5, max_age=60, base_delay=1, max_delay=8)
    rnd = random.Random(1)
    delays = [p.delay(n, rnd) for n in range(1, 7)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(8, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert not p.gives_up(4, 10) and p.gives_up(5, 10) and p.gives_up(1, 61)


def test_dead_local_owner_leases_are_released_at_start(messages: MessageStore) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = Queue(messages, f"{socket.gethostname()[:60]}:{dead.pid}:dead")
    alive = Queue(messages, f"{socket.gethostname()[:60]}:1:init")  # pid 1 exists: not released
    _to_destination(messages, gone, 2)
    gone.claim("adt", "d", limit=1, lease_ms=600_000)
    alive.claim("adt", "d", limit=1, lease_ms=600_000)
    me = Queue(messages, "me")
    assert me.claim("adt", "d", limit=5, lease_ms=60_000) == []
    assert me.release_dead_leases() == 1
    assert len(me.claim("adt", "d", limit=5, lease_ms=60_000)) == 1


def test_concurrent_claimers_never_share_a_row(messages: MessageStore) -> None:
    q0 = Queue(messages, "setup")
    _to_destination(messages, q0, 60)
    seen: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        q = Queue(messages, f"w{n}")
        try:
            while True:
                got = q.claim("adt", "d", limit=3, lease_ms=60_000)
                if not got:
                    return
                seen[n].extend(i.id for i in got)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    flat = [i for s in seen for i in s]
    assert len(flat) == 60 and len(set(flat)) == 60


def test_a_nul_in_an_error_text_is_recorded_not_a_stuck_queue(messages: MessageStore) -> None:
    """PostgreSQL refuses NUL in text: a step's or a receiver's error text holding one (a user
    function's exception quoting message data; a remote ACK's ERR-8 with \\X00\\) made recording
    the outcome fail, so the queue row ran again after its lease, forever - for a pipeline batch,
    every message claimed with it."""
    q = Queue(messages, "host:1:a")
    receipts = messages.receive([incoming(hl7("Z1")), incoming(hl7("Z2"))])
    one, two = q.claim("adt", "", limit=10, lease_ms=60_000)
    with messages.write() as conn:
        q.finish_pipeline(conn, one, status="ERROR", error="transform 1 (f) failed: ValueError: a\x00b")
        q.finish_pipeline(conn, two, status="QUEUED", transformed=b"x", destinations=["d"])
    [item] = q.claim("adt", "d", limit=10, lease_ms=60_000)
    with messages.write() as conn:
        assert q.finish_delivery(conn, item, Delivered(False, error="peer answered AE: no\x00pe", retry=False),
                                 give_up=False, next_at=0) == "ERROR"
    first, second = messages.get(receipts[0].id), messages.get(receipts[1].id)
    assert first is not None and first["error"] == "transform 1 (f) failed: ValueError: a b"
    assert second is not None and second["error"] == "d: peer answered AE: no pe"
    assert second["attempts"][0]["error"] == "peer answered AE: no pe"

"""The message store on SQLite and PostgreSQL: durable receipt, duplicates, search, reprocess, retention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.engine.info import describe
from ehrgate.engine.store import Incoming, patients_json

from .conftest import hl7
from .helpers import two_runs


def incoming(raw: bytes, channel: str = "adt", *, order_by: str | None = None) -> Incoming:
    info = describe(raw, order_by)
    return Incoming(channel, raw, "test", info.msg_type, info.control_id, info.sender, info.patient_ids,
                    info.order_key, info.error)


@pytest.mark.parametrize("ids", [(), ("MRN1",), ("MRN1", "999-00-1234"), ("Zoë Ü 患者",), ('say "hi"',),
                                 ("back\\slash",), ("tab\there",), ("\x7f",), ("line\u2028sep",), ("nul\x00",)])
def test_patients_json_is_what_json_dumps_writes(ids: tuple[str, ...]) -> None:
    expected = json.dumps(list(ids), ensure_ascii=False) if ids else None
    assert patients_json(ids) == expected
    if ids:
        assert json.loads(patients_json(ids) or "") == list(ids)


def test_receive_stores_and_queues_in_one_transaction(messages: MessageStore) -> None:
    receipts = messages.receive([incoming(hl7("C1")), incoming(hl7("C2", patient="P2"))], duplicate_window_ms=60_000)
    assert [r.status for r in receipts] == ["RECEIVED", "RECEIVED"]
    got = messages.get(receipts[0].id)
    assert got is not None
    assert bytes(got["raw"]) == hl7("C1")
    assert got["msg_type"] == "ADT^A01" and got["control_id"] == "C1" and got["sender"] == "LAB^FAC"
    assert got["patient_ids"] == ["P1"]
    assert [q["step"] for q in got["queued"]] == [""]
    assert messages.queue_stats()[("adt", "")][0] == 2


def test_unparseable_is_stored_as_error_and_not_queued(messages: MessageStore) -> None:
    [r] = messages.receive([incoming(b"MSH|^~\\&|A\rthis is not a segment\r")])
    assert r.status == "ERROR"
    got = messages.get(r.id)
    assert got is not None and "not a segment id" in got["error"]
    assert got["queued"] == []


def test_duplicates_within_the_window_are_filtered(messages: MessageStore) -> None:
    [first] = messages.receive([incoming(hl7("D1"))], duplicate_window_ms=60_000)
    # the same control id again, twice in one batch, plus one from another sender and one on another channel
    batch = [incoming(hl7("D1")), incoming(hl7("D1")), incoming(hl7("D1", sender="OTHER")),
             incoming(hl7("D1"), channel="other"), incoming(hl7("D2")), incoming(hl7("D2"))]
    r = messages.receive(batch, duplicate_window_ms=60_000)
    assert [x.status for x in r] == ["FILTERED", "FILTERED", "RECEIVED", "RECEIVED", "RECEIVED", "FILTERED"]
    assert r[0].duplicate_of == first.id and r[1].duplicate_of == first.id
    assert r[5].duplicate_of == r[4].id
    got = messages.get(r[5].id)
    assert got is not None and got["duplicate_of"] == r[4].id and "Duplicate of message" in got["error"]
    # outside the window (0 = off) nothing is a duplicate
    [again] = messages.receive([incoming(hl7("D1"))], duplicate_window_ms=0)
    assert again.status == "RECEIVED"


@pytest.mark.parametrize("many", [False, True], ids=["union", "in-list"])
def test_duplicates_in_a_batch_each_found_once_with_the_first_original(messages: MessageStore, many: bool) -> None:
    """Both forms of the SQLite lookup (up to ``DUPLICATE_ARMS`` control ids one arm each, more an IN
    list): every control id is looked up, and a key stored twice before is a duplicate of the first
    (smallest id)."""
    from ehrgate.engine import sql as q

    n = q.DUPLICATE_ARMS * 2 + 5 if many else q.DUPLICATE_ARMS - 1
    first = messages.receive([incoming(hl7(f"B{k}")) for k in range(n)], duplicate_window_ms=60_000)
    again = messages.receive([incoming(hl7("B3"))], duplicate_window_ms=0)  # a second original (window off)
    assert again[0].status == "RECEIVED"
    batch = [incoming(hl7(f"B{k}")) for k in range(n)] + [incoming(hl7("NEW"))]
    r = messages.receive(batch, duplicate_window_ms=60_000)
    assert [x.status for x in r] == ["FILTERED"] * n + ["RECEIVED"]
    assert [x.duplicate_of for x in r[:n]] == [x.id for x in first]


def test_the_duplicate_lookup_reads_the_control_id_index_on_sqlite(messages: MessageStore) -> None:
    from ehrgate.engine import sql as q

    if messages.pg:
        pytest.skip("SQLite's statement (PostgreSQL: the test below)")
    with messages.engine.connect() as conn:
        plan = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q.duplicates_sqlite(3), (0, "a", "b", "c"))]
    searches = [p for p in plan if p.startswith("SEARCH")]
    assert searches == ["SEARCH eng_message USING INDEX ix_eng_message_control (control_id=?)"] * 3, plan
    n = q.DUPLICATE_ARMS + 1
    with messages.engine.connect() as conn:
        plan = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q.duplicates_sqlite(n),
                                                   (0, *(f"c{i}" for i in range(n))))]
    assert "SEARCH eng_message USING INDEX ix_eng_message_control (control_id=?)" in plan, plan


def test_a_receipt_waits_for_the_sqlite_write_lock_and_pool_connections_keep_their_busy_timeout(
        messages: MessageStore) -> None:
    """The receipts' kept connections begin with one ``BEGIN IMMEDIATE`` at busy_timeout 0; a refused
    try goes on to ``begin_immediate``'s polling (counted in ``writers_waiting``) and gets the lock
    once it is free. A connection given back to the pool has the engine's busy_timeout again."""
    import sqlite3
    import threading
    import time

    from ehrgate.fhir.store.engine import BUSY_TIMEOUT_S, writers_waiting

    if messages.pg:
        pytest.skip("SQLite's one write lock")
    path = messages.engine.url.database
    assert path
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    done: list[str] = []
    thread = threading.Thread(target=lambda: done.extend(r.status for r in messages.receive([incoming(hl7("L1"))])))
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while not writers_waiting() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert writers_waiting() and not done  # waiting for the lock, polling
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    thread.join(10)
    assert done == ["RECEIVED"] and not writers_waiting()
    [(kept, _since)] = messages.fast._idle
    dbapi = kept.driver_connection
    assert dbapi.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    messages.fast.close()  # gives the kept connections back to the pool (open, for its other users)
    assert dbapi.execute("PRAGMA busy_timeout").fetchone()[0] == int(BUSY_TIMEOUT_S * 1000)


def test_the_duplicate_lookup_reads_only_the_control_id_index_on_postgresql(messages: MessageStore) -> None:
    """The lookup every receipt batch makes (duplicates within the window, 24 h by default): its plan
    - the generic one a prepared statement keeps too - must not scan ix_eng_message_received over the
    window (one index entry per message of the day, per batch), and the statement is not prepared
    (a plan made while the table is small is a sequential scan, kept until the first autovacuum
    analyze: every message of the table read per batch meanwhile)."""
    from ehrgate.engine import sql as q

    if not messages.pg:
        pytest.skip("PostgreSQL plans; SQLite's planner takes the control-id index (equality before range)")
    for n in range(0, 600, 100):
        messages.receive([incoming(hl7(f"W{n + k}", patient=f"P{k}")) for k in range(100)], duplicate_window_ms=60_000)
    with messages.engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        with dbapi.cursor() as cur:
            cur.execute("ANALYZE eng_message")
            cur.execute("SET plan_cache_mode = force_generic_plan")
            statement = q.IDS_AND_DUPLICATES_PG(True).replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1)
            cur.execute(f"PREPARE dup_probe(int, text[], bigint) AS {statement}")
            cur.execute("EXPLAIN EXECUTE dup_probe(1, ARRAY['W1'], 0)")
            plan = "\n".join(r[0] for r in cur.fetchall())
            cur.execute("DEALLOCATE dup_probe")
        dbapi.rollback()
    assert "ix_eng_message_control" in plan and "ix_eng_message_received" not in plan, plan
    # the receipts' own connections never prepared it (psycopg prepares a statement after 5 runs)
    held = [conn for conn, _since in messages.fast._idle]
    assert held
    for conn in held:
        with conn.driver_connection.cursor() as cur:
            cur.execute("SELECT statement FROM pg_prepared_statements")
            assert not [r for r in cur.fetchall() if "generate_series" in r[0]]
        conn.driver_connection.rollback()


def test_a_receipt_on_postgresql_is_two_round_trips(messages: MessageStore, tmp_path: Path) -> None:
    """The ids and duplicates in one; BEGIN, the inserts and COMMIT in the other, its reply only after
    the commit. psycopg's own transaction handling made it four (BEGIN sent alone, and a second sync
    on leaving the pipeline after commit()): two more waits per batch for the writer thread and the
    server, which on a loaded machine are what a receipt's time is made of."""
    from psycopg.pq import Trace

    if not messages.pg:
        pytest.skip("PostgreSQL's wire protocol")
    messages.receive([incoming(hl7("RT0"))])  # the kept connection, set up
    [(conn, _since)] = messages.fast._idle
    dbapi = conn.driver_connection
    trace = tmp_path / "libpq.trace"
    with trace.open("w") as fh:
        dbapi.pgconn.trace(fh.fileno())
        dbapi.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        try:
            receipts = messages.receive([incoming(hl7("RT1", patient="P1")), incoming(hl7("RT1", patient="P2"))],
                                        duplicate_window_ms=60_000)
        finally:
            dbapi.pgconn.untrace()
    sent = [line.split("\t")[2] for line in trace.read_text().splitlines() if line.startswith("F\t")]
    assert sum(1 for m in sent if m in ("Sync", "Query")) == 2, sent  # the client waits after each
    assert [r.status for r in receipts] == ["RECEIVED", "FILTERED"]
    assert not dbapi.autocommit  # back in psycopg's mode for the queue's transactions
    with dbapi.cursor() as cur:  # the COMMIT it sends itself waits for the WAL flush
        cur.execute("SHOW synchronous_commit")
        assert cur.fetchone()[0] == "on"
    dbapi.rollback()
    got = messages.get(receipts[0].id)
    assert got is not None and got["patient_ids"] == ["P1"] and got["queued"]
    assert [r["id"] for r in messages.search(SearchQuery(patient="P2"))] == [receipts[1].id]


def test_a_receipt_that_fails_on_postgresql_leaves_nothing_and_its_connection_goes_on(messages: MessageStore) -> None:
    """A failed insert in the receipt's pipeline skips the rest of it, COMMIT included: nothing of the
    batch is stored, the open transaction is rolled back, and the kept connection stores the next one."""
    if not messages.pg:
        pytest.skip("SQLite does not enforce the column's length")
    with pytest.raises(Exception, match="too long"):
        messages.receive([incoming(hl7("FA1")), incoming(hl7("FA2"), channel="c" * 80)])
    assert messages.search(SearchQuery(control_id="FA1")) == []
    [(conn, _since)] = messages.fast._idle
    assert not conn.driver_connection.autocommit and conn.driver_connection.info.transaction_status == 0  # IDLE
    [again] = messages.receive([incoming(hl7("FA1"))], duplicate_window_ms=60_000)
    assert again.status == "RECEIVED" and again.duplicate_of is None


def test_search_by_every_criterion(messages: MessageStore) -> None:
    a, b, c = messages.receive([
        incoming(hl7("S1", patient="MRN-77", name="Nunez^Maria")),
        incoming(hl7("S2", patient="MRN-88", name="Okafor^Chidi", kind="ORU^R01"), channel="lab"),
        incoming(hl7("S3", patient="MRN-77", name="Nunez^Maria", kind="ADT^A08")),
    ])
    ids = lambda q: [r["id"] for r in messages.search(q)]  # noqa: E731
    assert ids(SearchQuery(channel="adt")) == [c.id, a.id]
    assert ids(SearchQuery(control_id="S2")) == [b.id]
    assert ids(SearchQuery(patient="MRN-77")) == [c.id, a.id]
    assert ids(SearchQuery(msg_type="ORU^R01")) == [b.id]
    assert ids(SearchQuery(msg_type="ADT")) == [c.id, a.id]
    assert ids(SearchQuery(text="okafor")) == [b.id]
    assert ids(SearchQuery(text="nune maria")) == [c.id, a.id]  # words, each as a prefix, all required
    assert ids(SearchQuery(text="nunez okafor")) == []
    assert ids(SearchQuery(status="received", channel="lab")) == [b.id]
    now = messages.clock()
    assert ids(SearchQuery(since=now + 60_000)) == []
    assert ids(SearchQuery(since=now - 60_000, until=now + 60_000, limit=2)) == [c.id, b.id]
    assert ids(SearchQuery(before_id=c.id, limit=1)) == [b.id]
    assert ids(SearchQuery(text="%_*\"")) == []  # no words: nothing, and no SQL/FTS syntax error


def test_text_search_is_indexed_not_a_scan(messages: MessageStore) -> None:
    messages.receive([incoming(hl7("T1"))])
    with messages.read() as conn:
        if messages.pg:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                "EXPLAIN SELECT id FROM eng_message WHERE search @@ to_tsquery('simple', 'eve:*')"))
            assert "ix_eng_message_search" in plan
        else:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM eng_message WHERE id IN "
                "(SELECT rowid FROM eng_message_fts WHERE eng_message_fts MATCH '\"eve\"*')"))
            assert "VIRTUAL TABLE INDEX" in plan and "SCAN eng_message\n" not in plan + "\n"


def test_the_parent_index_holds_only_messages_with_a_parent(messages: MessageStore) -> None:
    """Migration e0004: receipt writes no entry for the NULL parent of an ordinary message, and the
    children of a message are still found through the index."""
    messages.receive([incoming(hl7("IX1"))])
    with messages.read() as conn:
        if messages.pg:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            [definition] = [r[0] for r in conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_eng_message_parent' "
                "AND schemaname = current_schema()")]
            assert "WHERE (parent_id IS NOT NULL)" in definition
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN SELECT id FROM eng_message WHERE parent_id = 7"))
        else:
            [definition] = [r[0] for r in conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_eng_message_parent'")]
            assert "WHERE parent_id IS NOT NULL" in definition
            assert conn.exec_driver_sql("SELECT count(*) FROM eng_message INDEXED BY ix_eng_message_parent "
                                        "WHERE parent_id IS NOT NULL").scalar() == 0
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM eng_message WHERE parent_id = 7"))
        assert "ix_eng_message_parent" in plan


def test_message_store_commits_durably(messages: MessageStore) -> None:
    """synchronous=FULL on the message store's SQLite connections; synchronous_commit on for PostgreSQL."""
    with messages.write() as conn:
        if messages.pg:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        else:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def _finish(messages: MessageStore, status: str = "SENT") -> None:
    with messages.write() as conn:
        conn.execute(sa.text("UPDATE eng_message SET status = :s"), {"s": status})
        conn.execute(sa.text("DELETE FROM eng_queue"))


def test_reprocess_queues_finished_messages_again(messages: MessageStore) -> None:
    [r] = messages.receive([incoming(hl7("R1"))])
    done, skipped = messages.reprocess([r.id, 999999])
    assert done == [] and len(skipped) == 2 and "still being processed" in skipped[0] and "not in the store" in skipped[1]
    _finish(messages, "ERROR")
    done, skipped = messages.reprocess([r.id])
    assert done == [r.id] and skipped == []
    got = messages.get(r.id)
    assert got is not None and got["status"] == "RECEIVED" and [q["step"] for q in got["queued"]] == [""]


def test_prune_deletes_old_finished_messages_in_batches(messages: MessageStore) -> None:
    receipts = messages.receive([incoming(hl7(f"P{i}", name="Prunable^Pat")) for i in range(7)])
    [young] = messages.receive([incoming(hl7("KEEP", name="Prunable^Pat"))])
    _finish(messages)
    two_runs(messages, receipts[0].id)  # its reprocess is pruned with it
    [queued] = messages.receive([incoming(hl7("QUEUED", name="Prunable^Pat"))])
    cutoff = messages.clock() + 1
    with messages.write() as conn:
        conn.execute(sa.text("UPDATE eng_message SET received_at = received_at + 3600000 WHERE id = :id"),
                     {"id": young.id})
    assert messages.prune("adt", cutoff, batch=3) == 7
    left = {r["id"] for r in messages.search(SearchQuery(text="prunable"))}
    assert left == {young.id, queued.id}
    assert messages.get(receipts[0].id) is None
    with messages.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM eng_reprocess")).scalar() == 0
    assert messages.prune(None, cutoff) == 0


def test_channel_state_is_shared(messages: MessageStore) -> None:
    assert messages.channel_states() == {}
    # A channel without a row runs as generation 0: a pause keeps it (no restart), a deploy bumps it.
    assert messages.set_channel_state("adt", paused=True)["generation"] == 0
    state = messages.set_channel_state("adt", deployed=True, bump=True)
    assert state["paused"] is True and state["generation"] == 1
    assert messages.channel_states()["adt"] == {"deployed": True, "paused": True, "generation": 1}


def test_group_commit_waits_briefly_for_the_senders_of_the_last_round(messages: MessageStore) -> None:
    """Senders that wait for their ACK come back together: when nothing is being committed, the
    committer lingers (up to ``linger``) for as many messages as the last round brought, instead of
    committing the first one alone; a lone sender's messages go at once."""
    import asyncio
    import time

    from ehrgate.engine.ingest import GroupCommitter

    from .conftest import run

    async def body() -> tuple[list[int], float]:
        gc = GroupCommitter(messages)
        gc.linger, gc.linger_below = 0.3, 60.0  # generous: the test must not depend on the disk
        sizes: list[int] = []
        gc.on_commit = lambda items, receipts: sizes.append(len(items))
        # 4 at once: the first is committed alone (nothing expected yet), the other 3 wait for it;
        # then 4 are expected (1 + 3 that arrived meanwhile), so the 3 linger and go at the deadline
        await asyncio.gather(*(gc.submit(incoming(hl7(f"G{i}"))) for i in range(4)))

        async def late(i: int) -> None:
            await asyncio.sleep(0.01 * i)  # one after the other, well within the linger
            await gc.submit(incoming(hl7(f"H{i}")))

        await asyncio.gather(*(late(i) for i in range(3)))  # 3 expected: one commit as soon as all are in
        await gc.submit(incoming(hl7("L1")))  # alone: waits for the 3 expected, then 1 is expected
        started = time.monotonic()
        await gc.submit(incoming(hl7("L2")))
        took = time.monotonic() - started
        await gc.close()
        return sizes, took

    sizes, took = run(body())
    assert sizes == [1, 3, 3, 1, 1]
    assert took < 0.25  # no linger


def test_postgresql_starts_another_transaction_only_for_as_many_as_are_being_committed(messages: MessageStore) -> None:
    """Up to 4 receipt transactions run at once on PostgreSQL, but another one starts only once as
    many messages wait as the running ones hold. Started for every message that found a writer
    free, they held ~1.5 messages each from 8 senders - and each costs about a millisecond of CPU
    whatever its size, which on a small machine was the headroom the ACK latency's tail needed."""
    import asyncio

    from ehrgate.engine.ingest import GroupCommitter

    from .conftest import run

    if not messages.pg:
        pytest.skip("SQLite has one writer")

    async def body() -> tuple[list[tuple[int, int]], list[int]]:
        gc = GroupCommitter(messages, writers=4)
        sizes: list[int] = []
        gc.on_commit = lambda items, receipts: sizes.append(len(items))
        running: list[tuple[int, int]] = []
        tasks = []
        with messages.engine.connect() as lock:  # receipts block at their queue rows until it ends
            lock.exec_driver_sql("LOCK TABLE eng_queue IN SHARE MODE")
            try:
                for i in range(9):
                    tasks.append(asyncio.ensure_future(gc.submit(incoming(hl7(f"C{i}")))))
                    await asyncio.sleep(0)  # submit dispatches before it waits
                    running.append((gc._running, len(gc._pending)))
            finally:
                lock.rollback()
        await asyncio.gather(*tasks)
        await gc.close()
        return running, sizes

    running, sizes = run(body())
    # 1 alone; 1 more (as many as run); 2 (once 2 wait); 4 (once 4 wait); the 9th waits for a writer
    assert running == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (3, 3), (4, 0), (4, 1)]
    assert sorted(sizes) == [1, 1, 1, 2, 4]


def test_a_nul_in_the_header_facts_does_not_fail_the_messages_stored_with_it(messages: MessageStore) -> None:
    """PostgreSQL refuses NUL in text columns. A message with one in MSH-3, MSH-10 or PID-3 (as a byte,
    or as the escape \\X00\\) failed the whole group commit: every message committed with it - other
    senders' too - was answered "could not be stored", and its own resends failed forever."""
    nul = (b"MSH|^~\\&|LA\x00B|FAC|EHRGATE|HUB|20240401120000||ADT^A01|N\\X00\\1|P|2.5.1\r"
           b"PID|1||P\x001^^^FAC^MR||Doe^Jane\r")
    receipts = messages.receive([incoming(hl7("G1")), incoming(nul), incoming(hl7("G2"))], duplicate_window_ms=60_000)
    assert [r.status for r in receipts] == ["RECEIVED"] * 3
    got = messages.get(receipts[1].id)
    assert got is not None and bytes(got["raw"]) == nul  # the message itself is kept as received
    # PostgreSQL keeps the facts with a space for the NUL; SQLite (no such limit, and no work added
    # to its receipt path) as they are
    assert got["control_id"] in ("N 1", "N\x001") and got["sender"] in ("LA B^FAC", "LA\x00B^FAC")
    [again] = messages.receive([incoming(nul)], duplicate_window_ms=60_000)  # a resend is still recognised
    assert again.duplicate_of == receipts[1].id
    [patient] = got["patient_ids"]
    assert [r["id"] for r in messages.search(SearchQuery(patient=patient))] == [again.id, receipts[1].id]
    # searching by the value as sent finds it too (a NUL in a criterion was a 500 on PostgreSQL)
    assert receipts[1].id in [r["id"] for r in messages.search(SearchQuery(control_id="N\x001"))]
    assert messages.search(SearchQuery(channel="adt\x00", patient="P\x001")) == []

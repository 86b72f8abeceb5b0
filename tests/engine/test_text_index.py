"""SQLite's text index follows receipt: the receipt transaction does not write FTS5; the ingest thread
indexes in batches between commits, a text search first indexes what is pending, and retention
deletes from the index only what was indexed (a contentless FTS5 table must never be told to delete
text it does not hold). PostgreSQL's is written at receipt, and the ingest side moves its GIN pending
list into the index between receipts, so that no receipt does it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ehrgate.engine import MessageStore, SearchQuery

from .conftest import hl7, run
from .helpers import port_of, running, send, until
from .test_store import incoming

ONLY_SQLITE = pytest.mark.parametrize("engine_name", ["sqlite"])
ONLY_POSTGRESQL = pytest.mark.parametrize("engine_name", [pytest.param("postgresql", marks=pytest.mark.postgres)])


def mark(messages: MessageStore) -> int:
    with messages.read() as conn:
        return int(conn.exec_driver_sql("SELECT last_id FROM eng_text_index WHERE id = 1").scalar() or 0)


def fts_ok(messages: MessageStore) -> None:
    with messages.write() as conn:  # raises on a corrupt index
        conn.exec_driver_sql("INSERT INTO eng_message_fts(eng_message_fts, rank) VALUES ('integrity-check', 1)")


@ONLY_SQLITE
def test_receipt_leaves_indexing_to_later_and_search_catches_up(messages: MessageStore) -> None:
    receipts = messages.receive([incoming(hl7(f"X{i}", name="Quill^Ada")) for i in range(5)])
    assert mark(messages) < receipts[0].id  # nothing indexed in the receipt's transaction
    assert {r["id"] for r in messages.search(SearchQuery(text="quill"))} == {r.id for r in receipts}
    assert mark(messages) == receipts[-1].id
    assert messages.index_pending() == 0
    fts_ok(messages)


def _synchronous_of_kept_connections(messages: MessageStore) -> list[int]:
    held = [messages.fast._take() for _ in range(messages.fast.keep)]
    try:
        return [int(c.driver_connection.execute("PRAGMA synchronous").fetchone()[0]) for c in held]
    finally:
        for c in held:
            messages.fast._give(c)


@ONLY_SQLITE
def test_an_index_step_commits_without_fsync_and_receipts_keep_it(messages: MessageStore) -> None:
    """The index step runs at synchronous=NORMAL (it writes only rebuildable rows); every kept
    connection is back to FULL afterwards, also after a step that failed."""
    seen: list[int] = []
    messages.receive([incoming(hl7(f"S{i}")) for i in range(3)])
    with messages.fast.write(derived=True) as cur:
        seen.append(int(cur.execute("PRAGMA synchronous").fetchone()[0]))
    assert seen == [1]  # NORMAL inside the step
    assert messages.index_pending() == 3
    with pytest.raises(RuntimeError, match="step failed"), messages.fast.write(derived=True):
        raise RuntimeError("step failed")
    assert set(_synchronous_of_kept_connections(messages)) == {2}  # FULL for the next receipt
    receipts = messages.receive([incoming(hl7("S9"))])
    with messages.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM eng_message WHERE id = ?", (receipts[0].id,)).scalar() == 1


@ONLY_SQLITE
def test_index_steps_do_the_merging_instead_of_fts5_automerge(messages: MessageStore) -> None:
    """Migration e0005 turns FTS5's automerge off; each index step merges a bounded amount, so after
    many small steps (a segment each) the index is still whole and finds every message."""
    with messages.read() as conn:
        assert conn.exec_driver_sql("SELECT v FROM eng_message_fts_config WHERE k = 'automerge'").scalar() == 0
    ids = []
    for step in range(40):
        ids += [r.id for r in messages.receive([incoming(hl7(f"M{step}-{i}", name=f"Merge^Step{step}"))
                                                 for i in range(3)])]
        assert messages.index_pending() == 3
    fts_ok(messages)
    assert {r["id"] for r in messages.search(SearchQuery(text="merge", limit=1000))} == set(ids)
    assert [r["id"] for r in messages.search(SearchQuery(text="step17"))] == ids[51:54][::-1]
    with messages.read() as conn:  # a segment per step; unmerged, 10 remain here (FTS5's crisis merge at 16)
        segments = conn.exec_driver_sql("SELECT count(DISTINCT segid) FROM eng_message_fts_idx").scalar()
    assert segments <= 6


@ONLY_SQLITE
def test_the_ingest_thread_indexes_in_the_background(messages: MessageStore) -> None:
    async def body() -> None:
        async with running(messages, {"adt": {"source": {"type": "mllp", "port": 0}, "destinations": {
                "out": {"type": "file", "directory": "/dev/null/never"}}}}) as eng:
            eng.ingest.index_every = 0.2
            assert await send(port_of(eng, "adt"), [hl7(f"B{i}") for i in range(20)], connections=4) == ["AA"] * 20
            top = max(r["id"] for r in messages.search(SearchQuery(channel="adt")))
            await until(lambda: mark(messages) == top, what="the text index to catch up")
    run(body())
    fts_ok(messages)


@ONLY_SQLITE
def test_retention_deletes_from_the_index_only_what_it_holds(messages: MessageStore) -> None:
    old = messages.receive([incoming(hl7(f"O{i}", name="Gone^Soon")) for i in range(4)])
    messages.index_all()
    fresh = messages.receive([incoming(hl7(f"N{i}", name="Gone^Soon")) for i in range(3)])  # not indexed yet
    with messages.write() as conn:
        conn.execute(sa.text("UPDATE eng_message SET status = 'SENT'"))
        conn.execute(sa.text("DELETE FROM eng_queue"))
    assert messages.prune("adt", messages.clock() + 1) == 7
    fts_ok(messages)
    assert messages.search(SearchQuery(text="gone")) == []
    assert mark(messages) >= old[-1].id and all(messages.get(r.id) is None for r in fresh)
    fts_ok(messages)


def patient_rows(messages: MessageStore) -> list[tuple[int, str]]:
    with messages.read() as conn:
        return [(int(r[0]), r[1]) for r in conn.exec_driver_sql(
            "SELECT message_id, identifier FROM eng_message_patient ORDER BY message_id, identifier")]


@ONLY_SQLITE
def test_patient_rows_follow_receipt_with_the_text_index(messages: MessageStore) -> None:
    """Migration e0003: the receipt keeps the identifiers on the message row; the index rows come with
    the text index, and a patient search first catches up."""
    raw = hl7("PT1", patient="MRN-1~SSN-9")
    [a] = messages.receive([incoming(raw)])
    assert patient_rows(messages) == []  # not in the receipt's transaction
    got = messages.get(a.id)
    assert got is not None and got["patient_ids"] == ["MRN-1", "SSN-9"]
    assert [r["id"] for r in messages.search(SearchQuery(patient="SSN-9"))] == [a.id]
    assert patient_rows(messages) == [(a.id, "MRN-1"), (a.id, "SSN-9")]
    assert mark(messages) == a.id
    [b] = messages.receive([incoming(hl7("PT2", patient="MRN-1"))])
    assert messages.index_pending() == 1 and messages.index_pending() == 0
    assert [r["id"] for r in messages.search(SearchQuery(patient="MRN-1"))] == [b.id, a.id]
    assert patient_rows(messages).count((b.id, "MRN-1")) == 1


def _recording_steps(messages: MessageStore) -> list[tuple[int, int]]:
    """(limit, messages indexed) of every index step the ingest thread runs on ``messages`` (the real
    step, only recorded)."""
    steps: list[tuple[int, int]] = []
    real = messages.index_pending

    def index_pending(limit: int = 256) -> int:
        n = real(limit)
        steps.append((limit, n))
        return n

    messages.index_pending = index_pending  # type: ignore[method-assign]
    return steps


@ONLY_SQLITE
def test_under_load_index_steps_grow_and_a_full_step_is_not_followed_by_a_tiny_one(messages: MessageStore) -> None:
    """Steps start once ``index_step`` wait and ``index_gap`` has passed since the last one, or once
    ``index_step_max`` wait; a step that took every message counted is not taken for a backlog. (It
    was: after each full step of 64, the next one indexed just the batch committed meanwhile and paid
    a whole merge for it - half the steps under load.)"""
    import asyncio

    from ehrgate.engine.ingest import GroupCommitter

    async def body() -> list[tuple[int, int]]:
        steps = _recording_steps(messages)
        gc = GroupCommitter(messages)
        gc.index_step, gc.index_step_max, gc.index_gap, gc.index_every = 20, 50, 60.0, 60.0
        gc.start()  # nothing left by a previous run: one empty step
        await until(lambda: steps == [(20, 0)], what="the start-up step")
        await asyncio.gather(*(gc.submit(incoming(hl7(f"A{i}", name="Load^Ada"))) for i in range(40)))
        await asyncio.sleep(0.05)
        assert steps == [(20, 0)]  # 40 wait: more than index_step, but the gap has not passed
        await asyncio.gather(*(gc.submit(incoming(hl7(f"B{i}"))) for i in range(15)))
        await until(lambda: len(steps) == 2, what="a step once index_step_max wait")
        gc.index_gap = 0.2
        await asyncio.gather(*(gc.submit(incoming(hl7(f"C{i}"))) for i in range(20)))
        await until(lambda: len(steps) == 3, what="a step once the gap has passed, with no receipt to prompt it")
        await asyncio.sleep(0.3)
        await gc.close()
        return steps

    steps = run(body())
    assert steps == [(20, 0), (50, 50), (50, 25)]  # 55 waited: 50 taken, 5 left with the next 20
    assert len(messages.search(SearchQuery(text="load"))) == 40
    fts_ok(messages)


@ONLY_SQLITE
def test_indexing_resumes_after_a_restart_without_waiting_for_a_search(messages: MessageStore) -> None:
    """Messages committed by a run that stopped (or was killed) before indexing them are indexed by the
    next run's ingest thread in the background, a step after another until the mark reaches the top."""
    from ehrgate.engine.ingest import GroupCommitter

    receipts = messages.receive([incoming(hl7(f"R{i}", name="Left^Behind")) for i in range(150)])
    assert mark(messages) < receipts[0].id  # the "crash": committed and acknowledged, not indexed

    async def body() -> list[tuple[int, int]]:
        steps = _recording_steps(messages)
        gc = GroupCommitter(messages)
        gc.start()
        await until(lambda: mark(messages) == receipts[-1].id, what="the backlog to be indexed")
        await until(lambda: gc._running == 0, what="the last step to report")
        await gc.close()
        return steps

    steps = run(body())
    assert steps == [(64, 64), (64, 64), (64, 22)]
    with messages.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM eng_message_fts WHERE eng_message_fts MATCH "
                                    "'\"behind\"*'").scalar() == 150
    assert len(patient_rows(messages)) == 150
    fts_ok(messages)


@ONLY_SQLITE
def test_messages_a_search_indexed_first_do_not_keep_the_ingest_thread_stepping(messages: MessageStore) -> None:
    """A text search indexes what is pending itself; the ingest thread's next step then finds nothing,
    and it must count that as caught up, not run empty steps between every receipt."""
    import asyncio

    from ehrgate.engine.ingest import GroupCommitter

    async def body() -> list[tuple[int, int]]:
        steps = _recording_steps(messages)
        gc = GroupCommitter(messages)
        gc.index_step, gc.index_step_max, gc.index_gap, gc.index_every = 5, 10, 60.0, 60.0
        gc.start()
        await until(lambda: len(steps) == 1 and gc._running == 0, what="the start-up step")
        gc.index_step_max = 1000  # 30 wait, under the gap: no step of the ingest thread's own
        await asyncio.gather(*(gc.submit(incoming(hl7(f"S{i}", name="First^Search"))) for i in range(30)))
        assert len(await asyncio.to_thread(messages.search, SearchQuery(text="first"))) == 30
        gc.index_step_max = 10  # 30 counted: due; the step finds nothing left
        for i in range(5):
            await gc.submit(incoming(hl7(f"T{i}")))
        await asyncio.sleep(0.2)
        await gc.close()
        return steps

    steps = run(body())
    assert steps == [(5, 0), (2000, 30), (10, 1)]  # start-up, the search's own, one step finding T0 only


def _latin1(control_id: str, name: str) -> bytes:
    return (f"MSH|^~\\&|LAB|FAC|EHRGATE|HUB|20240401120000||ADT^A01|{control_id}|P|2.5.1||||||8859/1\r"
            f"PID|1||L{control_id}^^^FAC^MR||{name}||19800101|F\r").encode("latin-1")


def test_e0009_rebuilds_the_index_without_positions_and_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An e0008 store with messages indexed (one of them Latin-1) and some not yet: e0009 makes the
    table again without positions, holding exactly what was indexed (a search finds it, FTS5's own
    integrity check passes, retention's deletes keep it whole); the messages above the mark are still
    indexed later. The downgrade rebuilds it with positions, as complete."""
    from alembic import command

    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.engine import open_messages
    from ehrgate.fhir.store.engine import _alembic_config, create_engine, migrate
    from ehrgate.fhir.store.service import Store

    db = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")

    def to(revision: str, down: bool = False) -> None:
        with db.connect() as conn:
            (command.downgrade if down else command.upgrade)(_alembic_config(conn, MIGRATION_DIRS), revision)
            conn.commit()

    def table_sql() -> str:
        with db.connect() as conn:
            return str(conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'eng_message_fts'").scalar())

    to("e0008")
    assert "detail" not in table_sql()
    ms = open_messages(Store(db))
    try:
        indexed = ms.receive([incoming(hl7(f"I{i}", name=f"Indexed^Ida{i}")) for i in range(30)]
                             + [incoming(_latin1("L1", "Müller^Jürgen"))])
        assert ms.index_pending() == 31
        later = ms.receive([incoming(hl7(f"W{i}", name="Waiting^Wes")) for i in range(5)])
    finally:
        ms.close()
    migrate(db, MIGRATION_DIRS)
    assert "detail=none" in table_sql()
    ms = open_messages(Store(db))
    try:
        assert mark(ms) == indexed[-1].id  # the rebuild did not move the mark: the rest is indexed later
        fts_ok(ms)
        assert [r["id"] for r in ms.search(SearchQuery(text="ida7"))] == [indexed[7].id]
        assert [r["id"] for r in ms.search(SearchQuery(text="müller jürg"))] == [indexed[-1].id]
        assert {r["id"] for r in ms.search(SearchQuery(text="waiting"))} == {r.id for r in later}
        fts_ok(ms)
        with ms.write() as conn:  # retention deletes with the text index_pending gave: the index stays whole
            conn.execute(sa.text("UPDATE eng_message SET status = 'SENT'"))
            conn.execute(sa.text("DELETE FROM eng_queue"))
        assert ms.prune("adt", ms.clock() + 1) == 36
        fts_ok(ms)
        assert ms.search(SearchQuery(text="müller")) == []
        kept = ms.receive([incoming(hl7("K1", name="Kept^Kay"))])
        ms.index_all()
    finally:
        ms.close()
    to("e0008", down=True)
    assert "detail=none" not in table_sql()
    ms = open_messages(Store(db))
    try:
        fts_ok(ms)
        assert [r["id"] for r in ms.search(SearchQuery(text="kept kay"))] == [kept[0].id]
    finally:
        ms.close()
        db.dispose()


def gin_pending_pages(messages: MessageStore) -> int:
    """Pages in the GIN pending list of ix_eng_message_search (moving them is how they are counted)."""
    with messages.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT gin_clean_pending_list('ix_eng_message_search'::regclass)").scalar())


@ONLY_POSTGRESQL
def test_postgresql_receipts_leave_the_gin_pending_list_to_the_ingest_side(messages: MessageStore) -> None:
    """Every ``clean_every`` messages the committer moves the pending list into the index on another
    connection, between receipts. Left to the inserts, the one that found the list above 4 MB moved
    it all inside its receipt: 46-70 ms every ~2,050 ADT messages, the tail of the ACK latency."""
    import asyncio

    from ehrgate.engine.ingest import GroupCommitter

    async def body() -> list[int]:
        gc = GroupCommitter(messages, writers=4)
        gc.clean_every = 30
        for i in range(30):  # one at a time: the 30th commit is the one that calls for the move
            await gc.submit(incoming(hl7(f"G{i}", name=f"Gin{i}^Pending")))
        await gc.close()  # waits for the move
        left = [gin_pending_pages(messages)]
        await asyncio.gather(*(gc.submit(incoming(hl7(f"H{i}", name="Under^Limit"))) for i in range(10)))
        await gc.close()
        left.append(gin_pending_pages(messages))
        return left

    left = run(body())
    assert left[0] == 0  # all moved by the committer
    assert left[1] > 0  # under clean_every: left in the list (and searchable there)
    assert len(messages.search(SearchQuery(text="pending"))) == 30
    assert len(messages.search(SearchQuery(text="gin7"))) == 1


@ONLY_POSTGRESQL
def test_postgresql_pending_list_upkeep_that_cannot_run_turns_itself_off(messages: MessageStore,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """gin_clean_pending_list needs the index's owner (as VACUUM does); a database user that is not
    gets a warning, receipts as before (their inserts move the list themselves), and no retries."""
    import logging

    from ehrgate.engine.ingest import GroupCommitter

    with messages.write() as conn:  # a real failure of the call: the index is not there
        conn.exec_driver_sql("DROP INDEX ix_eng_message_search")

    async def body() -> GroupCommitter:
        gc = GroupCommitter(messages)
        gc.clean_every = 2
        for i in range(6):
            await gc.submit(incoming(hl7(f"K{i}")))
        await gc.close()
        return gc

    with caplog.at_level(logging.WARNING, logger="ehrgate.engine.ingest"):
        gc = run(body())
    assert gc.clean_every is None and gc.messages == 6
    [warning] = [r for r in caplog.records if "text index upkeep off" in r.getMessage()]
    assert "SQLSTATE 42P01" in warning.getMessage()  # no such relation


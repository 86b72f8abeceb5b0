"""The running engine, in process, on SQLite and PostgreSQL: MLLP in, destinations out, ACK modes,
retries, ordering, duplicates, pause/resume, split, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.fhir.store.service import Store
from ehrgate.hl7 import MLLPClient, parse

from .conftest import hl7, run
from .helpers import Receiver, port_of, running, send, until

TO_BUNDLE = "tests.engine.channels.sample:to_bundle"


def mllp_in(**extra: Any) -> dict[str, Any]:
    return {"source": {"type": "mllp", "port": 0}, **extra}


def statuses(messages: MessageStore, channel: str) -> list[str]:
    return [r["status"] for r in messages.search(SearchQuery(channel=channel, limit=1000))]


def test_on_receive_acks_after_store_and_delivers_to_the_fhir_store(messages: MessageStore, store: Store) -> None:
    async def body() -> None:
        chan = mllp_in(transform=[TO_BUNDLE], destinations={"store": {"type": "fhir_store"}})
        async with running(messages, {"adt": chan}, fhir_store=store) as eng:
            raws = [hl7(f"M{i}", patient=f"MRN{i % 5}") for i in range(40)]
            assert await send(port_of(eng, "adt"), raws, connections=4) == ["AA"] * 40
            await until(lambda: statuses(messages, "adt").count("SENT") == 40, what="40 SENT")
            # the delivery counter moves just after the SENT status is committed (in another thread)
            await until(lambda: eng.channel_stats("adt")["destinations"]["store"]["sent"] == 40, what="40 counted")
            stats = eng.channel_stats("adt")
            assert stats["received"] == 40 and stats["destinations"]["store"]["sent"] == 40
            assert stats["ack_latency"]["count"] == 40
        with store.reader() as conn:
            n = conn.exec_driver_sql("SELECT count(*) FROM resource WHERE res_type = 'Patient' AND deleted = false"
                                     if store.dialect == "postgresql" else
                                     "SELECT count(*) FROM resource WHERE res_type = 'Patient' AND deleted = 0").scalar()
        assert n == 5  # conditional create on the identifier: the same patient is written once
        got = messages.get(messages.search(SearchQuery(control_id="M7"))[0]["id"])
        assert got is not None and got["deliveries"][0]["status"] == "SENT"
        assert json.loads(got["deliveries"][0]["response"])[0]["status"] in (200, 201)
        assert json.loads(got["bundle"])["type"] == "transaction"
    run(body())


def test_without_a_bundle_the_store_destination_records_nothing_written(messages: MessageStore, store: Store) -> None:
    async def body() -> None:
        async with running(messages, {"adt": mllp_in(destinations={"store": {"type": "fhir_store"}})},
                           fhir_store=store) as eng:
            assert await send(port_of(eng, "adt"), [hl7("N1")]) == ["AA"]
            await until(lambda: statuses(messages, "adt") == ["SENT"])
        got = messages.get(messages.search(SearchQuery(control_id="N1"))[0]["id"])
        assert got is not None and b"No FHIR resources" in got["deliveries"][0]["response"]
    run(body())


def test_on_processed_acks_with_the_destination_outcome(messages: MessageStore) -> None:
    async def body() -> None:
        receiver = Receiver(lambda raw: "AE" if b"|BAD|" in raw else "AA")
        port = await receiver.start()
        try:
            chan = mllp_in(ack="on_processed", ack_timeout=10, destinations={
                "peer": {"type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 2}})
            async with running(messages, {"adt": chan}) as eng:
                good = hl7("G1")
                bad = hl7("B1", extra="NTE|1||BAD|\r")
                codes = await send(port_of(eng, "adt"), [good, bad])
                assert codes == ["AA", "AE"]
            [row] = messages.search(SearchQuery(control_id="B1"))
            assert row["status"] == "ERROR" and "answered AE: receiver says no" in row["error"]
        finally:
            await receiver.stop()
    run(body())


def test_destination_down_retries_with_backoff_then_delivers(messages: MessageStore) -> None:
    async def body() -> None:
        receiver = Receiver()
        port = await receiver.start()
        await receiver.stop()  # the port is free: connections are refused
        chan = mllp_in(destinations={"peer": {"type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 1,
                                              "retry": {"max_attempts": 1000, "base_delay": 0.05, "max_delay": 0.2}}})
        async with running(messages, {"adt": chan}) as eng:
            assert await send(port_of(eng, "adt"), [hl7("D1"), hl7("D2")]) == ["AA", "AA"]
            await until(lambda: any(a["outcome"] == "RETRY" for r in messages.search(SearchQuery(channel="adt"))
                                    for a in (messages.get(r["id"]) or {}).get("attempts", [])), what="a retry")
            # both wait in the queue while the destination is down (the second may still be in the
            # pipeline when the first one's first retry is recorded)
            await until(lambda: statuses(messages, "adt") == ["QUEUED", "QUEUED"], what="both queued")
            await receiver.start(port)  # the destination comes back
            await until(lambda: statuses(messages, "adt") == ["SENT", "SENT"], what="delivery after recovery")
            assert sorted(receiver.control_ids()) == ["D1", "D2"]
            assert eng.channel_stats("adt")["destinations"]["peer"]["retried"] >= 1
        await receiver.stop()
    run(body())


def test_retries_are_bounded_then_error_with_the_last_error(messages: MessageStore) -> None:
    async def body() -> None:
        chan = mllp_in(destinations={"peer": {"type": "mllp", "host": "127.0.0.1", "port": 9, "timeout": 1,
                                              "retry": {"max_attempts": 3, "base_delay": 0.01}}})
        async with running(messages, {"adt": chan}) as eng:
            assert await send(port_of(eng, "adt"), [hl7("E1")]) == ["AA"]
            await until(lambda: statuses(messages, "adt") == ["ERROR"], what="ERROR after 3 attempts")
        got = messages.get(messages.search(SearchQuery(control_id="E1"))[0]["id"])
        assert got is not None
        assert [a["outcome"] for a in got["attempts"]] == ["RETRY", "RETRY", "ERROR"]
        assert got["deliveries"][0]["attempts"] == 3 and "127.0.0.1:9" in got["error"]
    run(body())


def test_ordered_by_key_a_stuck_patient_holds_back_only_itself(messages: MessageStore) -> None:
    async def body() -> None:
        stuck = {"on": True}
        receiver = Receiver(lambda raw: "slow" if stuck["on"] and b"|A^^^" in raw else "AA")
        port = await receiver.start()
        chan = mllp_in(ordered=True, order_by="PID-3.1", destinations={"peer": {
            "type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 0.3, "workers": 3,
            "retry": {"max_attempts": 100, "base_delay": 0.05, "max_delay": 0.1}}})
        try:
            async with running(messages, {"adt": chan}) as eng:
                raws = [hl7(f"{k}{i}", patient=k) for i in range(4) for k in "AB"]
                assert await send(port_of(eng, "adt"), raws) == ["AA"] * 8
                await until(lambda: [c for c in receiver.control_ids() if c[0] == "B"] == ["B0", "B1", "B2", "B3"],
                            what="key B delivered in order")
                assert not [c for c in receiver.control_ids() if c[0] == "A"]
                stuck["on"] = False
                await until(lambda: [c for c in receiver.control_ids() if c[0] == "A"] == ["A0", "A1", "A2", "A3"],
                            what="key A delivered in order after recovery")
        finally:
            await receiver.stop()
    run(body())


def test_duplicates_are_acked_and_not_delivered_again(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        chan = mllp_in(destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
        async with running(messages, {"adt": chan}) as eng:
            assert await send(port_of(eng, "adt"), [hl7("X1"), hl7("X1"), hl7("X2")]) == ["AA", "AA", "AA"]
            await until(lambda: sorted(statuses(messages, "adt")) == ["FILTERED", "SENT", "SENT"])
        assert len(list((tmp_path / "out").iterdir())) == 2
        assert eng.stats.channel("adt", ["out"])["filtered"] == 1
    run(body())


def test_pause_keeps_receiving_and_resume_delivers(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        out = tmp_path / "out"
        chan = mllp_in(destinations={"out": {"type": "file", "directory": str(out)}})
        async with running(messages, {"adt": chan}) as eng:
            await eng.pause("adt")
            assert await send(port_of(eng, "adt"), [hl7("P1"), hl7("P2")]) == ["AA", "AA"]
            await until(lambda: eng.channel_stats("adt")["pipeline"]["queued"] == 2)
            assert not out.exists() or not list(out.iterdir())
            # another process (here: another connection) resumes through the database
            messages.set_channel_state("adt", paused=False)
            await until(lambda: statuses(messages, "adt") == ["SENT", "SENT"], what="delivery after resume")
            await eng.undeploy("adt")
            assert "adt" not in eng.runtimes
            await eng.deploy("adt")
            assert eng.runtimes["adt"].port
    run(body())


def test_the_first_pause_keeps_the_senders_connection_and_port(messages: MessageStore, tmp_path: Path) -> None:
    """A channel never paused or deployed before has no state row; its first pause inserted one with
    a new generation, which the engine took for a redeploy: the channel restarted, its senders'
    connections were dropped and a port-0 channel moved to another port."""
    async def body() -> None:
        chan = mllp_in(destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
        async with running(messages, {"adt": chan}) as eng:
            port = port_of(eng, "adt")
            async with await MLLPClient.connect("127.0.0.1", port, timeout=10) as client:
                assert parse(await client.send(hl7("C1"))).get("MSA-1") == "AA"
                await eng.pause("adt")
                await eng.reconcile()  # what every process does each second
                assert eng.runtimes["adt"].paused and port_of(eng, "adt") == port
                assert parse(await client.send(hl7("C2"))).get("MSA-1") == "AA"  # same connection
                await eng.resume("adt")
                await eng.reconcile()
                assert parse(await client.send(hl7("C3"))).get("MSA-1") == "AA"
            await until(lambda: statuses(messages, "adt") == ["SENT"] * 3, what="delivery after resume")
    run(body())


def test_split_children_are_delivered_and_the_parent_is_transformed(messages: MessageStore, tmp_path: Path) -> None:
    oru = (b"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401||ORU^R01|L1|P|2.5.1\rPID|1||P9^^^FAC^MR||Doe^Jane\r"
           b"OBR|1||A1|GLU\rOBX|1|NM|GLU||5.1\rOBR|2||A2|K\rOBX|1|NM|K||4.0\r")

    async def body() -> None:
        chan = mllp_in(ack="on_processed", transform=[{"step": "split", "segment": "OBR"}],
                       destinations={"out": {"type": "file", "directory": str(tmp_path / "out"),
                                             "filename": "{control_id}.hl7"}})
        async with running(messages, {"lab": chan}) as eng:
            assert await send(port_of(eng, "lab"), [oru]) == ["AA"]
        rows = messages.search(SearchQuery(channel="lab"))
        assert sorted(r["status"] for r in rows) == ["SENT", "SENT", "TRANSFORMED"]
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["L1-1.hl7", "L1-2.hl7"]
        parent = [r for r in rows if r["status"] == "TRANSFORMED"][0]
        assert len((messages.get(parent["id"]) or {})["children"]) == 2
    run(body())


@pytest.mark.parametrize("charset", ["8859/1", "", "UNICODE UTF-8"])
def test_split_children_keep_the_latin1_bytes_of_the_parent(messages: MessageStore, charset: str) -> None:
    """A Latin-1 batch (MSH-18 8859/1, or bytes that are not valid UTF-8 read by the fallback):
    each child is stored and sent with the parent's bytes, not re-encoded as UTF-8, and its MSH-18
    says 8859/1 (a fallback parent's label named a set its bytes were not in)."""
    oru = (f"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401||ORU^R01|L8|P|2.5.1||||||{charset}\r"
           "PID|1||P9^^^FAC^MR||Müller^Jürgen\rOBR|1||A1|GLU\rOBX|1|ST|GLU||groß\r"
           "OBR|2||A2|K\rOBX|1|ST|K||süß\r").encode("latin-1")

    async def body() -> None:
        receiver = Receiver()
        port = await receiver.start()
        try:
            chan = mllp_in(transform=[{"step": "split", "segment": "OBR"}], destinations={
                "peer": {"type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 2}})
            async with running(messages, {"lab": chan}) as eng:
                assert await send(port_of(eng, "lab"), [oru]) == ["AA"]
                await until(lambda: len(receiver.received) == 2, what="both children delivered")
        finally:
            await receiver.stop()
        [parent] = messages.search(SearchQuery(control_id="L8"))
        children = [messages.get(i) or {} for i in (messages.get(parent["id"]) or {})["children"]]
        for sent, child, value in zip(sorted(receiver.received), children, ["groß", "süß"], strict=True):
            expected = "PID|1||P9^^^FAC^MR||Müller^Jürgen\r".encode("latin-1")
            for raw in (sent, child["raw"]):
                assert expected in raw and value.encode("latin-1") in raw and b"\xc3" not in raw
                assert parse(raw).charset == "8859/1" and parse(raw).get("PID-5") == "Müller"
    run(body())


def test_reprocess_starts_a_new_run_of_attempts(messages: MessageStore) -> None:
    """Attempt numbers restart in each run (every run has the whole retry budget); the history says
    which run each attempt belongs to and who reprocessed when - not two bare "attempt 1" lines."""
    from ehrgate.engine.access import Actor

    async def body() -> None:
        answers = iter(["AE", "AA"])
        receiver = Receiver(lambda raw: next(answers))
        port = await receiver.start()
        try:
            chan = mllp_in(destinations={"peer": {"type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 2}})
            async with running(messages, {"adt": chan}) as eng:
                assert await send(port_of(eng, "adt"), [hl7("RP1")]) == ["AA"]
                await until(lambda: statuses(messages, "adt") == ["ERROR"], what="refused")
                [mid] = [r["id"] for r in messages.search(SearchQuery(control_id="RP1"))]
                assert messages.reprocess([mid], actor=Actor("olga", "operator", "cli"))[0] == [mid]
                await until(lambda: statuses(messages, "adt") == ["SENT"], what="sent after reprocess")
        finally:
            await receiver.stop()
        got = messages.get(mid)
        assert got is not None
        assert [(a["run"], a["number"], a["outcome"]) for a in got["attempts"]] == [(1, 1, "ERROR"), (2, 1, "SENT")]
        assert [(r["run"], r["by"]) for r in got["runs"]] == [(1, None), (2, "olga")]
        assert got["runs"][0]["at"] == got["received_at"] <= got["runs"][1]["at"] <= got["attempts"][1]["at"]
        assert [(d["run"], d["attempts"], d["status"]) for d in got["deliveries"]] == [(2, 1, "SENT")]
    run(body())


def test_mllp_source_frame_timeout_reaches_the_listener(messages: MessageStore) -> None:
    async def body() -> None:
        out = {"out": {"type": "file", "directory": "unused"}}
        chans = {"a": mllp_in(destinations=out),
                 "b": {"source": {"type": "mllp", "port": 0, "frame_timeout": 5}, "destinations": out}}
        async with running(messages, chans) as eng:
            assert [eng.runtimes[n].server.frame_timeout for n in ("a", "b")] == [60, 5]  # type: ignore[union-attr]
    run(body())


def test_a_step_error_is_stored_and_answered_ae(messages: MessageStore) -> None:
    async def body() -> None:
        chan = mllp_in(ack="on_processed", transform=["tests.engine.channels.sample:boom"],
                       destinations={"out": {"type": "file", "directory": "unused"}})
        async with running(messages, {"adt": chan}) as eng:
            assert await send(port_of(eng, "adt"), [hl7("S1")]) == ["AE"]
            # a malformed message is stored as ERROR and answered AR
            assert await send(port_of(eng, "adt"), [b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|Z9|P|2.5\rnot a segment\r"]) == ["AR"]
        [row] = messages.search(SearchQuery(control_id="S1"))
        assert row["status"] == "ERROR" and "RuntimeError: transformer bug" in row["error"]
        assert sorted(statuses(messages, "adt")) == ["ERROR", "ERROR"]
    run(body())


def test_hl7_to_fhir_step_stores_resources_once(messages: MessageStore, store: Store) -> None:
    """The demo channel's shape: MLLP → hl7_to_fhir → FHIR store; a resend (duplicates accepted)
    converges on the same Patient through the conversion's conditional writes."""
    async def body() -> None:
        chan = mllp_in(duplicates="accept", transform=[{"step": "hl7_to_fhir"}],
                       destinations={"store": {"type": "fhir_store"}})
        async with running(messages, {"adt": chan}, fhir_store=store) as eng:
            raw = hl7("F1", patient="MRN-4242", name="Conversion^Carla")
            assert await send(port_of(eng, "adt"), [raw, raw]) == ["AA", "AA"]
            await until(lambda: statuses(messages, "adt") == ["SENT", "SENT"], what="converted and stored")
        with store.reader() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM resource WHERE res_type = 'Patient'").scalar()
        assert rows == 1
        got = messages.get(messages.search(SearchQuery(control_id="F1"))[0]["id"])
        assert got is not None and json.loads(got["bundle"])["resourceType"] == "Bundle"
    run(body())


def test_a_pipeline_batch_holds_a_bounded_size_of_messages(messages: MessageStore, tmp_path: Path) -> None:
    """A pipeline batch took 200 messages whatever their size, and held each one, its parsed form and
    its outputs until the batch was recorded: a backlog of messages with large attachments took
    gigabytes. Now a batch stops at ``batch_bytes`` (one message at least); the rest is given back - and
    so does a destination worker's claim."""
    import asyncio

    from ehrgate.engine.channel import _PAYLOAD_SIZE

    async def body() -> None:
        chan = mllp_in(destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
        async with running(messages, {"adt": chan}) as eng:
            await eng.pause("adt")
            raws = [hl7(f"B{i}", extra="OBX|1|ED|PDF||" + "A" * 1000 + "\r") for i in range(5)]
            assert await send(port_of(eng, "adt"), raws) == ["AA"] * 5
            rt = eng.runtimes["adt"]
            rt.batch_bytes = 2 * len(raws[0]) + 10
            assert await asyncio.to_thread(rt._pipeline_batch) == 2
            given_back = messages.get(messages.search(SearchQuery(control_id="B2"))[0]["id"])
            assert given_back is not None and given_back["queued"][0]["lease_owner"] is None
            rt.batch_bytes = 1
            assert await asyncio.to_thread(rt._pipeline_batch) == 1  # one at least, however large
            rt.batch_bytes = 10**9
            assert await asyncio.to_thread(rt._pipeline_batch) == 2  # the rest
            items = eng.queue.claim("adt", "out", limit=20, lease_ms=60_000)
            assert len(items) == 5
            rt.batch_bytes = 2 * len(raws[0]) + 10
            kept = rt._within_budget(items, _PAYLOAD_SIZE)  # what a destination worker does with its claim
            assert kept == items[:2]
            again = eng.queue.claim("adt", "out", limit=20, lease_ms=60_000)
            assert again == items[2:]  # given back
            rt._release([i.id for i in items])
            await eng.resume("adt")
            await until(lambda: statuses(messages, "adt") == ["SENT"] * 5, what="all delivered in small batches")
    run(body())

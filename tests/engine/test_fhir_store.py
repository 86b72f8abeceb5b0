"""The ``fhir_store`` destination's batches, on SQLite and PostgreSQL: several queued messages in one
store transaction, each message all or nothing on its own (destinations/fhir_store.py)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.engine.config import DestinationConfig
from ehrgate.engine.destinations import Context, Payload
from ehrgate.engine.destinations.fhir_store import FhirStoreDestination
from ehrgate.engine.errors import ChannelConfigError
from ehrgate.engine.queue import Delivered, LeaseLost
from ehrgate.engine.retry import RetryPolicy
from ehrgate.fhir.store.service import Store, WriteSession, now_ms
from ehrgate.hl7 import Message
from tests.convert.conftest import sample

from .conftest import hl7, run
from .helpers import port_of, running, send, until

STEP = "tests.engine.test_fhir_store:patient_and_marker"


def patient_and_marker(message: Message, work: Any) -> None:
    """A conditional create of the PID-3 Patient and one unconditional Basic per message (a second
    delivery would show as a second Basic). PID-5.1 ``BAD`` makes the Patient invalid (400), after
    the Basic was written."""
    mrn = message.get("PID-3.1")
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]}
    if message.get("PID-5.1") == "BAD":
        patient["gender"] = "banana"
    entries = [
        {"fullUrl": "urn:uuid:6d1e3a6e-0000-4000-8000-000000000001", "resource": patient,
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:mrn|{mrn}"}},
        {"resource": {"resourceType": "Basic", "code": {"text": "marker"},
                      "identifier": [{"system": "urn:msh10", "value": message.control_id}],
                      "subject": {"reference": "urn:uuid:6d1e3a6e-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Basic"}},
    ]
    if "gender" in patient:
        entries.reverse()
    work.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def channel(**dest: Any) -> dict[str, Any]:
    return {"source": {"type": "mllp", "port": 0}, "transform": [STEP],
            "destinations": {"store": {"type": "fhir_store", "batch_ms": 10_000, **dest}}}


def by_control_id(messages: MessageStore, channel_name: str) -> dict[str, dict[str, Any]]:
    return {r["control_id"]: r for r in messages.search(SearchQuery(channel=channel_name, limit=1000))}


def count(store: Store, sql: str) -> int:
    with store.reader() as conn:
        return int(conn.exec_driver_sql(sql).scalar_one())


def tick_per_write(store: Store) -> None:
    """Give every write session its own lastUpdated (milliseconds), so that counting distinct
    timestamps counts transactions even when several commit within one millisecond."""
    store.clock = itertools.count(now_ms()).__next__


async def queue_while_paused(eng: Any, raws: list[bytes]) -> None:
    """Store ``raws`` while the channel is paused, then resume: the pipeline converts them in one
    batch and the destination worker claims them together."""
    await eng.pause("adt")
    assert await send(port_of(eng, "adt"), raws) == ["AA"] * len(raws)
    await eng.resume("adt")


def test_a_batch_commits_once_and_a_refused_bundle_rolls_back_only_itself(messages: MessageStore,
                                                                          store: Store) -> None:
    tick_per_write(store)

    async def body() -> None:
        async with running(messages, {"adt": channel()}, fhir_store=store) as eng:
            raws = [hl7("B1", patient="MRN-A"), hl7("B2", patient="MRN-A"), hl7("B3", patient="MRN-C", name="BAD^X"),
                    hl7("B4", patient="MRN-B"), hl7("B5", patient="MRN-A")]
            await queue_while_paused(eng, raws)
            await until(lambda: all(r["status"] in ("SENT", "ERROR") for r in by_control_id(messages, "adt").values())
                        and len(by_control_id(messages, "adt")) == 5, what="5 messages done")
        rows = by_control_id(messages, "adt")
        assert {k: r["status"] for k, r in rows.items()} == {"B1": "SENT", "B2": "SENT", "B3": "ERROR", "B4": "SENT",
                                                             "B5": "SENT"}
        assert "FHIR store refused the Bundle (400)" in rows["B3"]["error"]
        bad = messages.get(rows["B3"]["id"])
        assert bad is not None and [a["outcome"] for a in bad["attempts"]] == ["ERROR"]
        # the same MRN in three messages of one transaction: one Patient; the refused one wrote nothing
        assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Patient'") == 2
        assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Basic'") == 4
        # one transaction: every version carries its session's timestamp
        assert count(store, "SELECT count(DISTINCT last_updated) FROM resource_version") == 1
    run(body())


def test_batch_1_delivers_one_message_per_transaction(messages: MessageStore, store: Store) -> None:
    tick_per_write(store)

    async def body() -> None:
        async with running(messages, {"adt": channel(batch=1)}, fhir_store=store) as eng:
            await queue_while_paused(eng, [hl7(f"S{i}", patient="MRN-S") for i in range(3)])
            await until(lambda: [r["status"] for r in by_control_id(messages, "adt").values()] == ["SENT"] * 3,
                        what="3 SENT")
        assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Patient'") == 1
        assert count(store, "SELECT count(DISTINCT last_updated) FROM resource_version") == 3
    run(body())


class FailingCommit(Store):
    """The store, except that the first ``failures`` write transactions fail at their commit (as a
    crash or a full disk would): everything written in them is rolled back."""

    def __init__(self, store: Store, failures: int) -> None:
        super().__init__(store.engine)
        self.failures = failures

    @contextmanager
    def writer(self, *, bulk: bool = False) -> Iterator[WriteSession]:
        with super().writer(bulk=bulk) as w:
            yield w
            if self.failures:
                self.failures -= 1
                raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error (test)"))


def test_a_transaction_that_does_not_commit_delivers_every_message_again_once(messages: MessageStore,
                                                                              store: Store) -> None:
    flaky = FailingCommit(store, failures=1)

    async def body() -> None:
        chan = channel(retry={"max_attempts": 5, "base_delay": 0.05, "max_delay": 0.1})
        async with running(messages, {"adt": chan}, fhir_store=flaky) as eng:
            await queue_while_paused(eng, [hl7(f"C{i}", patient=f"MRN-C{i % 2}") for i in range(4)])
            await until(lambda: [r["status"] for r in by_control_id(messages, "adt").values()] == ["SENT"] * 4,
                        what="4 SENT after the retry")
        for row in by_control_id(messages, "adt").values():
            got = messages.get(row["id"])
            assert got is not None
            assert [a["outcome"] for a in got["attempts"]] == ["RETRY", "SENT"]
            assert "disk I/O error (test)" in (got["attempts"][0]["error"] or "")
        assert flaky.failures == 0
        assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Patient'") == 2
        assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Basic'") == 4
    run(body())


@pytest.mark.parametrize(("options", "message"), [
    ({"batch": 0}, "option 'batch' has value 0. Expected a whole number of messages per store transaction, 1-1000."),
    ({"batch": "10"}, "option 'batch' has value '10'."),
    ({"batch_ms": -1}, "option 'batch_ms' has value -1. Expected milliseconds, 0-10000."),
    ({"repoint_on_merge": "yes"}, "option 'repoint_on_merge' has value 'yes'. Expected true or false."),
    ({"follow_merges": 1}, "option 'follow_merges' has value 1. Expected true or false."),
    ({"batchsize": 5}, "option 'batchsize' is not known to the fhir_store destination. "
                       "Expected batch, batch_ms, follow_merges or repoint_on_merge."),
])
def test_batch_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ChannelConfigError) as info:
        FhirStoreDestination.check(options)
    assert message in info.value.message


def test_a_message_whose_bookkeeping_fails_rolls_back_alone(store: Store) -> None:
    """``finish`` raising (the queue row was taken over: LeaseLost) inside the batch undoes that
    message's Bundle and nothing else; the destination hands the exception back as its outcome."""
    import orjson

    from ehrgate.fhir.validation import known_resource_types

    # batch_ms: the three messages in one transaction however slow the machine (not the 20 ms default)
    dest = FhirStoreDestination(DestinationConfig("store", "fhir_store", {"batch_ms": 10_000}, RetryPolicy(), 1, 30.0),
                                Context(store, frozenset(known_resource_types())))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Basic", "code": {"text": "marker"}}, "request": {"method": "POST", "url": "Basic"}}]}
    payloads = [Payload(n, "adt", b"", orjson.dumps(bundle), "ADT^A01", f"L{n}") for n in range(3)]
    finished: list[int] = []

    def finish(conn: Any, n: int, result: Delivered) -> str:
        if n == 1:
            raise LeaseLost("Queue row 2 (message 1) is no longer leased by this worker")
        finished.append(n)
        return "SENT"

    outcomes = dest.deliver_many_in(payloads, finish)
    assert isinstance(outcomes[1], LeaseLost)
    assert [o.ok for o in (outcomes[0], outcomes[2]) if isinstance(o, Delivered)] == [True, True]
    assert finished == [0, 2]
    assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Basic'") == 2


def _marker_payloads(count: int) -> list[Payload]:
    import orjson

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Basic", "code": {"text": "marker"}}, "request": {"method": "POST", "url": "Basic"}}]}
    return [Payload(n, "adt", b"", orjson.dumps(bundle), "ADT^A01", f"W{n}") for n in range(count)]


def _marker_destination(store: Store, **options: Any) -> FhirStoreDestination:
    from ehrgate.fhir.validation import known_resource_types

    return FhirStoreDestination(DestinationConfig("store", "fhir_store", options, RetryPolicy(), 1, 30.0),
                                Context(store, frozenset(known_resource_types())))


def test_with_no_writer_waiting_a_sqlite_batch_runs_past_batch_ms(store: Store) -> None:
    """``batch_ms`` ends a batch only while another writer waits for the SQLite write lock: with
    nobody waiting, a shorter batch would only make more commits. PostgreSQL (no one write lock)
    keeps the plain time budget."""
    tick_per_write(store)
    dest = _marker_destination(store, batch_ms=0)
    outcomes = dest.deliver_many_in(_marker_payloads(3), finish)
    if store.dialect == "sqlite":
        assert [o.ok for o in outcomes if isinstance(o, Delivered)] == [True] * 3
        assert count(store, "SELECT count(DISTINCT last_updated) FROM resource_version") == 1  # one transaction
    else:
        assert len(outcomes) == 1 and isinstance(outcomes[0], Delivered) and outcomes[0].ok
    assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Basic'") == len(outcomes)


def test_batches_keep_the_sqlite_statement_journal_in_memory(store: Store) -> None:
    """Each message of a batch is a savepoint, and SQLite copies every page a savepoint first changes
    into the statement journal (~270 pages for a converted ADT or ORU): a ``bulk`` write session
    keeps it in memory rather than in a temporary file written page by page (2026-12-07,
    bench/convert_e2e.py --quick, 3 alternating pairs: 64/57/68 against 51/50/60 msgs per server
    CPU-second). The pooled connection is set back to the default afterwards."""
    seen: list[int | None] = []

    def finish_reading(conn: Any, n: int, result: Delivered) -> str:
        if store.dialect == "sqlite":
            seen.append(conn.exec_driver_sql("PRAGMA temp_store").scalar_one())
        return finish(conn, n, result)

    outcomes = _marker_destination(store).deliver_many_in(_marker_payloads(2), finish_reading)
    assert all(isinstance(o, Delivered) and o.ok for o in outcomes)
    if store.dialect == "sqlite":
        assert seen == [2, 2]  # MEMORY, for the whole batch
        with store.writer() as w:
            assert w.conn.exec_driver_sql("PRAGMA temp_store").scalar_one() == 0


def test_a_writer_waiting_for_the_sqlite_lock_ends_the_batch_at_batch_ms(store: Store) -> None:
    """Another writer of the process (the engine's receipts) waiting in ``begin_immediate``: the
    batch starts no further message once ``batch_ms`` has passed, and the waiter gets the lock."""
    import threading
    import time

    from ehrgate.fhir.store.engine import begin_immediate, writers_waiting

    if store.dialect != "sqlite":
        pytest.skip("SQLite's one write lock")
    waiter = store.engine.raw_connection()
    got_lock = threading.Event()

    def receipt() -> None:
        begin_immediate(waiter.driver_connection)
        got_lock.set()
        waiter.driver_connection.execute("ROLLBACK")

    thread = threading.Thread(target=receipt)

    def finish_waiting(conn: Any, n: int, result: Delivered) -> str:
        if n == 0:  # the batch holds the write lock: the receipt waits for it
            thread.start()
            deadline = time.monotonic() + 10
            while not writers_waiting() and time.monotonic() < deadline:
                time.sleep(0.001)
            assert writers_waiting()
        return finish(conn, n, result)

    try:
        outcomes = _marker_destination(store, batch_ms=0).deliver_many_in(_marker_payloads(3), finish_waiting)
        thread.join(10)
    finally:
        waiter.close()
    assert got_lock.is_set()
    assert len(outcomes) == 1 and isinstance(outcomes[0], Delivered) and outcomes[0].ok
    assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Basic'") == 1


MERGED_A04 = (sample("adt_a01.hl7").replace(b"ADT^A01^", b"ADT^A04^").replace(b"EVN|A01", b"EVN|A04")
              .replace(b"MRN1001", b"MRN2999").replace(b"|2.5.1|||AL|NE", b"|2.5.1"))  # original mode: AA
MERGE_STREAM = [MERGED_A04, sample("oru_r01.hl7").replace(b"MRN1001", b"MRN2999"), sample("adt_a04.hl7"),
                sample("adt_a40.hl7")]  # adt_a40.hl7 merges MRN2999 into MRN2002 (adt_a04.hl7)
CLINICAL_REFERENCES = ("SELECT count(*) FROM idx_reference x JOIN resource r ON r.pk = x.res_pk "
                       "WHERE x.target_type = 'Patient' AND x.target_id = '{}' "
                       "AND r.res_type NOT IN ('Patient', 'Provenance')")


def patient_id(store: Store, mrn: str) -> str:
    with store.writer() as w:
        return w.find("Patient", f"identifier={mrn}")[0][1]


def test_an_a40_in_a_batch_repoints_what_the_batch_wrote_before_it(messages: MessageStore, store: Store) -> None:
    """The A04s, the lab result and the A40 in one store transaction: the re-pointing finds the
    resources written by the earlier messages of the batch (fhir/store/merge.py flushes the index)."""
    async def body() -> None:
        chan = {"source": {"type": "mllp", "port": 0}, "transform": [{"step": "hl7_to_fhir"}],
                "destinations": {"store": {"type": "fhir_store", "batch_ms": 10_000}}}
        async with running(messages, {"adt": chan}, fhir_store=store) as eng:
            await queue_while_paused(eng, MERGE_STREAM)
            await until(lambda: [r["status"] for r in by_control_id(messages, "adt").values()] == ["SENT"] * 4,
                        what="4 SENT")
    run(body())
    assert count(store, "SELECT count(DISTINCT last_updated) FROM resource_version") == 1  # one transaction
    merged, survivor = patient_id(store, "MRN2999"), patient_id(store, "MRN2002")
    assert count(store, CLINICAL_REFERENCES.format(merged)) == 0
    assert count(store, CLINICAL_REFERENCES.format(survivor)) > 20
    a40 = messages.get(by_control_id(messages, "adt")["A40-0001"]["id"])
    assert a40 is not None
    response = json.loads(a40["deliveries"][0]["response"] or b"[]")
    repointed = [r["location"] for r in response if r.get("repointed") == f"Patient/{merged}"]
    assert len(repointed) > 20
    # one Provenance records the re-pointing: the new versions, the two Patients and the A40
    provenance = [p for p in current(store, "Provenance") if any(e["role"] == "removal" for e in p["entity"])]
    assert len(provenance) == 1
    assert sorted(t["reference"] for t in provenance[0]["target"]) == sorted(repointed)
    assert [(e["role"], e["what"].get("reference")) for e in provenance[0]["entity"]] == [
        ("removal", f"Patient/{merged}"), ("revision", f"Patient/{survivor}"), ("source", None)]
    assert provenance[0]["entity"][2]["what"]["identifier"]["value"] == str(a40["id"])
    assert response[-1]["location"].startswith(f"Provenance/{provenance[0]['id']}/_history/1")


def current(store: Store, res_type: str) -> list[dict[str, Any]]:
    with store.reader() as conn:
        rows = conn.exec_driver_sql(
            "SELECT v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
            f"WHERE r.res_type = '{res_type}' AND NOT r.deleted").fetchall()
    return [json.loads(raw) for (raw,) in rows]


class Refusing(Store):
    """The store, refusing any AllergyIntolerance once ``refuse`` is set (a rewrite that fails)."""

    refuse = False

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine, validate=self._validate)

    def _validate(self, resource: dict[str, Any]) -> list[Any]:
        from ehrgate.fhir.errors import Issue
        from ehrgate.fhir.validation import validate

        if self.refuse and resource["resourceType"] == "AllergyIntolerance":
            return [Issue("error", "business-rule", "no allergies today (test)")]
        return validate(resource)


def payloads(raws: list[bytes]) -> list[Payload]:
    """The payloads the engine hands the destination for ``raws`` (converted as the channel step does)."""
    from ehrgate.convert import ConversionOptions, convert
    from ehrgate.hl7 import parse

    out = []
    for n, raw in enumerate(raws):
        result = convert(parse(raw), ConversionOptions(channel="adt"))
        msg_type = "^".join(result.message_type.split("^")[:2])  # as the engine records it: ADT^A40
        out.append(Payload(n, "adt", raw, result.to_json(), msg_type, result.control_id))
    return out


def destination(store: Store, **options: Any) -> FhirStoreDestination:
    from ehrgate.fhir.validation import known_resource_types

    return FhirStoreDestination(DestinationConfig("store", "fhir_store", {"batch_ms": 10_000, **options},
                                                  RetryPolicy(), 1, 30.0), Context(store, frozenset(known_resource_types())))


def finish(conn: Any, n: int, result: Delivered) -> str:
    return "SENT" if result.ok else "ERROR"


def test_a_refused_repointing_rolls_back_its_merge_alone(store: Store) -> None:
    """A re-pointed resource the store refuses fails its A40 whole - the Patients' patches too - as
    ERROR naming the resource, and leaves the next message of the batch alone."""
    refusing = Refusing(store)
    dest = destination(refusing)

    assert [o.ok for o in dest.deliver_many_in(payloads(MERGE_STREAM[:3]), finish) if isinstance(o, Delivered)] \
        == [True] * 3
    merged = patient_id(store, "MRN2999")
    before = count(store, CLINICAL_REFERENCES.format(merged))
    refusing.refuse = True
    outcomes = dest.deliver_many_in(payloads([MERGE_STREAM[3], hl7("after", patient="MRN-X")]), finish)
    failed, other = outcomes
    assert isinstance(failed, Delivered) and not failed.ok and not failed.retry
    assert (failed.error or "").startswith("FHIR store refused the re-pointing after the merge (")
    assert "Re-pointing AllergyIntolerance/" in (failed.error or "") and "no allergies today" in (failed.error or "")
    assert isinstance(other, Delivered) and other.ok
    assert count(store, CLINICAL_REFERENCES.format(merged)) == before > 20  # nothing re-pointed
    assert not [p for p in current(store, "Provenance") if any(e["role"] == "removal" for e in p["entity"])]
    with store.reader() as conn:
        assert b'"active":false' not in store.read("Patient", merged, conn).raw  # and the merge rolled back


LATE_A08 = (sample("adt_a08.hl7").replace(b"MRN2002", b"MRN2999").replace(b"A08-0001", b"A08-LATE")
            .replace(b"Everyman^Adam", b"Staleman^Adam"))
"""An update for the merged MRN from a system that has not caught up with the A40 (another name)."""
LATE_ORU = sample("oru_r01.hl7").replace(b"MRN1001", b"MRN2999").replace(b"ORU-0001", b"ORU-LATE") \
    .replace(b"F-9001", b"F-LATE1").replace(b"F-9002", b"F-LATE2").replace(b"ORD777", b"ORD-L1") \
    .replace(b"ORD778", b"ORD-L2").replace(b"S-5001", b"S-LATE")
"""A lab result for the merged MRN, after the merge (new report and order numbers)."""


def _patient(store: Store, pid: str) -> dict[str, Any]:
    import orjson

    with store.reader() as conn:
        return dict(orjson.loads(store.read("Patient", pid, conn).raw or b"{}"))


def test_a_message_for_a_merged_mrn_after_the_merge_attaches_to_the_survivor(store: Store) -> None:
    """A late A08 and lab result carrying the merged MRN: the merged Patient stays retired (inactive,
    its replaced-by link kept) and the survivor's demographics stay; the result's resources reference
    the survivor; the delivery's response says which merge it followed."""
    dest = destination(store)
    assert all(isinstance(o, Delivered) and o.ok for o in dest.deliver_many_in(payloads(MERGE_STREAM), finish))
    merged, survivor = patient_id(store, "MRN2999"), patient_id(store, "MRN2002")
    on_survivor = count(store, CLINICAL_REFERENCES.format(survivor))
    outcomes = dest.deliver_many_in(payloads([LATE_A08, LATE_ORU]), finish)
    assert all(isinstance(o, Delivered) and o.ok for o in outcomes), outcomes
    retired = _patient(store, merged)
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
    assert "Staleman" not in str(_patient(store, survivor)["name"]) and "Staleman" not in str(retired["name"])
    assert count(store, CLINICAL_REFERENCES.format(merged)) == 0
    assert count(store, CLINICAL_REFERENCES.format(survivor)) > on_survivor + 10  # the late reports and results
    assert count(store, "SELECT count(*) FROM resource WHERE res_type = 'Patient'") == 2
    for outcome in outcomes:
        assert isinstance(outcome, Delivered)
        assert (f'{{"followed_merge": {{"merged": "Patient/{merged}", "survivor": "Patient/{survivor}"}}}}'
                .encode() in (outcome.response or b""))


def test_follow_merges_false_leaves_a_late_message_on_the_merged_patient_still_merged(store: Store) -> None:
    """Not followed, the late A08 updates the merged Patient's demographics, but its full update keeps
    the merge (link and ``active: false``); the late result references the merged Patient."""
    dest = destination(store, follow_merges=False)
    assert all(isinstance(o, Delivered) and o.ok for o in dest.deliver_many_in(payloads(MERGE_STREAM), finish))
    merged, survivor = patient_id(store, "MRN2999"), patient_id(store, "MRN2002")
    outcomes = dest.deliver_many_in(payloads([LATE_A08, LATE_ORU]), finish)
    assert all(isinstance(o, Delivered) and o.ok and b"followed_merge" not in (o.response or b"") for o in outcomes)
    retired = _patient(store, merged)
    assert "Staleman" in str(retired["name"])
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
    assert count(store, CLINICAL_REFERENCES.format(merged)) > 10


def test_an_update_of_the_survivor_keeps_its_replaces_link(store: Store, client: Any) -> None:
    """An A08 for the surviving MRN after the merge (a full update whose PID knows nothing of the
    merge) keeps the survivor's ``replaces`` link: ``Patient?link=`` still finds it."""
    dest = destination(store)
    assert all(isinstance(o, Delivered) and o.ok for o in dest.deliver_many_in(payloads(MERGE_STREAM), finish))
    merged, survivor = patient_id(store, "MRN2999"), patient_id(store, "MRN2002")
    renamed = sample("adt_a08.hl7").replace(b"A08-0001", b"A08-SURV").replace(b"Everyman^Adam", b"Newname^Adam")
    assert all(isinstance(o, Delivered) and o.ok for o in dest.deliver_many_in(payloads([renamed]), finish))
    kept = _patient(store, survivor)
    assert "Newname" in str(kept["name"])  # the update applied
    assert kept["link"] == [{"other": {"reference": f"Patient/{merged}"}, "type": "replaces"}]
    found = client.get(f"/fhir/Patient?link=Patient/{merged}").json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [survivor]


def test_a_chain_of_merges_is_followed_to_its_last_survivor(store: Store) -> None:
    """MRN2999 merged into MRN2002, then MRN2002 into MRN3003: a late result for MRN2999 lands on
    MRN3003's Patient."""
    second = sample("adt_a40.hl7").replace(b"MRN2999", b"MRN2002").replace(b"PID|1||MRN2002", b"PID|1||MRN3003") \
        .replace(b"A40-0001", b"A40-0002")
    dest = destination(store)
    assert all(isinstance(o, Delivered) and o.ok for o in dest.deliver_many_in(payloads(MERGE_STREAM + [second]), finish))
    first, middle, last = (patient_id(store, mrn) for mrn in ("MRN2999", "MRN2002", "MRN3003"))
    assert _patient(store, middle)["link"][-1]["type"] == "replaced-by"
    assert all(isinstance(o, Delivered) and o.ok for o in dest.deliver_many_in(payloads([LATE_ORU]), finish))
    assert count(store, CLINICAL_REFERENCES.format(first)) == count(store, CLINICAL_REFERENCES.format(middle)) == 0
    assert count(store, CLINICAL_REFERENCES.format(last)) > 20


def test_a_late_message_in_flight_during_an_a40_is_repointed_too(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL, two fhir_store workers: a lab result for the merged MRN is being written (its
    transaction has found the Patient, not merged yet) when the A40 arrives on another connection.
    The A40 waits for it (the result's lock on the Patient row), then re-points what it wrote; before
    the lock, the A40 committed first and the result's resources stayed on the merged Patient."""
    import threading

    from ehrgate.engine.destinations import fhir_store as module

    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the two transactions cannot overlap")
    dest = destination(store)
    assert all(isinstance(o, Delivered) and o.ok for o in dest.deliver_many_in(payloads(MERGE_STREAM[:3]), finish))
    merged = patient_id(store, "MRN2999")
    paused, go = threading.Event(), threading.Event()
    original = module.process_transaction

    def pausing(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "late":
            paused.set()  # the late message holds its lock on the merged Patient's row here
            assert go.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "process_transaction", pausing)
    results: dict[str, Any] = {}

    def deliver(name: str, raw: bytes) -> None:
        results[name] = dest.deliver_many_in(payloads([raw]), finish)

    late = threading.Thread(target=deliver, args=("late", LATE_ORU), name="late")
    late.start()
    assert paused.wait(30)
    a40 = threading.Thread(target=deliver, args=("a40", MERGE_STREAM[3]), name="a40")
    a40.start()
    a40.join(1.0)
    waited = a40.is_alive()  # the A40's patch waits for the late message's lock
    go.set()
    late.join(30)
    a40.join(30)
    assert waited
    assert all(isinstance(o, Delivered) and o.ok for name in ("late", "a40") for o in results[name]), results
    assert count(store, CLINICAL_REFERENCES.format(merged)) == 0


def test_two_workers_batches_do_not_deadlock_on_conditional_locks(store: Store) -> None:
    """PostgreSQL, two fhir_store workers: batch A writes MRN X then Y, batch B writes Y then X.
    Message by message, each held its first message's lock while it wanted the other's (here both
    wait at a barrier after their first message), a deadlock PostgreSQL ended by failing one
    message. A batch now takes all its messages' locks first, in one order: B waits for A instead."""
    import threading

    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: two batches never hold locks together")

    def message(n: int, mrn: str) -> Payload:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{n}",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:mrn|{mrn}"}},
            {"resource": {"resourceType": "Basic", "code": {"text": f"message {n}"},
                          "subject": {"reference": f"urn:uuid:00000000-0000-4000-8000-00000000000{n}"}},
             "request": {"method": "POST", "url": "Basic"}}]}
        return Payload(n, "adt", b"", json.dumps(bundle).encode(), "ADT^A04", f"M{n}")

    dest = destination(store)
    both_wrote_one = threading.Barrier(2, timeout=1.5)

    def finish_then_wait(conn: Any, n: int, result: Delivered) -> str:
        if n == 0:
            try:
                both_wrote_one.wait()
            except threading.BrokenBarrierError:
                pass  # the other batch is waiting for this one's locks: go on
        return "SENT" if result.ok else "ERROR"

    results: dict[str, Any] = {}

    def deliver(name: str, batch: list[Payload]) -> None:
        results[name] = dest.deliver_many_in(batch, finish_then_wait)

    threads = [threading.Thread(target=deliver, args=("a", [message(1, "X"), message(3, "Y")])),
               threading.Thread(target=deliver, args=("b", [message(2, "Y"), message(4, "X")]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(o, Delivered) and o.ok for name in "ab" for o in results[name]), results
    assert count(store, "SELECT COUNT(*) FROM resource WHERE res_type = 'Patient'") == 2
    assert count(store, "SELECT COUNT(*) FROM resource WHERE res_type = 'Basic'") == 4


def test_a_message_without_msh7_takes_the_time_it_was_received(messages: MessageStore, store: Store) -> None:
    """MSH-7 is required, but some senders leave it empty: the engine passes the time it stored the
    message to the conversion, which uses it for the Provenance (before: ERROR "MSH-7: missing")."""
    fields = sample("adt_a04.hl7").split(b"\r")[0].split(b"|")
    fields[6] = b""
    raw = b"|".join(fields) + b"\r" + b"\r".join(sample("adt_a04.hl7").split(b"\r")[1:])

    async def body() -> None:
        chan = {"source": {"type": "mllp", "port": 0}, "transform": [{"step": "hl7_to_fhir"}],
                "destinations": {"store": {"type": "fhir_store"}}}
        async with running(messages, {"adt": chan}, fhir_store=store) as eng:
            assert await send(port_of(eng, "adt"), [raw]) == ["AA"]
            await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="adt"))] == ["SENT"],
                        what="the message stored as FHIR")
    run(body())
    (row,) = messages.search(SearchQuery(channel="adt"))
    with store.reader() as conn:
        recorded = [json.loads(bytes(r[0]))["recorded"] for r in conn.exec_driver_sql(
            "SELECT v.raw FROM resource_version v WHERE v.res_type = 'Provenance'")]
    from datetime import UTC, datetime

    assert recorded == [datetime.fromtimestamp(row["received_at"] / 1000, UTC).isoformat(timespec="milliseconds")]

"""Access AuditEvents (fhir/audit.py): the writer skips validation and the generic index walk for the
events it builds, so these tests pin that those events are valid R4 and index exactly as
``extract_index`` would; and that calls are grouped, time-ordered and written through the store."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import orjson
import pytest

from ehrgate.fhir.access import Access
from ehrgate.fhir.audit import AuditSink, Call, access_event, access_index
from ehrgate.fhir.search.extract import extract_index
from ehrgate.fhir.search.types import IndexRows
from ehrgate.fhir.store.service import Store
from ehrgate.fhir.validation import validate

T0 = 1_764_000_000_123

ACCESSES = [
    Access(subject="Practitioner/doc", client_id="chart-app", grant_id="g-1", patient="p9"),
    Access(subject="Patient/p9", client_id="patient-app", grant_id="G_x-Y.z", patient="p9"),
    Access(client_id="backend"),  # system token: the app is the only agent
    Access(subject="https://elsewhere/Practitioner/1", client_id="a"),  # not a relative reference
    Access(subject="Nonsense/x", client_id="Nonsense/x", patient="-"),
    Access(subject="Practitioner/doc", client_id="app", patient="not an id"),
]
CALLS = {
    "read": [("Patient", "p1"), ("Patient", "p2"), ("Patient", "p1")],
    "search-type": [("Observation", None), ("Observation", None)],
    "vread": [("Nonsense", "x"), ("Patient", "bad id"), ("Patient", "x" * 65), ("Observation", "o-1")],
    "operation": [(None, None)],
}


def _events() -> list[tuple[dict[str, Any], int]]:
    out = []
    for access in ACCESSES:
        for interaction, targets in CALLS.items():
            for status in (200, 404, 500):
                calls = [Call(rt, rid, f"req-{i}", "code=1234&_count=5" if i % 2 else "", T0 + 7 * i)
                         for i, (rt, rid) in enumerate(targets)]
                out.append((access_event(access, interaction, status, calls), calls[-1].now))
    return out


def _rows(rows: IndexRows) -> tuple[set[Any], set[str]]:
    # (type, row): a row (a NamedTuple) equals a row of another type holding the same values
    found = {(type(row), row) for f in dataclasses.fields(rows) if f.name != "compartments" for row in getattr(rows, f.name)
             if row.param not in ("_id", "_lastUpdated")}  # the store serves those from the resource table
    return found, rows.compartments


@pytest.mark.parametrize(("event", "recorded_ms"), _events())
def test_events_are_valid_and_index_as_the_generic_extractor(event: dict[str, Any], recorded_ms: int) -> None:
    problems = [i for i in validate(event) if i.severity in ("error", "fatal")]
    assert not problems, problems
    stored = {"resourceType": "AuditEvent", "id": "x", "meta": {"versionId": "1"}, **event}
    assert _rows(access_index(stored, recorded_ms)) == _rows(extract_index(stored))


def test_calls_fold_by_resource() -> None:
    calls = [Call("Patient", "p1", "a", "", T0), Call("Patient", "p2", "b", "", T0 + 1),
             Call("Patient", "p1", "c", "", T0 + 1002)]
    event = access_event(Access(client_id="backend"), "read", 200, calls)
    what = [(e["what"]["reference"], e["detail"]) for e in event["entity"]]
    assert what == [
        ("Patient/p1", [{"type": "calls",
                         "valueString": "2025-11-24T16:00:00.123+00:00 a\n2025-11-24T16:00:01.125+00:00 c"}]),
        ("Patient/p2", [{"type": "calls", "valueString": "2025-11-24T16:00:00.124+00:00 b"}]),
    ]
    assert event["period"] == {"start": "2025-11-24T16:00:00.123+00:00", "end": "2025-11-24T16:00:01.125+00:00"}
    assert event["recorded"] == event["period"]["end"]


def _sink(store: Store, max_calls: int) -> AuditSink:
    sink = AuditSink(store, max_calls=max_calls)
    sink._thread = object()  # type: ignore[assignment]  # no writer thread: the test flushes
    return sink


def test_sink_groups_calls_and_writes_time_ordered_ids(store: Store) -> None:
    sink = _sink(store, max_calls=2)
    doc = Access(subject="Practitioner/doc", client_id="app", grant_id="g-1", patient="p9")
    for i in range(5):
        sink.access(doc, "read", 200, "Observation", f"o{i}", f"r{i}", "", T0 + i)
    sink.access(doc, "read", 404, "Observation", "gone", "r5", "", T0 + 5)
    sink.access(Access(client_id="backend"), "read", 200, "Patient", "p1", "r6", "", T0 + 6)
    assert sink.flush() == 7
    with store.reader() as conn:
        rows = conn.exec_driver_sql(
            "SELECT r.res_id, v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk "
            "WHERE r.res_type = 'AuditEvent'").fetchall()
    events = {rid: orjson.loads(raw) for rid, raw in rows}
    sizes = sorted(sum(len(d["valueString"].splitlines()) for e in ev["entity"] if "what" in e and "role" not in e
                       for d in e["detail"]) for ev in events.values())
    assert sizes == [1, 1, 1, 2, 2]  # 5 reads by max_calls=2 → 2+2+1; the 404 and the backend's own
    for rid, event in events.items():
        assert uuid.UUID(rid).version == 7
        ms = int(uuid.UUID(rid).hex[:12], 16)
        assert ms == T0 + max(int(line.split(" ")[1][1:]) for e in event["entity"] for d in e.get("detail", [])
                              for line in d["valueString"].splitlines())


def test_a_group_larger_than_max_calls_is_split_by_resource(store: Store) -> None:
    """A client reading across patients: split by arrival, every event would name every patient
    (an entity and its index rows each); split by resource, each names few. Each patient's calls
    stay in time order and every call is listed once."""
    sink = _sink(store, max_calls=4)
    backend = Access(client_id="backend")
    for i in range(12):
        sink.access(backend, "read", 200, "Patient", f"p{i % 4}", f"r{i:02d}", "", T0 + i)
    assert sink.flush() == 12
    with store.reader() as conn:
        raws = [raw for (raw,) in conn.exec_driver_sql(
            "SELECT v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk "
            "WHERE r.res_type = 'AuditEvent'").fetchall()]
    events = [orjson.loads(raw) for raw in raws]
    named = [[e["what"]["reference"] for e in ev["entity"] if "what" in e] for ev in events]
    assert sorted(len(n) for n in named) == [2, 2, 2]  # by arrival: 4, 4, 4
    calls = sorted(line.split(" ")[1] for ev in events for e in ev["entity"] if "what" in e
                   for line in e["detail"][0]["valueString"].splitlines())
    assert calls == [f"r{i:02d}" for i in range(12)]
    for ev in events:
        for e in ev["entity"]:
            if "what" in e:
                times = [line.split(" ")[0] for line in e["detail"][0]["valueString"].splitlines()]
                assert times == sorted(times)
                assert ev["period"]["start"] <= times[0] and times[-1] <= ev["period"]["end"] == ev["recorded"]


def test_a_long_list_of_calls_is_cut_into_details_under_fhirs_string_limit() -> None:
    """300 searches with 2,000-character queries share one entity: the lines go into several
    ``calls`` details, each under 1 MB (FHIR's limit for a string), none lost, in order."""
    from ehrgate.fhir.audit import DETAIL_CHARS

    query = "code=" + "x" * 1995
    calls = [Call("Observation", None, f"r{i:03d}", query, T0 + i) for i in range(300)]
    event = access_event(Access(client_id="backend"), "search-type", 200, calls)
    [entity] = [e for e in event["entity"] if "detail" in e]
    texts = [d["valueString"] for d in entity["detail"]]
    assert len(texts) == 2 and all(len(t) <= DETAIL_CHARS < 1024 * 1024 for t in texts)
    assert [line.split(" ")[1] for t in texts for line in t.split("\n")] == [f"r{i:03d}" for i in range(300)]
    assert not [i for i in validate(event) if i.severity in ("error", "fatal")]


def test_one_event_per_call_when_max_calls_is_1(store: Store) -> None:
    sink = _sink(store, max_calls=1)
    for i in range(3):
        sink.access(Access(client_id="backend"), "read", 200, "Patient", "p1", f"r{i}", "", T0 + i)
    assert sink.flush() == 3
    with store.reader() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM resource WHERE res_type = 'AuditEvent'").scalar() == 3


def test_a_failed_write_keeps_the_calls_queued(store: Store) -> None:
    sink = _sink(store, max_calls=10)
    sink.access(Access(client_id="backend"), "read", 200, "Patient", "p1", "r1", "", T0)
    original = sink._writer.writer

    def broken() -> Any:
        raise RuntimeError("database gone")

    sink._writer.writer = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        sink.flush()
    sink._writer.writer = original  # type: ignore[method-assign]
    assert sink.flush() == 1


def test_a_flush_writes_what_was_queued_when_it_began_in_one_transaction(store: Store) -> None:
    """Under load calls keep arriving while a flush writes. Chasing them wrote a transaction (a
    commit, an fsync) for every few late calls and never let the writer sleep; they wait for the
    next flush instead, and one flush is one transaction."""
    sink = _sink(store, max_calls=1000)
    backend = Access(client_id="backend")
    for i in range(2500):
        sink.access(backend, "read", 200, "Patient", f"p{i % 7}", f"r{i}", "", T0 + i)
    events = sink._events
    transactions = []
    writer = sink._writer.writer

    def late_arrivals(batch: list[Any], owners: list[Any]) -> Any:
        sink.access(backend, "read", 200, "Patient", "late", "late", "", T0 + 9999)  # a request meanwhile
        return events(batch, owners)

    def counting_writer() -> Any:
        transactions.append(1)
        return writer()

    sink._events = late_arrivals  # type: ignore[method-assign]
    sink._writer.writer = counting_writer  # type: ignore[method-assign]
    assert sink.flush() == 2500
    assert len(transactions) == 1
    assert len(sink._queue) == 1  # the late call: written by the next flush
    sink._events = events  # type: ignore[method-assign]
    assert sink.flush() == 1

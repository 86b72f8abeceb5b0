"""Each pipeline step alone (select → expand → write → manifest), and the pure planning functions."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from ehrgate.bulk import schema as bs
from ehrgate.bulk.jobs import FileRecord, Job, Jobs
from ehrgate.bulk.params import ExportRequest
from ehrgate.bulk.plan import build_manifest, member_ids, plan_units, resolve_types
from ehrgate.bulk.steps import Run, expand, finish, select_patients, write_units
from ehrgate.fhir.store.service import Store, now_ms
from ehrgate.fhir.validation import known_resource_types

from .conftest import seed

KNOWN = known_resource_types()


def claimed_run(store: Store, tmp_path: Path, export: ExportRequest, **info: Any) -> Run:
    jobs = Jobs(store)
    job_id = uuid.uuid4().hex
    jobs.create(Job(id=job_id, level=export.level, export=export,
                    info={"url": "http://x/fhir/$export", "files": f"http://x/bulk/files/{job_id}", **info},
                    client_id="c", subject="c", state="queued", created_at=now_ms(), transaction_time=now_ms()))
    job = jobs.claim("owner:1:x", 60_000)
    assert job is not None and job.id == job_id
    return Run(store, jobs, job, "owner:1:x", tmp_path / "bulk", file_lines=2, batch_size=3)


def patients_of(store: Store, job_id: str) -> set[tuple[str, bool]]:
    with store.reader() as conn:
        return {(r.patient_id, r.added) for r in conn.execute(sa.select(bs.job_patient).where(bs.job_patient.c.job_id == job_id))}


def test_select_group_members(store: Store, tmp_path: Path) -> None:
    seed(store)
    run = claimed_run(store, tmp_path, ExportRequest(level="group", group_id="g1"))
    select_patients(run)
    assert patients_of(store, run.job.id) == {("p1", False), ("p2", False)}
    assert run.job.step == "expand"


def test_select_marks_members_added_after_since(store: Store, tmp_path: Path) -> None:
    seed(store)
    since = now_ms()
    time.sleep(0.005)  # a change in the same millisecond as _since is not "after" it
    with store.writer() as w:
        w.update("Group", "g1", {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                                 "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p3"}}]})
    run = claimed_run(store, tmp_path, ExportRequest(level="group", group_id="g1", since=since))
    select_patients(run)
    assert patients_of(store, run.job.id) == {("p1", False), ("p3", True)}
    assert run.job.cursor["added"] is True


def test_select_patient_level(store: Store, tmp_path: Path) -> None:
    seed(store)
    run = claimed_run(store, tmp_path, ExportRequest(level="patient"))
    select_patients(run)
    assert run.job.cursor == {"all_patients": True} and patients_of(store, run.job.id) == set()
    run = claimed_run(store, tmp_path, ExportRequest(level="patient", patients=("p2", "p3")), patient="p3")
    select_patients(run)
    assert patients_of(store, run.job.id) == {("p3", False)}  # confined to the caller's patient


def test_expand_plans_units(store: Store, tmp_path: Path) -> None:
    export = ExportRequest(level="system", types=("Patient", "Observation"),
                           type_filters={"Observation": ("code=1",)}, since=1, latest_provenance=True)
    run = claimed_run(store, tmp_path, export, filters={"Observation": ["category=laboratory"]})
    select_patients(run)
    expand(run)
    assert run.job.step == "write"
    assert run.job.cursor["units"] == [
        {"kind": "output", "types": ["Patient", "Observation"], "all": False, "filters": {"Observation": ["code=1"]},
         "access": {"Observation": ["category=laboratory"]}},
        {"kind": "provenance", "types": ["Provenance"], "access": {"Provenance": []}},
        {"kind": "deleted", "type": "Bundle", "types": ["Patient"]},
    ]


def test_write_then_manifest(store: Store, tmp_path: Path) -> None:
    seed(store)
    run = claimed_run(store, tmp_path, ExportRequest(level="system", types=("Observation", "Patient")))
    select_patients(run)
    expand(run)
    write_units(run)
    assert run.job.step == "manifest"
    files = run.jobs.files(run.job.id)
    assert sorted((f.res_type, f.seq, f.count) for f in files) == [
        ("Observation", 1, 2), ("Observation", 2, 2), ("Observation", 3, 2), ("Patient", 1, 2), ("Patient", 2, 1)]
    for f in files:
        data = (run.directory / f.path).read_bytes()
        assert len(data) == f.size and data.count(b"\n") == f.count
    finish(run)
    job = run.jobs.get(run.job.id)
    assert job is not None and job.state == "completed" and job.manifest is not None
    manifest = orjson.loads(job.manifest)
    assert [e["type"] for e in manifest["output"]] == ["Observation"] * 3 + ["Patient"] * 2
    assert manifest["output"][0]["url"] == f"http://x/bulk/files/{job.id}/Observation-1.ndjson"


def test_member_ids() -> None:
    group = {"member": [
        {"entity": {"reference": "Patient/a"}}, {"entity": {"reference": "http://h/fhir/Patient/b"}},
        {"entity": {"reference": "Patient/a"}}, {"entity": {"reference": "Practitioner/x"}},
        {"entity": {"reference": "Patient/c"}, "inactive": True}, {"entity": {"display": "no ref"}}, "junk",
    ]}
    assert member_ids(group) == ["a", "b"]
    assert member_ids({}) == []


def test_resolve_types() -> None:
    types, warnings = resolve_types(ExportRequest(level="system"), KNOWN)
    assert types[0] == "Patient" and set(types) == set(KNOWN)
    types, warnings = resolve_types(ExportRequest(level="patient", types=("Observation", "Medication")), KNOWN)
    assert types == ["Observation"] and "Medication" in warnings[0]
    types, _ = resolve_types(ExportRequest(level="group"), KNOWN)
    assert "Observation" in types and "Practitioner" not in types and types[0] == "Patient"


def test_plan_skips_provenance_unit_when_provenance_is_exported_anyway() -> None:
    units = plan_units(ExportRequest(level="system", latest_provenance=True), ["Patient", "Provenance"], {})
    assert [u["kind"] for u in units] == ["output"]


def test_build_manifest() -> None:
    files = [FileRecord("Patient-1.ndjson", "a1/Patient-1.ndjson", "output", "Patient", 1, 3, 10),
             FileRecord("error-1.ndjson", "a1/error-1.ndjson", "error", "OperationOutcome", 1, 1, 10)]
    m = orjson.loads(build_manifest(0, "http://x/fhir/$export", "http://x/bulk/files/j", files, since=True))
    assert m == {
        "transactionTime": "1970-01-01T00:00:00.000+00:00", "request": "http://x/fhir/$export",
        "requiresAccessToken": True,
        "output": [{"type": "Patient", "url": "http://x/bulk/files/j/Patient-1.ndjson", "count": 3}],
        "error": [{"type": "OperationOutcome", "url": "http://x/bulk/files/j/error-1.ndjson", "count": 1}],
        "deleted": [],
    }

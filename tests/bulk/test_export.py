"""What the IG requires beyond the kit's checks (conformance/bulk.md, second half): _type,
_typeFilter, POST with patient, _elements, includeAssociatedData, unsupported parameters, _since
with deletions and new Group members, failures, error files, Retry-After/X-Progress, 429."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import orjson
import pytest

from ehrgate.bulk.steps import JobError
from ehrgate.fhir.store.service import Store

from .conftest import BASE, FJ, Bulk, group, obs, seed

AUTH = {"Authorization": "Bearer system"}


def test_type_exports_only_those_types(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Observation,Practitioner"})
    assert [e["type"] for e in manifest["output"]] == ["Observation", "Practitioner"]
    ids = bulk.ids(manifest, "system")
    assert len(ids["Observation"]) == 6 and ids["Practitioner"] == {"doc"}


def test_type_filter_filters_and_several_for_one_type_are_ored(bulk: Bulk) -> None:
    one = bulk.ids(bulk.export("/fhir/$export", "system", params={
        "_type": "Observation,Patient", "_typeFilter": "Observation?category=laboratory"}), "system")
    assert one["Observation"] == {"o-p1-lab", "o-p2-lab", "o-p3-lab"}
    assert one["Patient"] == {"p1", "p2", "p3"}  # no filter for Patient: all
    two = bulk.ids(bulk.export("/fhir/Group/g1/$export", "system", params=[
        ("_type", "Observation"), ("_typeFilter", "Observation?category=laboratory&subject=Patient/p1"),
        ("_typeFilter", "Observation?code=8867-4")]), "system")
    assert two["Observation"] == {"o-p1-lab", "o-p1-vital", "o-p2-vital"}


def test_type_filter_with_no_match_gives_no_file(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Observation",
                                                               "_typeFilter": "Observation?code=0000-0"})
    assert manifest["output"] == []


def test_post_kickoff_with_patients(bulk: Bulk) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient,Condition"},
        {"name": "patient", "valueReference": {"reference": "Patient/p3"}},
    ]}
    manifest = bulk.export("/fhir/Patient/$export", "system", method="POST", json=body, headers=FJ)
    assert manifest["request"] == f"{BASE}/fhir/Patient/$export"
    assert bulk.ids(manifest, "system") == {"Patient": {"p3"}, "Condition": {"c-p3"}}


def test_post_kickoff_for_a_group_takes_members_only(bulk: Bulk) -> None:
    body: dict[str, Any] = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/p2"}}]}
    ids = bulk.ids(bulk.export("/fhir/Group/g1/$export", "system", method="POST", json=body, headers=FJ), "system")
    assert ids["Patient"] == {"p2"} and ids["Observation"] == {"o-p2-lab", "o-p2-vital"}
    body["parameter"][0]["valueReference"]["reference"] = "Patient/p3"
    r = bulk.kickoff("/fhir/Group/g1/$export", "system", method="POST", json=body, headers=FJ)
    assert r.status_code == 400 and "not a member" in r.text
    body["parameter"][0]["valueReference"]["reference"] = "Patient/nobody"
    r = bulk.kickoff("/fhir/Patient/$export", "system", method="POST", json=body, headers=FJ)
    assert r.status_code == 400 and "Patient/nobody is not known" in r.text


def test_post_kickoff_with_more_patients_than_bound_parameters(make_bulk: Any) -> None:
    """260,000 'patient' entries (more than SQLite's 250,000 and PostgreSQL's 65,535 bound
    parameters in one statement) are looked up in chunks: an unknown one is the usual 400, not a 500."""
    b = make_bulk(max_body_bytes=64 * 1024 * 1024)
    seed(b.store)
    ids = ["p1", "p2", *(f"n{i}" for i in range(260_000))]
    body = orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{i}"}} for i in ids]})
    r = b.kickoff("/fhir/Patient/$export", method="POST", content=body, headers=FJ)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["diagnostics"] == "Patient/n0 is not known."


def test_post_kickoff_with_a_malformed_parameters_body_is_400(bulk: Bulk) -> None:
    for body in ({"resourceType": "Parameters", "parameter": 5}, {"resourceType": "Parameters", "parameter": "_type"}):
        r = bulk.kickoff("/fhir/Patient/$export", "system", method="POST", json=body, headers=FJ)
        assert r.status_code == 400, r.text
        assert "Parameters.parameter" in r.json()["issue"][0]["diagnostics"]


def test_post_with_parameters_in_the_url_is_400(bulk: Bulk) -> None:
    r = bulk.kickoff("/fhir/$export?_type=Patient", "system", method="POST",
                     json={"resourceType": "Parameters"}, headers=FJ)
    assert r.status_code == 400


def test_elements_subset_and_tag(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Patient,Observation",
                                                               "_elements": "Patient.gender,subject"})
    res = bulk.resources(manifest, "system")
    patient = res["Patient"][0]
    assert set(patient) == {"resourceType", "id", "meta", "gender"}
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in patient["meta"]["tag"]
    observation = res["Observation"][0]
    # subject was asked for; status and code are mandatory (1..1) and kept
    assert set(observation) == {"resourceType", "id", "meta", "subject", "status", "code"}


def test_latest_provenance(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/Group/g1/$export", "system", params={
        "_type": "Observation", "includeAssociatedData": "LatestProvenanceResources"})
    ids = bulk.ids(manifest, "system")
    assert ids["Provenance"] == {"prov2"}
    # without the parameter, no Provenance
    ids = bulk.ids(bulk.export("/fhir/Group/g1/$export", "system", params={"_type": "Observation"}), "system")
    assert "Provenance" not in ids


def test_unsupported_parameter_is_400_unless_lenient(bulk: Bulk) -> None:
    r = bulk.kickoff("/fhir/$export", "system", params={"_count": "5"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "invalid"
    manifest = bulk.export("/fhir/$export", "system", params={"_count": "5", "_type": "Patient"},
                           headers={"Prefer": "respond-async, handling=lenient"})
    assert [e["type"] for e in manifest["output"]] == ["Patient"]
    (err,) = manifest["error"]
    assert err["type"] == "OperationOutcome"
    (outcome,) = bulk.download(err["url"], "system")
    assert "'_count' is not supported" in outcome["issue"][0]["diagnostics"]


def test_prefer_respond_async_is_required(bulk: Bulk) -> None:
    r = bulk.client.get("/fhir/$export", headers={**AUTH, "Accept": "application/fhir+json"})
    assert r.status_code == 400 and "respond-async" in r.text
    # RFC 7240: the preferences may come on separate Prefer lines, respond-async on the second
    two_lines = bulk.client.get("/fhir/$export?_type=Patient", headers=[
        *AUTH.items(), ("Accept", "application/fhir+json"), ("Prefer", "handling=lenient"), ("Prefer", "respond-async")])
    assert two_lines.status_code == 202, two_lines.text


def test_patient_level_warns_about_types_outside_the_compartment(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/Patient/$export", "system", params={"_type": "Patient,Practitioner"})
    assert [e["type"] for e in manifest["output"]] == ["Patient"]
    (outcome,) = bulk.download(manifest["error"][0]["url"], "system")
    assert "Practitioner is not in the patient compartment" in outcome["issue"][0]["diagnostics"]


def test_a_type_filter_outside_the_compartment_is_reported_not_ignored(bulk: Bulk) -> None:
    """Patient and Group level without _type export the compartment types: a _typeFilter for any
    other type applies to nothing, and the client is told so (a warning in the error file; a 400
    with Prefer: handling=strict)."""
    params = {"_typeFilter": "Practitioner?name=Doc"}
    manifest = bulk.export("/fhir/Group/g1/$export", "system", params=params)
    assert "Practitioner" not in [e["type"] for e in manifest["output"]]
    (outcome,) = bulk.download(manifest["error"][0]["url"], "system")
    assert outcome["issue"][0]["severity"] == "warning"
    assert "_typeFilter 'Practitioner?name=Doc' applies to nothing" in outcome["issue"][0]["diagnostics"]
    r = bulk.kickoff("/fhir/Patient/$export", "system", params=params,
                     headers={"Prefer": "respond-async, handling=strict"})
    assert r.status_code == 400
    assert "_typeFilter 'Practitioner?name=Doc' applies to nothing" in r.json()["issue"][0]["diagnostics"]


def test_group_must_exist_and_be_actual(bulk: Bulk) -> None:
    assert bulk.kickoff("/fhir/Group/nope/$export", "system").status_code == 404
    bulk.store.update("Group", "g2", group("g2", ["p1"], actual=False))
    r = bulk.kickoff("/fhir/Group/g2/$export", "system")
    assert r.status_code == 400 and "actual" in r.text


def test_group_must_be_a_group_of_patients(bulk: Bulk) -> None:
    """Group/[id]/$export exports its members' patient compartments: a Group of Practitioners (or
    devices, medications...) has none, so it is a 400 that says so, not an empty export."""
    bulk.store.update("Group", "staff", {"resourceType": "Group", "id": "staff", "type": "practitioner", "actual": True,
                                         "member": [{"entity": {"reference": "Practitioner/doc"}}]})
    r = bulk.kickoff("/fhir/Group/staff/$export", "system")
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Group.type"]
    assert "practitioner" in r.json()["issue"][0]["diagnostics"]


def test_since_changed_resources_deletions_and_new_group_members(bulk: Bulk) -> None:
    bulk.store.update("Patient", "p4", {"resourceType": "Patient", "id": "p4"})
    bulk.store.update("Observation", "o-p4", obs("o-p4", "p4"))
    time.sleep(0.01)
    first = bulk.export("/fhir/Group/g1/$export", "system")
    since = first["transactionTime"]
    time.sleep(0.01)
    bulk.store.update("Observation", "o-p1-lab", obs("o-p1-lab", "p1", code="1111-1"))
    bulk.store.delete("Observation", "o-p2-vital")
    bulk.store.delete("Observation", "o-p4")  # p4 is not in the group: not reported
    bulk.store.update("Group", "g1", group("g1", ["p1", "p2", "p3"]))  # p3 joins after _since
    manifest = bulk.export("/fhir/Group/g1/$export", "system", params={"_since": since})
    ids = bulk.ids(manifest, "system")
    assert ids["Observation"] == {"o-p1-lab", "o-p3-lab", "o-p3-vital"}  # changed, and all of new member p3's
    assert ids["Patient"] == {"p3"}
    assert ids["Condition"] == {"c-p3"}
    assert ids["Group"] == {"g1"}
    (deleted,) = manifest["deleted"]
    assert deleted["type"] == "Bundle" and deleted["count"] == 1
    (bundle,) = bulk.download(deleted["url"], "system")
    assert bundle["type"] == "transaction"
    assert bundle["entry"] == [{"request": {"method": "DELETE", "url": "Observation/o-p2-vital"}}]
    system = bulk.export("/fhir/$export", "system", params={"_since": since, "_type": "Observation"})
    assert bulk.ids(system, "system") == {"Observation": {"o-p1-lab"}}
    (bundle_file,) = system["deleted"]
    assert bundle_file["count"] == 2  # o-p2-vital and o-p4
    assert "deleted" not in first


def test_export_shows_the_store_at_its_transaction_time(bulk: Bulk) -> None:
    """A resource changed while the export runs is exported as it was at transactionTime."""
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Observation,Patient"}))
    time.sleep(0.005)
    bulk.store.update("Observation", "o-p1-lab", obs("o-p1-lab", "p1", code="9999-9"))
    bulk.store.create("Patient", {"resourceType": "Patient", "id": "late"})
    bulk.run()
    manifest = bulk.client.get(path, headers=AUTH).json()
    res = bulk.resources(manifest, "system")
    lab = next(o for o in res["Observation"] if o["id"] == "o-p1-lab")
    assert lab["code"]["coding"][0]["code"] == "2345-7"
    assert lab["meta"]["versionId"] == "1"
    assert len(res["Patient"]) == 3


@pytest.mark.parametrize("process", ["this", "another"])
def test_a_write_in_progress_at_kickoff_is_in_this_export_or_the_next(bulk: Bulk, process: str) -> None:
    """The store stamps lastUpdated when a write transaction starts its work, before it commits. A
    write stamped before transactionTime that commits after the export read the store must not be
    lost: it is in this export (it committed first) or in the next one with _since=transactionTime.
    ``another``: the write goes through a second Store on the database, as another process's would."""
    stamped, go = threading.Event(), threading.Event()
    store = bulk.store if process == "this" else Store(bulk.store.engine)

    def write() -> None:
        with store.writer() as w:
            w.update("Observation", "late", obs("late", "p1"))
            stamped.set()
            go.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    assert stamped.wait(10)
    try:
        if bulk.store.dialect == "sqlite":  # one writer at a time: the kick-off waits for it to commit
            threading.Timer(0.3, go.set).start()
        first = bulk.export("/fhir/$export", "system", params={"_type": "Observation"})
    finally:
        go.set()
        writer.join(10)
    late = bulk.store.read("Observation", "late")
    second = bulk.export("/fhir/$export", "system", params={"_type": "Observation", "_since": first["transactionTime"]})
    in_first = "late" in bulk.ids(first, "system").get("Observation", set())
    in_second = "late" in bulk.ids(second, "system").get("Observation", set())
    assert in_first or in_second, (first["transactionTime"], late.last_updated)
    if bulk.store.dialect == "postgresql":  # the export did not wait for the write: the next one has it
        assert in_second and not in_first


def test_a_group_stored_while_an_older_write_runs_can_be_exported(bulk: Bulk) -> None:
    """transactionTime is held back to before a write still in progress (PostgreSQL, where writes
    run side by side); a Group stored since then is still the one asked for, not a 404."""
    if bulk.store.dialect == "sqlite":
        pytest.skip("one writer at a time: no write is in progress while the Group is stored")
    stamped, go = threading.Event(), threading.Event()

    def write() -> None:
        with bulk.store.writer() as w:
            w.update("Observation", "slow", obs("slow", "p1"))
            stamped.set()
            go.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert stamped.wait(10)
        time.sleep(0.005)
        bulk.store.update("Group", "g9", group("g9", ["p3"]))
        manifest = bulk.export("/fhir/Group/g9/$export", "system", params={"_type": "Patient"})
    finally:
        go.set()
        writer.join(10)
    assert bulk.ids(manifest, "system") == {"Patient": {"p3"}}


def test_a_failed_job_is_500_with_an_operation_outcome(bulk: Bulk) -> None:
    path = bulk.status_path(bulk.kickoff("/fhir/Group/g1/$export", "system"))
    # The worker reads the Group as of the transaction time; move that time to before the Group
    # existed, so the job cannot run and fails with the reason.
    with bulk.store.writer() as w:
        w.conn.exec_driver_sql("UPDATE bulk_job SET transaction_time = 0")
    bulk.run()
    r = bulk.client.get(path, headers=AUTH)
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Group/g1 no longer exists" in r.json()["issue"][0]["diagnostics"]
    # export.html#response---error-status-1: a transient code (IssueType transient and its children,
    # 'exception' among them) tells the client to poll again; a failed export is final
    assert r.json()["issue"][0]["code"] == "processing"


def test_an_unexpected_error_is_500_without_details(bulk: Bulk, monkeypatch: Any) -> None:
    from ehrgate.bulk import steps

    def boom(run: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(steps, "expand", boom)
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system"))
    bulk.run()
    r = bulk.client.get(path, headers=AUTH)
    assert r.status_code == 500
    text = r.json()["issue"][0]["diagnostics"]
    assert "secret" not in text and "server log" in text
    assert JobError  # the expected-failure type is distinct from crashes


def test_progress_while_running(bulk: Bulk) -> None:
    seen: list[str] = []
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Patient,Observation"}))

    def peek(run: Any) -> None:
        bulk.bulk.jobs.renew(run.job.id, run.owner, 60_000, run.progress)
        r = bulk.client.get(path, headers=AUTH)
        assert r.status_code == 202 and r.headers["retry-after"] == "2"
        seen.append(r.headers["x-progress"])

    bulk.bulk.worker.on_batch = peek
    bulk.run()
    assert any(re.match(r"Exporting \(writing resources\): \d+ resources written", s) for s in seen), seen
    assert bulk.client.get(path, headers=AUTH).status_code == 200


def test_too_many_jobs_is_429_with_retry_after(make_bulk: Any) -> None:
    b = make_bulk(bulk_max_jobs=2)
    from .conftest import SYSTEM, seed

    seed(b.store)
    b.use({"system": SYSTEM})
    for _ in range(2):
        assert b.kickoff("/fhir/$export", "system").status_code == 202
    r = b.kickoff("/fhir/$export", "system")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["issue"][0]["code"] == "throttled"
    b.run()
    assert b.kickoff("/fhir/$export", "system").status_code == 202


def test_files_are_split_at_the_configured_line_count(make_bulk: Any) -> None:
    b = make_bulk(bulk_file_lines=2)
    from .conftest import SYSTEM, seed

    seed(b.store)
    b.use({"system": SYSTEM})
    manifest = b.export("/fhir/$export", "system", params={"_type": "Observation"})
    assert [e["count"] for e in manifest["output"]] == [2, 2, 2]
    assert [e["url"].rsplit("/", 1)[1] for e in manifest["output"]] == [
        "Observation-1.ndjson", "Observation-2.ndjson", "Observation-3.ndjson"]
    ids = [r["id"] for e in manifest["output"] for r in b.download(e["url"], "system")]
    assert len(ids) == len(set(ids)) == 6


def test_manifest_is_stable_json(bulk: Bulk) -> None:
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Patient"}))
    bulk.run()
    a = bulk.client.get(path, headers=AUTH)
    b = bulk.client.get(path, headers=AUTH)
    assert orjson.loads(a.content) == orjson.loads(b.content)
    assert "expires" in a.headers

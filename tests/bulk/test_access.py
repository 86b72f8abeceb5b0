"""Who may export what, and who may fetch the result: the same ``Access`` the FHIR API applies;
files only for the client that started the job; no path outside the export directory; Range;
expiry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ehrgate.bulk.ndjson import safe_path
from ehrgate.fhir.access import Access

from .conftest import BASE, FJ, Bulk, group, types_access


def test_patient_scoped_export_sees_only_its_patient(bulk: Bulk) -> None:
    ids = bulk.ids(bulk.export("/fhir/Patient/$export", "p1"), "p1")
    assert ids["Patient"] == {"p1"}
    assert ids["Observation"] == {"o-p1-lab", "o-p1-vital"}
    assert ids["Condition"] == {"c-p1"}
    everything = {i for s in ids.values() for i in s}
    assert not any("p2" in i or "p3" in i for i in everything)


def test_patient_scoped_group_export_is_confined_too(bulk: Bulk) -> None:
    ids = bulk.ids(bulk.export("/fhir/Group/g1/$export", "p1"), "p1")
    assert ids["Patient"] == {"p1"}
    # p3 is not in g1: for p3's token that group does not exist
    assert bulk.kickoff("/fhir/Group/g1/$export", "p3").status_code == 404


def test_patient_scoped_token_cannot_name_another_patient(bulk: Bulk) -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/p2"}}]}
    r = bulk.kickoff("/fhir/Patient/$export", "p1", method="POST", json=body, headers=FJ)
    assert r.status_code == 400


def test_patient_scoped_token_cannot_export_the_system(bulk: Bulk) -> None:
    r = bulk.kickoff("/fhir/$export", "p1")
    assert r.status_code == 403
    assert "Patient/$export" in r.json()["issue"][0]["diagnostics"]


def test_system_export_of_all_types_needs_read_on_every_type(bulk: Bulk) -> None:
    bulk.use({"narrow": types_access("Patient", "Observation")})
    r = bulk.kickoff("/fhir/$export", "narrow")
    assert r.status_code == 403
    assert "_type" in r.json()["issue"][0]["diagnostics"]
    r = bulk.kickoff("/fhir/$export", "narrow", params={"_type": "Patient,Condition"})
    assert r.status_code == 403
    assert "system/Condition.r" in r.json()["issue"][0]["diagnostics"]
    ids = bulk.ids(bulk.export("/fhir/$export", "narrow", params={"_type": "Patient,Observation"}), "narrow")
    assert set(ids) == {"Patient", "Observation"}


def test_query_constrained_scopes_filter_the_export(bulk: Bulk) -> None:
    bulk.use({"labs": Access(filters={"Observation": ("category=laboratory",)}, client_id="labs", subject="labs")})
    ids = bulk.ids(bulk.export("/fhir/$export", "labs", params={"_type": "Observation"}), "labs")
    assert ids["Observation"] == {"o-p1-lab", "o-p2-lab", "o-p3-lab"}
    ids = bulk.ids(bulk.export("/fhir/$export", "labs", params={
        "_type": "Observation", "_typeFilter": "Observation?subject=Patient/p2"}), "labs")
    assert ids["Observation"] == {"o-p2-lab"}


def test_only_the_client_that_started_a_job_sees_it(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Patient"})
    path = f"/bulk/status/{manifest['output'][0]['url'].split('/')[-2]}"
    for token in ("other-backend", "p1"):
        auth = {"Authorization": f"Bearer {token}"}
        assert bulk.client.get(path, headers=auth).status_code == 404
        assert bulk.client.get(manifest["output"][0]["url"].removeprefix(BASE), headers=auth).status_code == 404
        assert bulk.client.delete(path, headers=auth).status_code == 404
    assert bulk.client.get(path, headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert bulk.client.get(path, headers={"Authorization": "Bearer system"}).status_code == 200


def test_with_auth_off_anyone_may_export_and_download(bulk: Bulk) -> None:
    bulk.use({}, open_access=Access())
    manifest = bulk.export("/fhir/$export", params={"_type": "Patient"})
    assert len(bulk.download(manifest["output"][0]["url"])) == 3


@pytest.mark.parametrize(
    "suffix",
    [
        "../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "Patient-1.ndjson%00", "a1%2FPatient-1.ndjson",
        "Patient-1.ndjson/..", ".", "%2e%2e", "Patient-2.ndjson", "..%5C..%5Cwindows",
    ],
)
def test_file_urls_never_leave_the_export(bulk: Bulk, suffix: str) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Patient"})
    url = manifest["output"][0]["url"].removeprefix(BASE)
    job_path = url.rsplit("/", 1)[0]
    r = bulk.client.get(f"{job_path}/{suffix}", headers={"Authorization": "Bearer system"})
    assert r.status_code == 404, (suffix, r.status_code)
    assert b"root:" not in r.content


@pytest.mark.parametrize("job", ["..", "%2e%2e", "../..", "0" * 31 + "/", "x" * 32])
def test_job_ids_never_leave_the_export(bulk: Bulk, job: str) -> None:
    r = bulk.client.get(f"/bulk/files/{job}/Patient-1.ndjson", headers={"Authorization": "Bearer system"})
    assert r.status_code == 404


def test_safe_path_refuses_symlinks_out(tmp_path: Path) -> None:
    job = "0" * 32
    (tmp_path / job / "a1").mkdir(parents=True)
    outside = tmp_path.parent / "outside.ndjson"
    outside.write_text("secret")
    os.symlink(outside, tmp_path / job / "a1" / "Patient-1.ndjson")
    assert safe_path(tmp_path, job, "a1/Patient-1.ndjson") is None
    (tmp_path / job / "a1" / "Patient-2.ndjson").write_text("{}\n")
    assert safe_path(tmp_path, job, "a1/Patient-2.ndjson") == (tmp_path / job / "a1" / "Patient-2.ndjson").resolve()
    assert safe_path(tmp_path, job, "../a1/Patient-2.ndjson") is None
    assert safe_path(tmp_path, "../" + job[3:], "a1/Patient-2.ndjson") is None


def test_range_requests_resume_a_download(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Observation"})
    url = manifest["output"][0]["url"].removeprefix(BASE)
    auth = {"Authorization": "Bearer system"}
    full = bulk.client.get(url, headers=auth)
    assert full.headers["accept-ranges"] == "bytes"
    size = len(full.content)
    head = bulk.client.get(url, headers={**auth, "Range": "bytes=0-99"})
    assert head.status_code == 206 and head.headers["content-range"] == f"bytes 0-99/{size}"
    rest = bulk.client.get(url, headers={**auth, "Range": "bytes=100-"})
    assert rest.status_code == 206
    assert head.content + rest.content == full.content
    beyond = bulk.client.get(url, headers={**auth, "Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.json()["resourceType"] == "OperationOutcome"
    assert beyond.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("header", ["items=0-5", "bytes=abc", "bytes=5-2", "bytes=-", "bytes=0-1,x"])
def test_an_unusable_range_is_ignored(bulk: Bulk, header: str) -> None:
    """RFC 9110 §14.2: a Range with a unit the server does not know MUST be ignored (and an invalid one
    may be): the whole file, not a text/plain 400 (no error of ours is anything but an OperationOutcome)."""
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Observation"})
    url = manifest["output"][0]["url"].removeprefix(BASE)
    auth = {"Authorization": "Bearer system"}
    full = bulk.client.get(url, headers=auth)
    r = bulk.client.get(url, headers={**auth, "Range": header})
    assert r.status_code == 200, (header, r.status_code, r.text[:80])
    assert r.headers["content-type"].startswith("application/fhir+ndjson") and r.content == full.content


def test_expired_exports_are_removed(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Patient"})
    job_id = manifest["output"][0]["url"].split("/")[-2]
    assert (bulk.bulk.root / job_id).is_dir()
    with bulk.store.writer() as w:
        w.conn.exec_driver_sql("UPDATE bulk_job SET expires_at = 1")
    bulk.bulk.worker.sweep()
    assert not (bulk.bulk.root / job_id).exists()
    auth = {"Authorization": "Bearer system"}
    assert bulk.client.get(f"/bulk/status/{job_id}", headers=auth).status_code == 404
    assert bulk.client.get(manifest["output"][0]["url"].removeprefix(BASE), headers=auth).status_code == 404


def test_an_export_past_its_expiry_is_gone_before_the_sweep(bulk: Bulk) -> None:
    """The status response's ``Expires`` says when the files go; after it the export is 404 at once,
    not until the worker's next sweep (up to 30 s later, or never on a process without workers)."""
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Patient"})
    job_id = manifest["output"][0]["url"].split("/")[-2]
    with bulk.store.writer() as w:
        w.conn.exec_driver_sql("UPDATE bulk_job SET expires_at = 1")
    auth = {"Authorization": "Bearer system"}
    assert bulk.client.get(f"/bulk/status/{job_id}", headers=auth).status_code == 404
    assert bulk.client.get(manifest["output"][0]["url"].removeprefix(BASE), headers=auth).status_code == 404


def test_group_resources_are_managed_through_the_fhir_api(bulk: Bulk) -> None:
    g = group("cohort", ["p2", "p3"])
    assert bulk.client.put("/fhir/Group/cohort", json=g, headers={**FJ, "Authorization": "Bearer system"}).status_code == 201
    found = bulk.client.get("/fhir/Group?member=Patient/p3", headers={"Authorization": "Bearer system"}).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {"cohort"}
    ids = bulk.ids(bulk.export("/fhir/Group/cohort/$export", "system", params={"_type": "Patient"}), "system")
    assert ids == {"Patient": {"p2", "p3"}}
    g["member"].append({"entity": {"reference": "Patient/p1"}, "inactive": True})
    bulk.client.put("/fhir/Group/cohort", json=g, headers={**FJ, "Authorization": "Bearer system"})
    ids = bulk.ids(bulk.export("/fhir/Group/cohort/$export", "system", params={"_type": "Patient"}), "system")
    assert ids == {"Patient": {"p2", "p3"}}  # an inactive member is not exported




def test_query_constraint_on_every_type_filters_the_export(bulk: Bulk) -> None:
    """SMART v2 ``system/*.rs?_tag=...``: the policy's ``*`` criteria apply to every type (as in a
    search); a criterion a type cannot have matches nothing of that type."""
    tagged = {"system": "http://example.org/tags", "code": "export-me"}
    patient = bulk.client.get("/fhir/Patient/p2", headers={"Authorization": "Bearer system"}).json()
    bulk.store.update("Patient", "p2", {**patient, "meta": {"tag": [tagged]}})
    bulk.use({
        "tagged": Access(filters={"*": ("_tag=http://example.org/tags|export-me",)}, client_id="t", subject="t"),
        "labs": Access(filters={"*": ("category=laboratory",)}, client_id="l", subject="l"),
    })
    auth = {"Authorization": "Bearer tagged"}
    searched = bulk.client.get("/fhir/Patient", headers=auth).json()
    assert {e["resource"]["id"] for e in searched.get("entry", [])} == {"p2"}
    ids = bulk.ids(bulk.export("/fhir/$export", "tagged", params={"_type": "Patient,Observation"}), "tagged")
    assert ids == {"Patient": {"p2"}}
    ids = bulk.ids(bulk.export("/fhir/Patient/$export", "labs", params={"_type": "Patient,Observation"}), "labs")
    assert ids == {"Observation": {"o-p1-lab", "o-p2-lab", "o-p3-lab"}}
    manifest = bulk.export("/fhir/$export", "labs", params={"_type": "Observation", "_since": "2000-01-01T00:00:00Z"})
    assert bulk.ids(manifest, "labs") == {"Observation": {"o-p1-lab", "o-p2-lab", "o-p3-lab"}}
    assert manifest["deleted"] == []


def test_patient_scoped_export_includes_only_provenance_the_token_may_read(bulk: Bulk) -> None:
    """includeAssociatedData adds no resource the same token could not read: p1's token cannot read
    prov2 (it targets an Observation, so it is not in p1's compartment), and the export leaves it out."""
    auth = {"Authorization": "Bearer p1"}
    assert bulk.client.get("/fhir/Provenance/prov2", headers=auth).status_code == 404
    manifest = bulk.export("/fhir/Patient/$export", "p1", params={
        "_type": "Observation", "includeAssociatedData": "LatestProvenanceResources"})
    assert "Provenance" not in bulk.ids(manifest, "p1")
    with bulk.store.writer() as w:
        w.update("Provenance", "prov-p1", {
            "resourceType": "Provenance", "id": "prov-p1", "recorded": "2024-01-03T00:00:00Z",
            "target": [{"reference": "Observation/o-p1-vital"}, {"reference": "Patient/p1"}],
            "agent": [{"who": {"reference": "Practitioner/doc"}}],
        })
    assert bulk.client.get("/fhir/Provenance/prov-p1", headers=auth).status_code == 200
    manifest = bulk.export("/fhir/Patient/$export", "p1", params={
        "_type": "Observation", "includeAssociatedData": "LatestProvenanceResources"})
    assert bulk.ids(manifest, "p1")["Provenance"] == {"prov-p1"}


def test_a_token_for_another_patient_of_the_same_user_cannot_fetch_the_export(bulk: Bulk) -> None:
    """One clinician, one app, two EHR launches: a token confined to p2 must not read the export
    made with the token confined to p1 (same client, same user), nor files of types it may not read."""
    def launched(patient: str) -> Access:
        return Access(allowed=lambda kind, res_type: kind in "rs", patient=patient, client_id="chart-app",
                      subject="Practitioner/doc")

    bulk.use({
        "doc-p1": launched("p1"), "doc-p2": launched("p2"),
        "wide": Access(client_id="backend", subject="backend"),
        "narrow": types_access("Patient", client="backend"),
    })
    manifest = bulk.export("/fhir/Patient/$export", "doc-p1", params={"_type": "Patient"})
    url = manifest["output"][0]["url"].removeprefix(BASE)
    status = f"/bulk/status/{url.split('/')[-2]}"
    assert [p["id"] for p in bulk.download(manifest["output"][0]["url"], "doc-p1")] == ["p1"]
    other = {"Authorization": "Bearer doc-p2"}
    assert bulk.client.get(status, headers=other).status_code == 404
    assert bulk.client.get(url, headers=other).status_code == 404
    assert bulk.client.delete(status, headers=other).status_code == 404
    # the same backend client, a later token with fewer scopes: no Observation file for it
    manifest = bulk.export("/fhir/$export", "wide", params={"_type": "Patient,Observation"})
    files = {e["type"]: e["url"].removeprefix(BASE) for e in manifest["output"]}
    assert bulk.client.get(files["Patient"], headers={"Authorization": "Bearer narrow"}).status_code == 200
    r = bulk.client.get(files["Observation"], headers={"Authorization": "Bearer narrow"})
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"

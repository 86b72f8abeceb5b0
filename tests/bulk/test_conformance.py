"""/work/shared/conformance/bulk.md, items 1-11: what Inferno's Bulk Data test kit (v2.0.0) checks,
for Group, Patient and System export, with a ``system/*.read`` token."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.validation import validate

from .conftest import BASE, Bulk

LEVELS = {
    "group": "/fhir/Group/g1/$export",
    "patient": "/fhir/Patient/$export",
    "system": "/fhir/$export",
}
levels = pytest.mark.parametrize("url", list(LEVELS.values()), ids=list(LEVELS))


def test_1_capability_statement_declares_bulk_data(bulk: Bulk) -> None:
    r = bulk.client.get("/fhir/metadata")
    assert r.status_code == 200
    cap = r.json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cap["instantiates"]
    rest = cap["rest"][0]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"} in rest["operation"]
    by_type = {r["type"]: r.get("operation", []) for r in rest["resource"]}
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"} in by_type["Patient"]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"} in by_type["Group"]


@levels
def test_2_kickoff_without_a_token_is_401(bulk: Bulk, url: str) -> None:
    r = bulk.kickoff(url)
    assert r.status_code == 401
    assert r.json()["resourceType"] == "OperationOutcome"


@levels
def test_3_kickoff_answers_202_with_content_location(bulk: Bulk, url: str) -> None:
    r = bulk.kickoff(url, "system")
    assert r.status_code == 202, r.text
    assert r.headers["content-location"].startswith(f"{BASE}/bulk/status/")


@levels
def test_4_polling_ends_in_a_manifest(bulk: Bulk, url: str) -> None:
    path = bulk.status_path(bulk.kickoff(url, "system"))
    waiting = bulk.client.get(path, headers={"Authorization": "Bearer system", "Accept": "application/json"})
    assert waiting.status_code == 202
    assert int(waiting.headers["retry-after"]) >= 1
    assert waiting.headers["x-progress"]
    bulk.run()
    r = bulk.client.get(path, headers={"Authorization": "Bearer system", "Accept": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert {"transactionTime", "request", "requiresAccessToken", "output", "error"} <= set(body)
    assert body["request"] == f"{BASE}{url}"
    assert body["error"] == []


@levels
def test_5_output_entries_have_type_and_absolute_url(bulk: Bulk, url: str) -> None:
    manifest = bulk.export(url, "system")
    assert manifest["output"]
    for entry in manifest["output"]:
        assert entry["type"]
        assert entry["url"].startswith(f"{BASE}/bulk/files/")
        assert entry["count"] >= 1


@levels
def test_6_files_need_the_token(bulk: Bulk, url: str) -> None:
    manifest = bulk.export(url, "system")
    assert manifest["requiresAccessToken"] is True
    r = bulk.client.get(manifest["output"][0]["url"].removeprefix(BASE))
    assert r.status_code == 401
    assert r.json()["resourceType"] == "OperationOutcome"


@levels
def test_7_files_are_valid_ndjson_of_their_type(bulk: Bulk, url: str) -> None:
    manifest = bulk.export(url, "system")
    for entry in manifest["output"]:
        lines = bulk.download(entry["url"], "system")
        assert len(lines) == entry["count"]
        for resource in lines:
            assert resource["resourceType"] == entry["type"]
            errors = [i for i in validate(resource) if i.severity in ("error", "fatal")]
            assert not errors, (resource["id"], errors)


@levels
def test_8_at_least_two_patients_and_group_members(bulk: Bulk, url: str) -> None:
    ids = bulk.ids(bulk.export(url, "system"), "system")
    assert len(ids["Patient"]) >= 2
    if "Group" in url:
        assert ids["Patient"] == {"p1", "p2"}
    else:
        assert ids["Patient"] == {"p1", "p2", "p3"}


@levels
@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
def test_9_output_formats_then_delete(bulk: Bulk, url: str, fmt: str) -> None:
    path = bulk.status_path(bulk.kickoff(url, "system", params={"_outputFormat": fmt}))
    assert bulk.client.delete(path, headers={"Authorization": "Bearer system"}).status_code == 202


def test_9_unsupported_output_format_is_400(bulk: Bulk) -> None:
    r = bulk.kickoff("/fhir/$export", "system", params={"_outputFormat": "text/csv"})
    assert r.status_code == 400
    assert "_outputFormat" in r.json()["issue"][0]["diagnostics"]


@levels
def test_10_since_then_delete(bulk: Bulk, url: str) -> None:
    path = bulk.status_path(bulk.kickoff(url, "system", params={"_since": "2024-01-01T00:00:00Z"}))
    assert bulk.client.delete(path, headers={"Authorization": "Bearer system"}).status_code == 202


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01T00:00:00Z", "2024-01-01T10:00:00"])
def test_10_invalid_since_is_400(bulk: Bulk, since: str) -> None:
    r = bulk.kickoff("/fhir/$export", "system", params={"_since": since})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["_since"]


@levels
def test_11_cancel_then_404(bulk: Bulk, url: str) -> None:
    path = bulk.status_path(bulk.kickoff(url, "system"))
    auth = {"Authorization": "Bearer system"}
    assert bulk.client.delete(path, headers=auth).status_code == 202
    r = bulk.client.get(path, headers=auth)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert bulk.client.delete(path, headers=auth).status_code == 404
    bulk.run()  # nothing left to run
    assert bulk.client.get(path, headers=auth).status_code == 404


def _manifest_files(manifest: dict[str, Any]) -> list[str]:
    return [e["url"] for e in manifest["output"]]


@levels
def test_11_cancel_of_a_completed_export_removes_its_files(bulk: Bulk, url: str) -> None:
    """DELETE after completion: 202, the files are gone from disk and their URLs answer 404."""
    manifest = bulk.export(url, "system")
    file_url = manifest["output"][0]["url"].removeprefix(BASE)
    job_id = file_url.split("/")[-2]
    assert (bulk.bulk.root / job_id).is_dir()
    auth = {"Authorization": "Bearer system"}
    assert bulk.client.delete(f"/bulk/status/{job_id}", headers=auth).status_code == 202
    assert not (bulk.bulk.root / job_id).exists()
    r = bulk.client.get(file_url, headers=auth)
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert bulk.client.get(f"/bulk/status/{job_id}", headers=auth).status_code == 404

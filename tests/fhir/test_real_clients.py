"""Clients EHRGate did not write: fhirpy (sends application/json) and SMART's fhirclient models."""

from __future__ import annotations

from typing import Any

import pytest


def test_fhirpy_crud_and_search(live_server: str) -> None:
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(live_server)
    patient = client.resource(
        "Patient",
        name=[{"family": "Fhirpy", "given": ["Real"]}],
        identifier=[{"system": "urn:test", "value": "FP-1"}],
        gender="female",
    )
    patient.save()
    assert patient.id
    patient["birthDate"] = "1999-09-09"
    patient.save()
    found = client.resources("Patient").search(identifier="urn:test|FP-1").fetch_all()
    assert [p.id for p in found] == [patient.id]
    assert found[0]["birthDate"] == "1999-09-09"
    assert client.resources("Patient").search(family="fhirpy").count() == 1
    obs = client.resource("Observation", status="final", code={"text": "x"}, subject=patient.to_reference())
    obs.save()
    assert client.resources("Observation").search(subject=patient.to_reference().reference).count() == 1
    patient.delete()
    assert client.resources("Patient").search(family="fhirpy").count() == 0


def test_fhirclient_models_read_what_we_serve(live_server: str) -> None:
    import requests
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.patient import Patient

    r = requests.post(f"{live_server}/Patient", json={"resourceType": "Patient", "name": [{"family": "Strict"}]},
                      headers={"Content-Type": "application/fhir+json"}, timeout=10)
    assert r.status_code == 201
    Patient(r.json(), strict=True)
    bundle = requests.get(f"{live_server}/Patient?_include=Patient:organization", timeout=10).json()
    Bundle(bundle, strict=True)
    history = requests.get(f"{live_server}/_history", timeout=10).json()
    Bundle(history, strict=True)


@pytest.mark.parametrize("summary", ["true", "data", "text"])
def test_summary_modes(client: Any, summary: str) -> None:
    body = {"resourceType": "Patient", "name": [{"family": "Sum"}], "photo": [{"contentType": "image/png"}],
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Sum</div>"}}
    pid = client.post("/fhir/Patient", json=body).json()["id"]
    res = client.get(f"/fhir/Patient/{pid}?_summary={summary}").json()
    tags = [t["code"] for t in res["meta"].get("tag", [])]
    assert "SUBSETTED" in tags
    if summary == "true":
        assert "name" in res and "photo" not in res and "text" not in res
    elif summary == "data":
        assert "text" not in res and "photo" in res
    else:
        assert "text" in res and "name" not in res


def test_pretty_and_json_content_type(client: Any) -> None:
    r = client.post("/fhir/Patient?_pretty=true", content=b'{"resourceType":"Patient"}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 201
    assert b"\n  " in r.content


def test_request_id_round_trip(client: Any) -> None:
    r = client.get("/fhir/metadata", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/fhir/metadata", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


def test_cors_for_browser_apps(client: Any) -> None:
    pre = client.options("/fhir/Patient", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "http://app.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    r = client.get("/fhir/metadata", headers={"Origin": "http://app.example"})
    assert r.headers["access-control-allow-origin"] == "http://app.example"
    assert "ETag" in r.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in client.get("/fhir/metadata").headers

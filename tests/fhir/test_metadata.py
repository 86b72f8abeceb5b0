"""The CapabilityStatement is generated and strictly valid R4."""

from __future__ import annotations

from typing import Any


def test_metadata_lists_what_works(client: Any) -> None:
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    cap = r.json()
    assert cap["resourceType"] == "CapabilityStatement"
    assert cap["fhirVersion"] == "4.0.1"
    rest = cap["rest"][0]
    by_type = {res["type"]: res for res in rest["resource"]}
    assert {"Patient", "Observation", "Encounter", "Group", "Binary"} <= set(by_type)
    patient_params = {p["name"]: p["type"] for p in by_type["Patient"]["searchParam"]}
    assert patient_params["birthdate"] == "date"
    assert patient_params["identifier"] == "token"
    assert any(op["name"] == "everything" for op in by_type["Patient"].get("operation", []))
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}


def test_metadata_parses_with_strict_r4_models(client: Any) -> None:
    from fhirclient.models.capabilitystatement import CapabilityStatement

    cap = CapabilityStatement(client.get("/fhir/metadata").json(), strict=True)
    assert cap.fhirVersion == "4.0.1"


def test_metadata_validates_with_our_validator(client: Any) -> None:
    from ehrgate.fhir.validation import validate

    assert validate(client.get("/fhir/metadata").json()) == []


def test_metadata_takes_summary_and_elements(client: Any) -> None:
    """`_summary=true` (search.html#summary) returns the CapabilityStatement's summary elements, marked
    SUBSETTED, and `_elements` the ones named, instead of ignoring the parameters (R4 marks nearly all
    of a CapabilityStatement as summary; `_elements` is what makes it small)."""
    slim = client.get("/fhir/metadata?_summary=true")
    assert slim.status_code == 200, slim.text
    body = slim.json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    assert any(t.get("code") == "SUBSETTED" for t in body["meta"]["tag"])
    only = client.get("/fhir/metadata?_elements=software,fhirVersion").json()
    assert set(only) >= {"resourceType", "software", "fhirVersion"} and "rest" not in only
    assert client.get("/fhir/metadata?_summary=bogus", headers={"Prefer": "handling=strict"}).status_code == 400
    assert client.get("/fhir/metadata?_pretty=true").text.startswith("{\n")

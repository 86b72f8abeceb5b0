"""Reference.reference literal forms (http://hl7.org/fhir/R4/references.html#literal)."""

from __future__ import annotations

import pytest

from ehrgate.fhir.validation import validate

from .helpers import issues_at
from .samples import transaction_bundle


def observation_about(reference: str) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": reference}}


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/123",
        "Patient/a.b-c",
        "Patient/123/_history/4",
        "https://ehr.example.org/fhir/Patient/123",
        "http://localhost:8080/fhir/Group/9/_history/1",
        "urn:uuid:0b4c9e0c-3d3c-4b7e-8f6b-2f7f8e8f6a11",
        "urn:oid:1.2.840.114350",
        "#contained-1",
        "#",
    ],
)
def test_valid_references(reference: str) -> None:
    assert validate(observation_about(reference)) == []


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("Patients/123", "known R4 resource type"),
        ("Foo/1", "known R4 resource type"),
        ("Patient/has space", "Type/id"),
        ("Patient/" + "x" * 65, "Type/id"),
        ("Patient", "Type/id"),
        ("123", "Type/id"),
        ("Patient/1/_history/", "Type/id"),
        ("urn:uuid:not-a-uuid", "UUID"),
        ("urn:oid:abc", "OID"),
        ("#has space", "contained"),
        ("Patient?identifier=123", "Type/id"),  # conditional: only inside a transaction
        ("patient/1", "Type/id"),
    ],
)
def test_invalid_references(reference: str, why: str) -> None:
    issues = validate(observation_about(reference))
    assert [(i.code, i.expression) for i in issues] == [("value", "Observation.subject.reference")]
    assert why in issues[0].diagnostics
    assert repr(reference) in issues[0].diagnostics


def test_conditional_references_allowed_in_transactions_only() -> None:
    bundle = transaction_bundle()
    assert validate(bundle) == []
    bundle["type"] = "batch"
    assert issues_at(bundle) == {"Bundle.entry[1].resource.encounter.reference": "value"}


def test_reference_whitespace_is_a_value_error_first() -> None:
    issues = validate(observation_about("Patient/1 "))
    assert [(i.code, i.expression) for i in issues] == [("value", "Observation.subject.reference")]


def test_reference_with_only_identifier_or_display() -> None:
    resource = observation_about("Patient/1")
    resource["subject"] = {"identifier": {"system": "urn:oid:1.2.3", "value": "X"}, "display": "Someone"}
    assert validate(resource) == []

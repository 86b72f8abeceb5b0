"""The validator's memo of datatype values found valid (definitions.TypeDef.valid): a value met again
is skipped, and that must never change a verdict. Each case validates once with every memo empty and
again after the memos have seen the other inputs; the issues must be the same."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.validation import validate
from ehrgate.fhir.validation.definitions import TYPES, clear_memos

from . import samples

ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


def _issues(resource: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(i.code, i.expression, i.diagnostics) for i in validate(resource)]


def _observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **extra}


def _transaction(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}]}


CONDITIONAL = {"reference": "Patient?identifier=http://example.org/mrn|42"}
UNBOUND = {"coding": [{"system": ALLERGY_CLINICAL, "code": "bogus"}]}

CASES: dict[str, dict[str, Any]] = {
    "patient": samples.patient(),
    "blood pressure": samples.blood_pressure(),
    "encounter": samples.encounter(),
    # A conditional reference is valid in a transaction only (http.html#trules).
    "conditional reference in a transaction": _transaction(_observation(subject=CONDITIONAL)),
    "conditional reference alone": _observation(subject=CONDITIONAL),
    # The same CodeableConcept: free in Observation.code, bound (required) in clinicalStatus.
    "concept unbound": _observation(code=UNBOUND),
    "concept bound": {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
                      "clinicalStatus": UNBOUND},
    # A float NaN serialises as null: it must not make a later real null pass.
    "extension NaN": _observation(extension=[{"url": "http://example.org/x", "valueDecimal": float("nan")}]),
    "extension null": _observation(extension=[{"url": "http://example.org/x", "valueDecimal": None}]),
    "identifier bad period": _observation(identifier=[{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2",
                                                       "period": {"start": "2024-02-30"}}]),
    "identifier good period": _observation(identifier=[{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2",
                                                        "period": {"start": "2024-02-28"}}]),
    "reference bad": _observation(subject={"reference": "Patient/1 "}),
    "reference good": _observation(subject={"reference": "Patient/1"}),
}


def test_the_memo_covers_the_recurring_datatypes() -> None:
    remembered = {name for name, td in TYPES.items() if td.valid is not None}
    assert {"CodeableConcept", "Reference", "Identifier", "Meta"} <= remembered
    assert not any(TYPES[name].is_resource or "." in name for name in remembered)  # datatypes only


@pytest.mark.parametrize("name", list(CASES))
def test_a_warm_memo_gives_the_cold_verdict(name: str) -> None:
    clear_memos()
    cold = _issues(CASES[name])
    for _ in range(2):  # every other case first, in both orders
        for other in (list(CASES.values()), list(reversed(CASES.values()))):
            for resource in other:
                validate(resource)
            assert _issues(CASES[name]) == cold


def test_the_cases_mean_what_they_say() -> None:
    clear_memos()
    assert validate(CASES["conditional reference in a transaction"]) == []
    assert [i.expression for i in validate(CASES["conditional reference alone"])] == ["Observation.subject.reference"]
    assert validate(CASES["concept unbound"]) == []
    assert [i.code for i in validate(CASES["concept bound"])] == ["code-invalid"]
    assert validate(CASES["extension NaN"]) == []
    assert [i.code for i in validate(CASES["extension null"])] == ["structure"]
    assert [i.code for i in validate(CASES["identifier bad period"])] == ["value"]

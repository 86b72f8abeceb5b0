"""Required bindings (http://hl7.org/fhir/R4/terminologies.html#required)."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.validation import validate
from ehrgate.fhir.validation.bindings import REQUIRED, VALUE_SETS
from ehrgate.fhir.validation.definitions import TYPES

from .helpers import issues_at, only_issue
from .samples import allergy, blood_pressure, condition, encounter, medication_request, patient


def test_every_binding_names_a_code_coding_or_codeableconcept_element() -> None:
    for path in REQUIRED:
        owner, _, element = path.rpartition(".")
        assert TYPES[owner].elements[element].type in {"code", "Coding", "CodeableConcept"}, path


def test_value_sets_of_codeable_concepts_name_their_code_system() -> None:
    for path, vs in REQUIRED.items():
        owner, _, element = path.rpartition(".")
        if TYPES[owner].elements[element].type != "code":
            assert vs.system, path


def test_every_code_in_a_value_set_is_a_valid_code() -> None:
    from ehrgate.fhir.validation.primitives import CHECKS

    for vs in VALUE_SETS.values():
        assert all(CHECKS["code"](code) is None for code in vs.codes), vs.name


@pytest.mark.parametrize(
    ("make", "path", "bad"),
    [
        (patient, ("gender",), "F"),
        (patient, ("name", 0, "use"), "legal"),
        (patient, ("telecom", 0, "system"), "mobile"),
        (patient, ("telecom", 0, "use"), "cell"),
        (patient, ("address", 0, "type"), "home"),
        (patient, ("identifier", 0, "use"), "primary"),
        (patient, ("text", "status"), "complete"),
        (blood_pressure, ("status",), "done"),
        (blood_pressure, ("component", 1, "valueQuantity", "comparator"), "=="),
        (encounter, ("status",), "completed"),
        (encounter, ("statusHistory", 0, "status"), "done"),
        (medication_request, ("status",), "ordered"),
        (medication_request, ("intent",), "directive"),  # RequestIntent has it, MedicationRequestIntent not
        (medication_request, ("dosageInstruction", 0, "timing", "repeat", "periodUnit"), "day"),
        (allergy, ("category", 0), "drug"),
        (allergy, ("reaction", 0, "severity"), "bad"),
    ],
)
def test_code_outside_required_value_set(make: Any, path: tuple[Any, ...], bad: str) -> None:
    resource = make()
    target = resource
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = bad
    issue = only_issue(resource)
    assert issue.code == "code-invalid"
    expression = resource["resourceType"] + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    assert issue.expression == expression
    assert repr(bad) in issue.diagnostics


def test_message_lists_the_allowed_codes() -> None:
    resource = patient()
    resource["gender"] = "F"
    assert "AdministrativeGender: female | male | other | unknown" in only_issue(resource).diagnostics


def test_bad_code_format_is_a_value_problem_not_a_binding_one() -> None:
    resource = patient()
    resource["gender"] = "fe male "
    assert issues_at(resource) == {"Patient.gender": "value"}


def test_codeable_concept_checked_only_for_the_bound_system() -> None:
    resource = condition()
    resource["clinicalStatus"]["coding"].append({"system": "http://example.org/local-status", "code": "cured"})
    assert validate(resource) == []
    resource["clinicalStatus"]["coding"].append(
        {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "cured"})
    assert issues_at(resource) == {"Condition.clinicalStatus.coding[2].code": "code-invalid"}


def test_codeable_concept_text_only_is_fine() -> None:
    resource = allergy()
    resource["clinicalStatus"] = {"text": "active"}
    assert validate(resource) == []


def test_publication_status_on_canonical_resources() -> None:
    assert validate({"resourceType": "ValueSet", "status": "active"}) == []
    issue = only_issue({"resourceType": "Questionnaire", "status": "published"})
    assert (issue.code, issue.expression) == ("code-invalid", "Questionnaire.status")


def test_bundle_type_and_http_verb() -> None:
    assert issues_at({"resourceType": "Bundle", "type": "batch-request"}) == {"Bundle.type": "code-invalid"}
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "post", "url": "Patient"}, "resource": {"resourceType": "Patient"}}]}
    assert issues_at(bundle) == {"Bundle.entry[0].request.method": "code-invalid"}


def test_extensible_bindings_are_not_enforced() -> None:
    resource = encounter()
    resource["class"] = {"system": "http://example.org/classes", "code": "tele"}  # extensible (skipped)
    assert validate(resource) == []

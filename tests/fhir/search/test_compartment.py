"""compartment.py: Patient compartment membership (R4 compartmentdefinition-patient.html)."""

from __future__ import annotations

import pytest

from ehrgate.fhir.search.compartment import PATIENT_COMPARTMENT, patient_compartments
from ehrgate.fhir.search.params import REGISTRY
from ehrgate.fhir.search.types import ReferenceRow


def r(param: str, target: str, url: str | None = None) -> ReferenceRow:
    rtype, _, rid = target.partition("/")
    return ReferenceRow(param, rtype or None, rid or None, url)


@pytest.mark.parametrize(
    ("resource_type", "resource_id", "rows", "expected"),
    [
        # Observation: subject and performer count, and only when they point at a Patient
        ("Observation", "o1", [r("subject", "Patient/p1"), r("patient", "Patient/p1")], {"p1"}),
        ("Observation", "o1", [r("subject", "Group/g1")], set()),
        ("Observation", "o1", [r("subject", "Patient/p1"), r("performer", "Patient/p2")], {"p1", "p2"}),
        ("Observation", "o1", [r("performer", "Practitioner/pr1")], set()),
        ("Observation", "o1", [r("focus", "Patient/p3"), r("patient", "Patient/p4")], set()),  # not compartment params
        ("Observation", "o1", [r("subject", "/", "urn:uuid:1234")], set()),  # type unknown
        # Encounter: only its patient parameter
        ("Encounter", "e1", [r("patient", "Patient/p1"), r("subject", "Patient/p1")], {"p1"}),
        ("Encounter", "e1", [r("participant", "RelatedPerson/rp1"), r("subject", "Patient/p9")], set()),
        # Patient: itself, plus the patients it links to
        ("Patient", "p1", [], {"p1"}),
        ("Patient", "p1", [r("link", "Patient/p0"), r("link", "RelatedPerson/rp1")], {"p1", "p0"}),
        ("Patient", "p1", [r("general-practitioner", "Practitioner/pr1")], {"p1"}),
        ("Patient", None, [], set()),
        # the definition's other entries
        ("AllergyIntolerance", "a1", [r("recorder", "Patient/p1"), r("asserter", "Patient/p2")], {"p1", "p2"}),
        ("Coverage", "c1", [r("beneficiary", "Patient/p1"), r("payor", "Patient/p2"), r("patient", "Patient/p3")],
         {"p1", "p2"}),
        ("Group", "g1", [r("member", "Patient/p1"), r("member", "Patient/p2")], {"p1", "p2"}),
        ("Appointment", "ap1", [r("actor", "Patient/p1"), r("actor", "Practitioner/pr1")], {"p1"}),
        # types outside the compartment
        ("Practitioner", "pr1", [r("subject", "Patient/p1")], set()),
        ("Organization", "o1", [], set()),
        ("Task", "t1", [r("patient", "Patient/p1")], set()),
        ("Medication", "m1", [], set()),
    ],
)
def test_patient_compartments(resource_type: str, resource_id: str | None, rows: list[ReferenceRow],
                              expected: set[str]) -> None:
    assert patient_compartments(resource_type, resource_id, rows) == expected


@pytest.mark.parametrize(
    ("resource_type", "params"),
    [
        ("Observation", ("subject", "performer")),
        ("Encounter", ("patient",)),
        ("AllergyIntolerance", ("patient", "recorder", "asserter")),
        ("Patient", ("link",)),
        ("Condition", ("patient", "asserter")),
        ("Coverage", ("policy-holder", "subscriber", "beneficiary", "payor")),
        ("DocumentReference", ("subject", "author")),
        ("MedicationRequest", ("subject",)),
        ("Provenance", ("patient",)),
    ],
)
def test_definition_entries(resource_type: str, params: tuple[str, ...]) -> None:
    assert PATIENT_COMPARTMENT[resource_type] == params


@pytest.mark.parametrize("absent", ["Binary", "Organization", "Practitioner", "PractitionerRole", "Location",
                                    "Medication", "Device", "Task", "Questionnaire", "Slot"])
def test_types_never_in_a_patient_compartment(absent: str) -> None:
    assert absent not in PATIENT_COMPARTMENT


COMPARTMENT_PARAMS = [(rt, code) for rt, codes in PATIENT_COMPARTMENT.items() if rt in REGISTRY for code in codes]


@pytest.mark.parametrize(("resource_type", "code"), COMPARTMENT_PARAMS)
def test_compartment_parameters_are_indexed_references_that_can_point_at_a_patient(resource_type: str, code: str) -> None:
    """Membership is computed from index rows, so each listed parameter must produce them."""
    param = REGISTRY[resource_type].get(code)
    assert param is not None, f"{resource_type}.{code} is in the compartment definition but not indexed"
    assert param.type == "reference"
    assert not param.targets or "Patient" in param.targets

"""The generated R4 tables: fresh, small, complete, and loaded without any FHIR model library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ehrgate.fhir.validation.definitions import RESOURCE_TYPES, TYPES

from .helpers import REPO

DATA = REPO / "src" / "ehrgate" / "fhir" / "validation" / "r4_definitions.json"


def test_data_file_is_small() -> None:
    assert DATA.stat().st_size < 300_000


def test_data_file_matches_the_generator() -> None:
    pytest.importorskip("fhirclient")
    pytest.importorskip("fhirpathpy", reason="the generator reads fhirpathpy's R4 path2Type.json")
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_r4_definitions.py"), "--check"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stderr  # every primitive type was found in path2Type


def test_runtime_does_not_import_model_libraries() -> None:
    code = (
        "import sys, ehrgate.fhir.validation as v; v.validate({'resourceType': 'Patient'}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fhirclient', 'fhirpathpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_resource_element_matches_fhirclient() -> None:
    """Names, repetition and min-1 of every element equal fhirclient's model of the same type."""
    factory = pytest.importorskip("fhirclient.models.fhirelementfactory").FHIRElementFactory
    for rt in sorted(RESOURCE_TYPES):
        props = factory.instantiate(rt, None).elementProperties()
        model = {js: (is_list, bool(required)) for _, js, _, is_list, _, required in props}
        ours = {key: (el.is_list, el.required) for key, el in TYPES[rt].elements.items()}
        assert ours == model, rt


@pytest.mark.parametrize(
    ("path", "type_code"),
    [
        ("Patient.id", "id"),
        ("Patient.gender", "code"),
        ("Patient.birthDate", "date"),
        ("Patient.contact", "Patient.contact"),
        ("Element.id", "string"),
        ("Extension.url", "uri"),
        ("Coding.system", "uri"),
        ("Meta.profile", "canonical"),
        ("Attachment.data", "base64Binary"),
        ("Attachment.size", "unsignedInt"),
        ("Narrative.div", "xhtml"),
        ("Observation.valueQuantity", "Quantity"),
        ("Observation.component", "Observation.component"),
        ("Bundle.entry.resource", "Resource"),
        ("Questionnaire.item.item", "Questionnaire.item"),  # recursive backbone
        ("ValueSet.compose.exclude", "ValueSet.compose.include"),  # reused backbone, spec name kept
        ("Timing.repeat.count", "positiveInt"),
        ("Reference.reference", "string"),
    ],
)
def test_element_types(path: str, type_code: str) -> None:
    owner, _, element = path.rpartition(".")
    assert TYPES[owner].elements[element].type == type_code


def test_choice_groups_and_required_labels() -> None:
    observation = TYPES["Observation"]
    assert "valueQuantity" in observation.choices["value"]
    assert len(observation.choices["value"]) == 11
    assert dict(TYPES["MedicationRequest"].required)["medication[x]"][:2] == (
        "medicationCodeableConcept", "medicationReference")

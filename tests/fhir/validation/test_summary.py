"""Summary elements for ``_summary=true`` (http://hl7.org/fhir/R4/search.html#summary).

Spot checks follow the Σ column of the R4 4.0.1 resource pages (e.g.
http://hl7.org/fhir/R4/patient.html#resource, http://hl7.org/fhir/R4/observation.html#resource).
"""

from __future__ import annotations

import orjson
import pytest

from ehrgate.fhir.validation.definitions import RESOURCE_TYPES, TYPES
from ehrgate.fhir.validation.summary import summary_elements

from .helpers import REPO

DATA = REPO / "src" / "ehrgate" / "fhir" / "validation" / "r4_summary.json"

PATIENT_DECEASED = {"deceasedBoolean", "deceasedDateTime"}
OBSERVATION_EFFECTIVE = {"effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant"}
OBSERVATION_VALUE = {
    "valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueRange",
    "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod",
}

SUMMARY = [
    ("Patient", {
        "identifier", "active", "name", "telecom", "gender", "birthDate", *PATIENT_DECEASED, "address",
        "managingOrganization", "link",
    }),
    ("Observation", {
        "identifier", "basedOn", "partOf", "status", "code", "subject", "focus", "encounter",
        *OBSERVATION_EFFECTIVE, "issued", "performer", *OBSERVATION_VALUE, "hasMember", "derivedFrom",
        "component",
    }),
    ("Encounter", {
        "identifier", "status", "class", "type", "serviceType", "subject", "episodeOfCare", "participant",
        "appointment", "reasonCode", "reasonReference", "diagnosis",
    }),
    ("Condition", {
        "clinicalStatus", "verificationStatus", "code", "bodySite", "subject", "encounter", "onsetDateTime",
        "onsetAge", "onsetPeriod", "onsetRange", "onsetString", "recordedDate", "recorder", "asserter",
    }),
    ("Bundle", {"identifier", "type", "timestamp", "total", "link", "entry", "signature"}),
    ("Binary", {"contentType", "securityContext"}),
    # min >= 1 without Σ: mandatory elements are returned too
    ("Provenance", {"target", "recorded", "agent"}),
    ("AuditEvent", {"type", "recorded", "agent", "source"}),
    ("Appointment", {"status", "participant"}),
]

NOT_SUMMARY = [
    ("Patient", {
        "photo", "contact", "communication", "maritalStatus", "multipleBirthBoolean", "multipleBirthInteger",
        "generalPractitioner",
    }),
    ("Observation", {
        "category", "dataAbsentReason", "interpretation", "note", "bodySite", "method", "specimen", "device",
        "referenceRange",
    }),
    # not Σ in R4, though often assumed to be
    ("Encounter", {"period", "serviceProvider", "hospitalization", "location", "length", "priority"}),
    ("Condition", {"category", "severity", "abatementDateTime", "stage", "evidence", "note"}),
    ("Binary", {"data"}),
]


@pytest.mark.parametrize(("rtype", "names"), SUMMARY, ids=[r for r, _ in SUMMARY])
def test_summary_elements_from_the_spec(rtype: str, names: set[str]) -> None:
    assert names <= summary_elements(rtype)


@pytest.mark.parametrize(("rtype", "names"), NOT_SUMMARY, ids=[r for r, _ in NOT_SUMMARY])
def test_non_summary_elements_are_left_out(rtype: str, names: set[str]) -> None:
    assert not names & summary_elements(rtype)


def test_observation_and_patient_exactly() -> None:
    assert summary_elements("Patient") == {
        "id", "meta", "implicitRules", "identifier", "active", "name", "telecom", "gender", "birthDate",
        *PATIENT_DECEASED, "address", "managingOrganization", "link",
    }
    assert summary_elements("Observation") == {"id", "meta", "implicitRules", *SUMMARY[1][1]}


@pytest.mark.parametrize("rtype", sorted(RESOURCE_TYPES))
def test_every_resource_type(rtype: str) -> None:
    names = summary_elements(rtype)
    assert {"id", "meta", "implicitRules"} <= names
    assert not {"text", "contained", "extension", "modifierExtension", "language"} & names
    unknown = names - TYPES[rtype].elements.keys()
    assert not unknown, f"{rtype}: {sorted(unknown)} are not elements in r4_definitions.json"
    # r4_definitions.json (another source) marks min >= 1; each of those names must be kept.
    required = {n for n, el in TYPES[rtype].elements.items() if el.required}
    assert required <= names


def test_unknown_type_keeps_id_and_meta() -> None:
    assert summary_elements("NotAResource") == frozenset({"id", "meta"})
    assert summary_elements("patient") == frozenset({"id", "meta"})  # resource types are case-sensitive


def test_returns_frozensets_loaded_once() -> None:
    assert isinstance(summary_elements("Patient"), frozenset)
    assert summary_elements("Patient") is summary_elements("Patient")


def test_data_file_is_compact_and_covers_every_resource() -> None:
    assert DATA.stat().st_size < 60_000
    raw = orjson.loads(DATA.read_bytes())
    assert raw["fhirVersion"] == "4.0.1"
    assert raw["source"].startswith("hl7.fhir.r4.core 4.0.1")
    assert set(raw["resources"]) == RESOURCE_TYPES
    for names in raw["resources"].values():
        assert names == sorted(set(names))

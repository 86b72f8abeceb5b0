"""VXU^V04 → Immunization (vxu.py)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import convert_sample, current, errors, load, pick, resources

CVX = "http://hl7.org/fhir/sid/cvx"

CASES: list[tuple[str, str, Any]] = [
    ("vxu_v04.hl7", "Immunization(08).status", "completed"),
    ("vxu_v04.hl7", "Immunization(08).vaccineCode.coding[0].system", CVX),
    ("vxu_v04.hl7", "Immunization(08).occurrenceDateTime", "2024-05-05T10:30:00-04:00"),
    ("vxu_v04.hl7", "Immunization(08).lotNumber", "LOT123"),
    ("vxu_v04.hl7", "Immunization(08).expirationDate", "2025-12-31"),
    ("vxu_v04.hl7", "Immunization(08).doseQuantity", {"value": 0.5, "unit": "milliliter",
                                                     "system": "http://unitsofmeasure.org", "code": "mL"}),
    ("vxu_v04.hl7", "Immunization(08).primarySource", True),
    ("vxu_v04.hl7", "Immunization(08).route.coding[0].system",
     "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"),
    ("vxu_v04.hl7", "Immunization(08).route.coding[0].code", "IM"),
    ("vxu_v04.hl7", "Immunization(08).site.coding[0].code", "LT"),
    ("vxu_v04.hl7", "Immunization(08).manufacturer.display", "Merck and Co., Inc."),
    ("vxu_v04.hl7", "Immunization(08).performer[0].function.coding[0].code", "AP"),
    ("vxu_v04.hl7", "Immunization(08).performer[1].function.coding[0].code", "OP"),
    ("vxu_v04.hl7", "Immunization(08).identifier[1].value", "IZ-F-1"),
    ("vxu_v04.hl7", "Immunization(20).primarySource", False),
    ("vxu_v04.hl7", "Immunization(20).reportOrigin.coding[0].code", "01"),
    ("vxu_v04.hl7", "Immunization(20).doseQuantity", None),
    ("vxu_v04.hl7", "Immunization(998).status", "not-done"),
    ("vxu_v04.hl7", "Immunization(998).statusReason.coding[0].code", "00"),
    ("vxu_v04.hl7", "Organization.identifier[0].system", "http://terminology.hl7.org/CodeSystem/MVX"),
    ("vxu_v04.hl7", "Organization.identifier[0].value", "MSD"),
    ("vxu_v04.hl7", "RelatedPerson.relationship[0].coding[0].code", "MTH"),
    ("vxu_v04_delete.hl7", "Immunization.status", "entered-in-error"),
]


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_immunization_values(name: str, path: str, expected: Any) -> None:
    assert pick(convert_sample(name).bundle, path) == expected


def test_observations_are_part_of_their_immunization() -> None:
    bundle = convert_sample("vxu_v04.hl7").bundle
    hep_b = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Immunization"
                 and e["resource"]["vaccineCode"]["coding"][0]["code"] == "08")
    observations = resources(bundle, "Observation")
    assert len(observations) == 2
    assert all(o["partOf"] == [{"reference": hep_b}] for o in observations)
    assert pick(bundle, "Observation(29768-9).valueDateTime") == "2012-02-02"


def test_deletion_marks_the_same_immunization(store: Any) -> None:
    for name in ("vxu_v04.hl7", "vxu_v04_delete.hl7"):
        bundle = convert_sample(name).bundle
        assert errors(bundle) == [], name
        load(store, bundle)
    found = current(store, "Immunization", "identifier=urn:ehrgate:id:EHR|IZ-F-1")
    assert len(found) == 1 and found[0]["status"] == "entered-in-error"
    assert len(current(store, "Immunization")) == 3

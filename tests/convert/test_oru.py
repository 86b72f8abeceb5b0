"""ORU^R01 / OUL^R22 → DiagnosticReport, Observation, Specimen, ServiceRequest (oru.py, observation.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ehrgate.convert import convert
from ehrgate.hl7 import parse

from .conftest import OPTIONS, convert_sample, current, errors, load, pick, resources, sample

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

CASES: list[tuple[str, str, Any]] = [
    # OBR → DiagnosticReport
    ("oru_r01.hl7", "DiagnosticReport.status", "final"),
    ("oru_r01.hl7", "DiagnosticReport.code.coding[0].code", "24323-8"),
    ("oru_r01.hl7", "DiagnosticReport.category[0].coding[0].code", "CH"),
    ("oru_r01.hl7", "DiagnosticReport.effectiveDateTime", "2024-03-16T07:00:00-05:00"),
    ("oru_r01.hl7", "DiagnosticReport.issued", "2024-03-16T14:25:00-05:00"),
    ("oru_r01.hl7", "DiagnosticReport.identifier[1].value", "F-9001"),
    ("oru_r01.hl7", "DiagnosticReport.identifier[1].type.coding[0].code", "FILL"),
    ("oru_r01.hl7", "DiagnosticReport#1.status", "preliminary"),
    ("oru_r01_corrected.hl7", "DiagnosticReport.status", "corrected"),
    # OBX values by OBX-2
    ("oru_r01.hl7", "Observation(2345-7).valueQuantity", {"value": 182, "unit": "milligram per deciliter",
                                                         "system": UCUM, "code": "mg/dL"}),
    ("oru_r01.hl7", "Observation(2345-7).interpretation[0].coding[0].code", "H"),
    ("oru_r01.hl7", "Observation(2345-7).referenceRange[0].text", "70-99"),
    ("oru_r01.hl7", "Observation(2345-7).referenceRange[0].low.value", 70),
    ("oru_r01.hl7", "Observation(2345-7).referenceRange[0].high.value", 99),
    ("oru_r01.hl7", "Observation(2345-7).status", "final"),
    ("oru_r01.hl7", "Observation(2345-7).category[0].coding[0].code", "laboratory"),
    ("oru_r01.hl7", "Observation(2345-7).effectiveDateTime", "2024-03-16T07:00:00-05:00"),
    ("oru_r01.hl7", "Observation(2345-7).issued", "2024-03-16T14:25:00-05:00"),
    ("oru_r01.hl7", "Observation(2345-7).performer[0].display", "Tina Tech"),
    ("oru_r01.hl7", "Observation(2160-0).valueQuantity.comparator", "<"),
    ("oru_r01.hl7", "Observation(2160-0).valueQuantity.value", 0.5),
    ("oru_r01.hl7", "Observation(5902-2).valueRange.low.value", 10),
    ("oru_r01.hl7", "Observation(5902-2).valueRange.high.code", "s"),
    ("oru_r01.hl7", "Observation(5130-0).valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 64}}),
    ("oru_r01.hl7", "Observation(600-7).valueCodeableConcept.coding[0].system", "http://snomed.info/sct"),
    ("oru_r01.hl7", "Observation(600-7).status", "preliminary"),
    ("oru_r01.hl7", "Observation(8251-1).valueString", "Sample slightly hemolyzed"),
    ("oru_r01.hl7", "Observation(8251-1).status", "corrected"),
    ("oru_r01.hl7", "Observation(8251-1).note[0].text", "Recollect if clinically indicated"),
    ("oru_r01.hl7", "Observation(2951-2).status", "cancelled"),
    ("oru_r01.hl7", "Observation(2951-2).dataAbsentReason.coding[0].code", "cannot-be-obtained"),
    ("oru_r01.hl7", "Observation(18748-4).extension[0].valueAttachment",
     {"contentType": "application/pdf", "data": "JVBERi0xLjQK"}),
    ("oru_r01.hl7", "Observation(718-7).valueQuantity.value", Decimal("13.20")),
    ("oru_r01.hl7", "Observation(718-7).interpretation[0].coding[0].display", "Normal"),
    # SPM → Specimen
    ("oru_r01.hl7", "Specimen.type.coding[0].code", "119297000"),
    ("oru_r01.hl7", "Specimen.collection.collectedDateTime", "2024-03-16T07:00:00-05:00"),
    ("oru_r01.hl7", "Specimen.receivedTime", "2024-03-16T07:30:00-05:00"),
    ("oul_r22.hl7", "Specimen.identifier[0].value", "S-7001"),
    ("oul_r22.hl7", "Specimen.identifier[0].type.coding[0].code", "FGN"),
    ("oul_r22.hl7", "DiagnosticReport.code.coding[0].code", "24357-6"),
    ("oul_r22.hl7", "Observation.valueCodeableConcept.coding[0].code", "260385009"),
    ("oul_r22.hl7", "Observation.effectiveDateTime", None),
    # ORC/OBR → the ServiceRequest the report answers (created only if unknown)
    ("oru_r01.hl7", "ServiceRequest(24323-8).status", "completed"),
    ("oru_r01.hl7", "ServiceRequest(24323-8).intent", "order"),
    ("oru_r01.hl7", "ServiceRequest(24323-8).note[0].text", "Fasting specimen"),
    ("oul_r22.hl7", "ServiceRequest.status", "completed"),
]


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_oru_values(name: str, path: str, expected: Any) -> None:
    assert pick(convert_sample(name).bundle, path) == expected


def test_text_values_keep_their_lines() -> None:
    bundle = convert_sample("oru_r01.hl7").bundle
    texts = sorted(o["valueString"] for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "11526-1")
    assert texts == ["Line one\nLine two", "Narrative\nsecond line"]


def test_report_links_results_specimen_and_order() -> None:
    bundle = convert_sample("oru_r01.hl7").bundle
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    report = pick(bundle, "DiagnosticReport")
    assert len(report["result"]) == 10
    assert all(by_url[r["reference"]]["resourceType"] == "Observation" for r in report["result"])
    assert by_url[report["specimen"][0]["reference"]]["resourceType"] == "Specimen"
    assert by_url[report["basedOn"][0]["reference"]]["resourceType"] == "ServiceRequest"
    assert pick(bundle, "DiagnosticReport#1.result") is not None and len(pick(bundle, "DiagnosticReport#1.result")) == 2


def test_identity_of_reports_and_results() -> None:
    bundle = convert_sample("oru_r01.hl7").bundle
    reports = [e["request"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert {"method": "PUT", "url": "DiagnosticReport?identifier=urn:ehrgate:id:LIS|F-9001"} in reports
    orders = [e["request"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    assert {"method": "POST", "url": "ServiceRequest", "ifNoneExist": "identifier=urn:ehrgate:id:EHR|ORD777"} in orders
    assert pick(bundle, "Patient.meta.source") == "urn:ehrgate:channel:test-channel#ORU-0001"
    patients = [e["request"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patients == [{"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:ehrgate:id:GHH|MRN1001"}]


def test_every_sample_is_valid_and_loads(store: Any) -> None:
    for name in ("oru_r01.hl7", "oru_r01_corrected.hl7", "oul_r22.hl7"):
        bundle = convert_sample(name).bundle
        assert errors(bundle) == [], name
        load(store, bundle)


def test_correction_updates_the_report_and_its_result(store: Any) -> None:
    load(store, convert_sample("oru_r01.hl7").bundle)
    load(store, convert_sample("oru_r01_corrected.hl7").bundle)
    reports = current(store, "DiagnosticReport", "identifier=urn:ehrgate:id:LIS|F-9001")
    assert len(reports) == 1 and reports[0]["status"] == "corrected"
    glucose = current(store, "Observation", "code=http://loinc.org|2345-7")
    assert len(glucose) == 1
    assert glucose[0]["valueQuantity"]["value"] == 128
    assert glucose[0]["status"] == "corrected"
    assert len(current(store, "Patient")) == 1
    assert len(current(store, "ServiceRequest", "identifier=urn:ehrgate:id:EHR|ORD777")) == 1


def test_all_zero_dates_read_as_absent() -> None:
    """'0000' in OBR-7, OBR-22, OBX-14 and SPM-17 is a sender's "no date": left out, not an error."""
    raw = (sample("oru_r01.hl7")
           .replace(b"|20240316070000-0500|||||||||||||||20240316142500-0500||CH|F", b"|0000|||||||||||||||0000||CH|F")
           .replace(b"|||F|||20240316070000-0500||009001^Tech^Tina", b"|||F|||0000||009001^Tech^Tina")
           .replace(b"|||||||||||||20240316070000-0500|20240316073000-0500", b"|||||||||||||0000|20240316073000-0500"))
    result = convert(parse(raw), OPTIONS)
    report = pick(result.bundle, "DiagnosticReport(24323-8)")
    assert "effectiveDateTime" not in report and "issued" not in report
    assert "effectiveDateTime" not in pick(result.bundle, "Observation(2345-7)")
    assert "collection" not in pick(result.bundle, "Specimen") or "collectedDateTime" not in pick(
        result.bundle, "Specimen")["collection"]
    assert any(w.startswith("OBR-22: '0000' is an all-zero date") for w in result.warnings)
    assert not errors(result.bundle)


PRT_CASES: list[tuple[str, Any]] = [
    # PRT placed by group and role (IG message map ORU_R01)
    ("Patient.generalPractitioner[0].display", "Dr Fiona Family"),  # PATIENT.PRT, PP
    ("Encounter.participant[0].type[0].coding[0].code", "AT"),  # VISIT.PRT
    ("Encounter.participant[0].individual.display", "Dr Aaron A Attend"),
    ("ServiceRequest.requester.display", "Carla Clinic"),  # COMMON_ORDER.PRT, OP
    ("DiagnosticReport.resultsInterpreter[0].display", "Rhea Reader"),  # ORDER_OBSERVATION.PRT, PRI
    ("DiagnosticReport.performer[0].display", "Tina Tech"),  # TN
    ("Specimen.collection.collector.display", "Pat Draw"),  # SC
    ("Observation.performer[0].display", "Andy Analyst"),  # OBSERVATION.PRT, PRT-5
]


@pytest.mark.parametrize(("path", "expected"), PRT_CASES, ids=[p for p, _ in PRT_CASES])
def test_participations_go_where_the_ig_puts_them(path: str, expected: Any) -> None:
    assert pick(convert_sample("oru_r01_prt.hl7").bundle, path) == expected


def test_participations_are_read_and_valid() -> None:
    result = convert_sample("oru_r01_prt.hl7")
    assert not errors(result.bundle)
    assert not result.ignored_segments and result.ignored_fields == {"PRT-1": 7}

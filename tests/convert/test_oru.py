"""ORU^R01 / OUL^R22 → DiagnosticReport, Observation, Specimen, ServiceRequest (oru.py, observation.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ehrgate.convert import convert
from ehrgate.fhir.errors import PreconditionFailed
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


def test_orders_sharing_a_filler_number_keep_their_own_report(store: Any) -> None:
    """A lab that sends one accession number (OBR-3) for every test of a specimen: each OBR is still
    its own DiagnosticReport with its own result (OBR[DiagnosticReport]); none is folded into another,
    and a replay finds each order and report again."""
    bundle = convert_sample("oru_r01_accession.hl7").bundle
    reports = resources(bundle, "DiagnosticReport")
    assert sorted(r["code"]["coding"][0]["code"] for r in reports) == ["2345-7", "2823-3"]
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    for report in reports:
        (result,) = report["result"]
        assert by_url[result["reference"]]["code"] == report["code"]
    assert len(resources(bundle, "ServiceRequest")) == 2
    assert errors(bundle) == []
    load(store, bundle)
    load(store, bundle)
    assert len(current(store, "DiagnosticReport")) == 2
    assert len(current(store, "ServiceRequest")) == 2
    assert len(current(store, "Observation")) == 2


TEXT_CASES: list[tuple[str, Any]] = [
    # a '&' the sender left unescaped in ST/TX/FT is text, not a subcomponent separator to cut at
    ("Observation(22634-0).valueString", "Tan & white tissue, 2 x 3 cm"),
    ("DiagnosticReport.code.coding[0].code", "11529-5"),
    ("ServiceRequest.note[0].text", "Specimen received in formalin & saline"),
    # FT formatting commands (HL7 v2.5.1 section 2.7.6) read as plain text; escapes decoded
    ("Observation(22637-3).valueString", "DIAGNOSIS:\nBenign skin & subcutis\nNo malignancy."),
    ("Observation(22636-5).valueString", "Lesion A^B \\ C"),
    # OBX-2 DR → valuePeriod (OBX[Observation]: IF OBX-2 EQUALS "DR" valuePeriod, DR[Period])
    ("Observation(8708-0).valuePeriod", {"start": "2024-03-01", "end": "2024-03-05"}),
    # OBX-2 RP → a pointer Attachment (OBX[Observation]: IF OBX-2 EQUALS "RP" valueAttachment, RP[Attachment])
    ("Observation(18748-4).extension[0]",
     {"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
      "valueAttachment": {"contentType": "image/jpeg", "url": "https://pacs.example.org/wado?study=1.2.3"}}),
    # OBX-29 observation type → a category coding (OBX[Observation] category[1].coding.code)
    ("Observation(22634-0).category[1].coding[0]",
     {"system": "http://terminology.hl7.org/CodeSystem/v2-0936", "code": "RSLT"}),
]


@pytest.mark.parametrize(("path", "expected"), TEXT_CASES, ids=[p for p, _ in TEXT_CASES])
def test_text_and_period_values(path: str, expected: Any) -> None:
    assert pick(convert_sample("oru_r01_text.hl7").bundle, path) == expected


def test_text_values_are_valid_and_fully_read() -> None:
    result = convert_sample("oru_r01_text.hl7")
    assert errors(result.bundle) == []
    assert not result.ignored_fields


def test_not_asked_result_has_a_data_absent_reason() -> None:
    """OBX-11 N (not asked) → dataAbsentReason not-asked (OBX[Observation]); status stays unknown."""
    raw = sample("oru_r01.hl7").replace(b"OBX|9|NM|2951-2^Sodium^LN||||||||X", b"OBX|9|NM|2951-2^Sodium^LN||||||||N")
    bundle = convert(parse(raw), OPTIONS).bundle
    sodium = pick(bundle, "Observation(2951-2)")
    assert sodium["status"] == "unknown"
    assert sodium["dataAbsentReason"] == {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                                      "code": "not-asked"}]}
    assert not errors(bundle)


def test_microbiology_parent_order_producer_and_accession() -> None:
    """OBR-29 parent → the child order's basedOn, by the parent's placer and filler numbers
    (OBR[ServiceRequest]); OBX-15 producer → a performer Organization (OBX[Observation], CWE[Organization]);
    SPM-30 → Specimen.accessionIdentifier (SPM[Specimen])."""
    result = convert_sample("oru_r01_micro.hl7")
    bundle = result.bundle
    plac = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}
    fill = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "FILL"}
    assert pick(bundle, "ServiceRequest(29576-6).basedOn") == [
        {"type": "ServiceRequest", "identifier": {"type": {"coding": [plac]}, "system": "urn:ehrgate:id:EHR",
                                                  "value": "ORD950"}},
        {"type": "ServiceRequest", "identifier": {"type": {"coding": [fill]}, "system": "urn:ehrgate:id:LIS",
                                                  "value": "M-100"}}]
    assert "basedOn" not in pick(bundle, "ServiceRequest(630-4)")
    culture = pick(bundle, "Observation(630-4)")
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    (producer,) = culture["performer"]
    assert producer["display"] == "Good Health Microbiology"
    assert by_url[producer["reference"]]["identifier"][0]["value"] == "LAB01"
    assert pick(bundle, "Specimen.accessionIdentifier") == {"system": "urn:ehrgate:id:LIS", "value": "ACC-9100"}
    # OBX-19 analysis time → extension; OBX-24 → the OBX-23 performing organization's address
    cipro = pick(bundle, "Observation(18906-8)")
    assert cipro["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time",
                                   "valueDateTime": "2024-03-22T09:30:00-05:00"}]
    (lab,) = cipro["performer"]
    assert by_url[lab["reference"]]["identifier"][0]["value"] == "05D0000001"
    assert by_url[lab["reference"]]["address"] == [{"use": "work", "line": ["100 Lab Way"], "city": "Greensboro",
                                                    "state": "NC", "postalCode": "27401", "country": "USA"}]
    assert errors(bundle) == []
    assert result.ignored_fields == {"OBR-26": 1}


def test_malformed_analysis_time_is_a_warning() -> None:
    """OBX-19 dates metadata: a value that is not an HL7 date is left out with a warning, the result stays."""
    raw = sample("oru_r01_micro.hl7").replace(b"|20240322093000-0500|", b"|22 Mar 2024|")
    result = convert(parse(raw), OPTIONS)
    assert "extension" not in pick(result.bundle, "Observation(18906-8)")
    assert any(w.startswith("OBX[2]-19: '22 Mar 2024' is not a valid HL7 date") for w in result.warnings)


def test_a_shared_accession_number_alone_is_refused_not_attached_to_one_report(store: Any) -> None:
    """After a message whose reports share one accession number, a message naming only that number is
    ambiguous: the store refuses it rather than overwrite one of the reports."""
    load(store, convert_sample("oru_r01_accession.hl7").bundle)
    lone = b"\r".join(line for line in sample("oru_r01_accession.hl7").split(b"\r")
                      if not line.startswith((b"ORC|RE|ORD801", b"OBR|1|", b"OBX|1|NM|2345-7")))
    # the order (ServiceRequest, ifNoneExist) or the report (conditional update) is the first to meet
    # the two matches: since 830db03 both are a 412
    with pytest.raises(PreconditionFailed, match=r"match(es)? 2 (ServiceRequest|DiagnosticReport) resources"):
        load(store, convert(parse(lone), OPTIONS).bundle)
    assert len(current(store, "DiagnosticReport")) == 2


def test_v23_specimen_from_obr() -> None:
    """Without SPM (v2.3/v2.4 results), OBR-15 specimen source, OBR-14 received time, OBR-7 collection
    time and OBR-10 collector make the report's Specimen (IG ORU_R01: OBR → OBR[Specimen], SPS[Specimen])."""
    result = convert_sample("oru_r01_v23.hl7")
    bundle = result.bundle
    (spec,) = resources(bundle, "Specimen")
    assert spec["type"] == {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0070", "code": "BLD",
                                        "display": "Blood"}]}
    assert spec["receivedTime"] == "2024-03-23T07:45:00Z"
    assert spec["collection"]["collectedDateTime"] == "2024-03-23T07:00:00Z"
    assert spec["collection"]["bodySite"]["coding"][0]["code"] == "LA"
    assert spec["collection"]["collector"]["display"] == "Pat Draw"
    assert spec["note"] == [{"text": "Fasting draw"}]
    url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is spec)
    assert pick(bundle, "DiagnosticReport.specimen") == [{"reference": url}]
    assert pick(bundle, "Observation.specimen") == {"reference": url}
    assert errors(bundle) == []
    assert not {"OBR-14", "OBR-15"} & set(result.ignored_fields)
    assert convert_sample("oru_r01_v23.hl7").bundle == bundle  # the same identity every time


def test_technician_and_transcriptionist_carry_their_function() -> None:
    """OBR[DiagnosticReport]: OBR-34 technician and OBR-35 transcriptionist → performer, each with an
    event-performerFunction extension (v3-ParticipationType SPRF, TRANS)."""
    performers = pick(convert_sample("oru_r01_specimen.hl7").bundle, "DiagnosticReport.performer")
    assert [(p["display"], p["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]) for p in performers] == [
        ("Terry Tech", "SPRF"), ("Sam Scribe", "TRANS")]
    assert {p["extension"][0]["url"] for p in performers} == {
        "http://hl7.org/fhir/StructureDefinition/event-performerFunction"}


def test_sn_ratio_and_text_forms_keep_their_units() -> None:
    """OBX[Observation]: OBX-6 → valueRatio.numerator and .denominator; the '<>' form is a valueString
    OBX-5.1 OBX-5.2 OBX-5.3 OBX-5.4 OBX-6."""
    bundle = convert_sample("oru_r01_specimen.hl7").bundle
    ml = {"unit": "milliliter", "system": UCUM, "code": "mL"}
    assert pick(bundle, "Observation(5811-5).valueRatio") == {"numerator": {"value": 1, **ml},
                                                              "denominator": {"value": 40, **ml}}
    assert pick(bundle, "Observation(2888-6).valueString") == "<> 30 mg/dL"
    assert not errors(bundle)


def test_specimen_observations_are_about_the_specimen_not_results() -> None:
    """ORU_R01 SPECIMEN.SPECIMEN_OBSERVATION: an OBX after the order's SPM → Observation with focus the
    Specimen; it is not one of DiagnosticReport.result."""
    bundle = convert_sample("oru_r01_specimen.hl7").bundle
    volume = pick(bundle, "Observation(3167-4)")
    specimen_url = pick(bundle, "DiagnosticReport.specimen[0].reference")
    assert volume["focus"] == [{"reference": specimen_url}] and "basedOn" not in volume
    urls = {e["resource"].get("code", {}).get("coding", [{}])[0].get("code"): e["fullUrl"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"}
    assert [r["reference"] for r in pick(bundle, "DiagnosticReport.result")] == [urls["5811-5"], urls["2888-6"]]


def test_specimen_sample_loads_and_replays(store: Any) -> None:
    for _ in range(2):
        load(store, convert_sample("oru_r01_specimen.hl7").bundle)
    assert len(current(store, "Observation")) == 3
    assert len(current(store, "DiagnosticReport")) == 1

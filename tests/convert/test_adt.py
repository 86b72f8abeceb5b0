"""ADT → Patient, Encounter, RelatedPerson, AllergyIntolerance, Condition, Coverage (adt.py)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from ehrgate.convert import ConversionError, convert
from ehrgate.hl7 import parse

from .conftest import OPTIONS, convert_sample, current, errors, load, pick, resources, sample

THO = "http://terminology.hl7.org/CodeSystem/"

CASES: list[tuple[str, str, Any]] = [
    # PID → Patient
    ("adt_a01.hl7", "Patient.identifier[0].system", "urn:ehrgate:id:GHH"),
    ("adt_a01.hl7", "Patient.identifier[0].value", "MRN1001"),
    ("adt_a01.hl7", "Patient.identifier[0].type.coding[0].code", "MR"),
    ("adt_a01.hl7", "Patient.identifier[2].system", "http://hl7.org/fhir/sid/us-ssn"),
    ("adt_a01.hl7", "Patient.name[0].family", "Everywoman"),
    ("adt_a01.hl7", "Patient.name[0].given", ["Eve", "Elaine"]),
    ("adt_a01.hl7", "Patient.name[0].prefix", ["Ms"]),
    ("adt_a01.hl7", "Patient.name[0].use", "official"),
    ("adt_a01.hl7", "Patient.name[1].use", "maiden"),
    ("adt_a01.hl7", "Patient.birthDate", "1962-03-20"),
    ("adt_a01.hl7", "Patient.gender", "female"),
    ("adt_a01.hl7", "Patient.address[0].line", ["2222 Home Street", "Apt 4"]),
    ("adt_a01.hl7", "Patient.address[0].use", "home"),
    ("adt_a01.hl7", "Patient.address[0].district", "Guilford"),
    ("adt_a01.hl7", "Patient.telecom[0].value", "+1 336 5552004"),
    ("adt_a01.hl7", "Patient.telecom[0].use", "home"),
    ("adt_a01.hl7", "Patient.telecom[1].system", "email"),
    ("adt_a01.hl7", "Patient.telecom[1].value", "eve@example.org"),
    ("adt_a01.hl7", "Patient.telecom[2].value", "336 5550199 X12"),
    ("adt_a01.hl7", "Patient.telecom[2].use", "work"),
    ("adt_a01.hl7", "Patient.maritalStatus.coding[0].system", THO + "v3-MaritalStatus"),
    ("adt_a01.hl7", "Patient.maritalStatus.coding[0].code", "M"),
    ("adt_a01.hl7", "Patient.communication[0].language.coding[0].system", "urn:ietf:bcp:47"),
    ("adt_a01.hl7", "Patient.communication[0].language.coding[0].code", "en"),
    ("adt_a01.hl7", "Patient.extension[0].valueString", "Maiden"),
    ("adt_a01.hl7", "Patient.extension[1].url", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"),
    ("adt_a01.hl7", "Patient.extension[1].extension[0].valueCoding.code", "2106-3"),
    ("adt_a01.hl7", "Patient.extension[1].extension[0].url", "ombCategory"),
    ("adt_a01.hl7", "Patient.extension[2].extension[0].valueCoding.code", "2186-5"),
    ("adt_a01.hl7", "Patient.multipleBirthBoolean", False),
    ("adt_a01.hl7", "Patient.deceasedBoolean", False),
    ("adt_a01.hl7", "Patient.generalPractitioner[0].display", "GOOD HEALTH CLINIC"),
    ("adt_a01.hl7", "Patient.meta.source", "urn:ehrgate:channel:test-channel#A01-0001"),
    ("adt_a28.hl7", "Patient.gender", "unknown"),
    ("adt_a28.hl7", "Patient.telecom[0].use", "home"),
    # PV1 → Encounter
    ("adt_a01.hl7", "Encounter.status", "in-progress"),
    ("adt_a01.hl7", "Encounter.class.code", "IMP"),
    ("adt_a01.hl7", "Encounter.identifier[0].value", "V20240315-1"),
    ("adt_a01.hl7", "Encounter.identifier[0].type.coding[0].code", "VN"),
    ("adt_a01.hl7", "Encounter.period.start", "2024-03-15T08:00:00-05:00"),
    ("adt_a01.hl7", "Encounter.type[0].coding[0].code", "E"),
    ("adt_a01.hl7", "Encounter.serviceType.coding[0].code", "MED"),
    ("adt_a01.hl7", "Encounter.participant[0].type[0].coding[0].code", "ATND"),
    ("adt_a01.hl7", "Encounter.participant[1].type[0].coding[0].code", "REF"),
    ("adt_a01.hl7", "Encounter.participant[2].type[0].coding[0].code", "ADM"),
    ("adt_a01.hl7", "Encounter.location[0].status", "active"),
    ("adt_a01.hl7", "Encounter.reasonCode[0].coding[0].code", "CP"),
    ("adt_a01.hl7", "Encounter.hospitalization.admitSource.coding[0].code", "7"),
    ("adt_a02.hl7", "Encounter.location[1].status", "completed"),
    ("adt_a03.hl7", "Encounter.status", "finished"),
    ("adt_a03.hl7", "Encounter.period.end", "2024-03-18T14:00:00-05:00"),
    ("adt_a03.hl7", "Encounter.hospitalization.dischargeDisposition.coding[0].code", "01"),
    ("adt_a03.hl7", "Encounter.location[0].status", "completed"),
    ("adt_a04.hl7", "Encounter.status", "planned"),
    ("adt_a04.hl7", "Encounter.class.code", "AMB"),
    ("adt_a08.hl7", "Encounter.status", "in-progress"),
    ("adt_a11.hl7", "Encounter.status", "cancelled"),
    ("adt_a28.hl7", "Encounter", None),
    # the rest of the ADT_A01 structure
    ("adt_a01.hl7", "RelatedPerson.relationship[0].coding[0].code", "SPS"),
    ("adt_a01.hl7", "RelatedPerson.relationship[1].coding[0].code", "C"),
    ("adt_a01.hl7", "RelatedPerson.name[0].suffix", ["III"]),
    ("adt_a01.hl7", "AllergyIntolerance(70618).code.coding[0].system", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    ("adt_a01.hl7", "AllergyIntolerance(70618).category", ["medication"]),
    ("adt_a01.hl7", "AllergyIntolerance(70618).criticality", "high"),
    ("adt_a01.hl7", "AllergyIntolerance(70618).reaction[0].manifestation[0].text", "Hives&Rash"),
    ("adt_a01.hl7", "AllergyIntolerance(70618).reaction[0].manifestation[1].text", "Wheezing"),
    ("adt_a01.hl7", "AllergyIntolerance(70618).onsetDateTime", "2010-01-01"),
    # AL1-4 → reaction.severity too (AL1[AllergyIntolerance], AllergySeverity[reaction.severity])
    ("adt_a01.hl7", "AllergyIntolerance(70618).reaction[0].severity", "severe"),
    # DG1-6 → Encounter.diagnosis.use (DG1[Encounter], DiagnosisType: A → diagnosis-role AD)
    ("adt_a01.hl7", "Encounter.diagnosis[0].use.coding[0]",
     {"system": THO + "diagnosis-role", "code": "AD", "display": "Admission diagnosis"}),
    ("adt_a01.hl7", "Encounter.diagnosis[1].use.coding[0]", {"system": THO + "v2-0052", "code": "W"}),
    ("adt_a01.hl7", "AllergyIntolerance(256349002).category", ["food"]),
    ("adt_a01.hl7", "AllergyIntolerance(256349002).criticality", "low"),
    ("adt_a01.hl7", "Condition.code.coding[0].system", "http://hl7.org/fhir/sid/icd-10-cm"),
    ("adt_a01.hl7", "Condition.category[0].coding[0].code", "encounter-diagnosis"),
    ("adt_a01.hl7", "Condition.onsetDateTime", "2024-03-15"),
    ("adt_a01.hl7", "Coverage.status", "active"),
    ("adt_a01.hl7", "Coverage.subscriberId", "POL123456"),
    ("adt_a01.hl7", "Coverage.period", {"start": "2024-01-01", "end": "2024-12-31"}),
    ("adt_a01.hl7", "Coverage.payor[0].display", "Acme Health Insurance"),
    ("adt_a01.hl7", "Coverage.order", 1),
    ("adt_a01.hl7", "Coverage.class[0].value", "GRP778"),
    ("adt_a01.hl7", "Observation(8302-2).valueQuantity.value", 165.5),
    ("adt_a01.hl7", "Observation(29463-7).valueQuantity.value", Decimal("72.30")),
    ("adt_a01.hl7", "Observation(29463-7).valueQuantity.code", "kg"),
    ("adt_a01.hl7", "Practitioner.identifier[0].value", "004777"),
    ("adt_a01.hl7", "Practitioner.name[0].family", "Attend"),
    ("adt_a01.hl7", "Provenance.activity.coding[0].code", "A01"),
    ("adt_a01.hl7", "Provenance.recorded", "2024-03-15T08:30:00-05:00"),
    ("adt_a01.hl7", "Provenance.occurredDateTime", "2024-03-15T08:25:00-05:00"),
    ("adt_a01.hl7", "Provenance.entity[0].what.identifier.value", "msg-1"),
]


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_adt_values(name: str, path: str, expected: Any) -> None:
    assert pick(convert_sample(name).bundle, path) == expected


def test_requests_are_conditional_updates_keyed_by_business_identifiers() -> None:
    bundle = convert_sample("adt_a01.hl7").bundle
    requests = {e["resource"]["resourceType"]: e["request"] for e in bundle["entry"]}
    assert requests["Patient"] == {"method": "PUT", "url": "Patient?identifier=urn:ehrgate:id:GHH|MRN1001"}
    assert requests["Encounter"] == {"method": "PUT", "url": "Encounter?identifier=urn:ehrgate:id:GHH|V20240315-1"}
    assert requests["Practitioner"]["method"] == "POST" and "ifNoneExist" in requests["Practitioner"]
    assert requests["Provenance"]["method"] == "PUT" and requests["Provenance"]["url"].startswith("Provenance/")


def test_references_point_at_entries_of_the_bundle() -> None:
    bundle = convert_sample("adt_a01.hl7").bundle
    urls = {e["fullUrl"] for e in bundle["entry"]}
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert pick(bundle, "Encounter.subject.reference") == patient_url
    assert pick(bundle, "Encounter.diagnosis[0].condition.reference") in urls
    provenance = resources(bundle, "Provenance")[0]
    assert {t["reference"] for t in provenance["target"]} <= urls
    assert patient_url in {t["reference"] for t in provenance["target"]}


def test_unused_segments_and_fields_are_counted() -> None:
    result = convert_sample("adt_a01.hl7")
    assert result.ignored_segments == {"ZPI": 1}
    assert not result.ignored_fields  # PID-18 is the Account now
    extra = convert_sample("adt_a03_procedure.hl7")
    assert extra.ignored_segments == {"ROL": 2}  # a non-PP role after PID, and a deleted role (ROL-2 DE)
    assert extra.ignored_fields == {"ROL-1": 4}  # role instance IDs: the IG's PractitionerRole.identifier
    assert result.message_type == "ADT^A01"
    assert result.control_id == "A01-0001"


def test_merge_links_survivor_and_merged_patient() -> None:
    bundle = convert_sample("adt_a40.hl7").bundle
    survivor = next(e for e in bundle["entry"] if e["request"].get("ifNoneExist") == "identifier=urn:ehrgate:id:GHH|MRN2002")
    merged = next(e for e in bundle["entry"] if e["request"].get("ifNoneExist") == "identifier=urn:ehrgate:id:GHH|MRN2999")
    assert merged["resource"]["name"][0]["family"] == "Everyman"
    patches = {e["request"]["url"]: json.loads(base64.b64decode(e["resource"]["data"]))
               for e in bundle["entry"] if e["request"]["method"] == "PATCH"}
    assert patches["Patient?identifier=urn:ehrgate:id:GHH|MRN2002"] == [
        {"op": "add", "path": "/active", "value": True},
        {"op": "add", "path": "/link", "value": [{"other": {"reference": merged["fullUrl"]}, "type": "replaces"}]}]
    assert patches["Patient?identifier=urn:ehrgate:id:GHH|MRN2999"] == [
        {"op": "add", "path": "/active", "value": False},
        {"op": "add", "path": "/link", "value": [{"other": {"reference": survivor["fullUrl"]}, "type": "replaced-by"}]}]


def test_bad_birth_date_names_the_field() -> None:
    with pytest.raises(ConversionError) as info:
        convert_sample("adt_bad_dob.hl7")
    assert str(info.value) == "PID-7: '1983021' is not a valid HL7 date (expected YYYY[MM[DD[HH[MM[SS]]]]])"
    assert info.value.location is not None
    assert (info.value.location.segment, info.value.location.field) == ("PID", 7)
    assert info.value.code == 102


def test_every_sample_is_valid_and_loads(store: Any) -> None:
    for name in ("adt_a01.hl7", "adt_a02.hl7", "adt_a03.hl7", "adt_a04.hl7", "adt_a08.hl7", "adt_a11.hl7",
                 "adt_a28.hl7", "adt_a40.hl7"):
        bundle = convert_sample(name).bundle
        assert errors(bundle) == [], name
        load(store, bundle)


def test_visit_lifecycle_updates_one_encounter(store: Any) -> None:
    for name in ("adt_a01.hl7", "adt_a02.hl7", "adt_a03.hl7"):
        load(store, convert_sample(name).bundle)
    encounters = current(store, "Encounter")
    assert len(encounters) == 1
    assert encounters[0]["status"] == "finished"
    assert encounters[0]["meta"]["versionId"] == "3"
    assert len(current(store, "Patient")) == 1


def test_merge_in_the_store(store: Any) -> None:
    load(store, convert_sample("adt_a04.hl7").bundle)
    load(store, convert_sample("adt_a40.hl7").bundle)
    survivor = current(store, "Patient", "identifier=urn:ehrgate:id:GHH|MRN2002")
    merged = current(store, "Patient", "identifier=urn:ehrgate:id:GHH|MRN2999")
    assert len(survivor) == len(merged) == 1
    assert survivor[0]["link"][0] == {"other": {"reference": f"Patient/{merged[0]['id']}"}, "type": "replaces"}
    assert merged[0]["link"][0] == {"other": {"reference": f"Patient/{survivor[0]['id']}"}, "type": "replaced-by"}
    assert merged[0]["active"] is False
    # the survivor keeps its demographics from the A04
    assert survivor[0]["address"][0]["city"] == "Springfield"


# -- PR1, ROL/PRT, GT1, IN2, PID-18 (adt_a03_procedure.hl7) ------------------------------------------

SNOMED = "http://snomed.info/sct"
EXTRA: list[tuple[str, Any]] = [
    # PR1 → Procedure (PR1[Procedure])
    ("Procedure.identifier[0].value", "PROC-3003-1"),
    ("Procedure.status", "unknown"),
    ("Procedure.code.coding[0].code", "0DTJ4ZZ"),
    ("Procedure.code.text", "Laparoscopic appendectomy"),
    ("Procedure.category.coding[0].code", "A"),
    ("Procedure.performedPeriod", {"start": "2024-04-06T10:30:00-05:00", "end": "2024-04-06T11:25:00-05:00"}),
    ("Procedure.performer[0].function.coding[0]", {"system": SNOMED, "code": "88189002", "display": "Anesthesiologist"}),
    ("Procedure.performer[0].actor.display", "Dr Greta Gas"),
    ("Procedure.performer[1].function.coding[0].code", "304292004"),
    ("Procedure.performer[1].actor.display", "Dr Sam Cutter"),
    ("Procedure.performer[2].function.coding[0].code", "SASST"),  # the ROL after PR1
    ("Procedure.performer[2].actor.display", "Dr Carl Consult"),
    ("Procedure.reasonCode[0].coding[0].code", "K35.80"),
    ("Procedure.location.display", "2"),
    # ROL after PID (PP) → Patient.generalPractitioner; after PV1 → Encounter.participant
    ("Patient.generalPractitioner", [{"reference": "*", "display": "Dr Fiona Family"}]),
    ("Encounter.participant[1].type[0].coding[0].code", "AT"),
    ("Encounter.participant[1].period", {"start": "2024-04-05T08:00:00-05:00", "end": "2024-04-10T08:30:00-05:00"}),
    ("Encounter.participant[2].individual.display", "Dr Carl Consult"),
    ("Encounter.participant[3]", None),  # ROL-2 DE: deleted
    # PID-18 + GT1 → Account
    ("Account.identifier[0].value", "ACCT-3003"),
    ("Account.identifier[0].type.coding[0].code", "AN"),
    ("Account.status", "active"),
    ("Account.guarantor[0].party.display", "Eve Elaine Everywoman"),
    ("Account.guarantor[0].period.start", "2024-01-01"),
    ("Account.coverage[0].priority", 1),
    # IN1-16..19 → Coverage.subscriber; IN2 → more identifiers
    ("Coverage.subscriber.display", "Eve Elaine Everywoman"),
    ("Coverage.identifier[1].type.coding[0].code", "MC"),
    ("Coverage.identifier[1].value", "1EG4-TE5-MK72"),
    ("Coverage.identifier[2].value", "MCD-55"),
]


@pytest.mark.parametrize(("path", "expected"), EXTRA, ids=[p for p, _ in EXTRA])
def test_procedure_roles_guarantor_insurance(path: str, expected: Any) -> None:
    bundle = convert_sample("adt_a03_procedure.hl7").bundle
    got = pick(bundle, path)
    if isinstance(expected, list) and expected and expected[0].get("reference") == "*":
        got = [{**g, "reference": "*"} for g in got]
    assert got == expected


def test_guarantors_and_subscriber_point_at_the_right_people() -> None:
    bundle = convert_sample("adt_a03_procedure.hl7").bundle
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    account = resources(bundle, "Account")[0]
    guarantor, self_pay = account["guarantor"]
    assert self_pay["party"] == {"reference": urls["Patient"]}  # GT1-11 SEL
    spouse = next(r for r in resources(bundle, "RelatedPerson") if r.get("identifier"))
    assert guarantor["party"]["reference"].endswith(spouse["id"])
    assert spouse["identifier"][0]["value"] == "G-77" and spouse["telecom"][0]["use"] == "home"
    assert account["coverage"][0]["coverage"]["reference"] == urls["Coverage"]
    assert account["subject"] == [{"reference": urls["Patient"]}]
    assert not errors(bundle)


def test_person_only_events_write_no_account() -> None:
    assert resources(convert_sample("adt_a28.hl7").bundle, "Account") == []


def test_swap_moves_each_visit_to_the_other_bed() -> None:
    """A17 (IG ADT_A17): each PID/PV1 group updates its patient's Encounter with its new bed."""
    bundle = convert_sample("adt_a17.hl7").bundle
    assert not errors(bundle)
    beds = {e["identifier"][0]["value"]: (e["status"], [loc["location"]["display"] for loc in e["location"]])
            for e in resources(bundle, "Encounter")}
    assert beds == {"V20240315-1": ("in-progress", ["A", "B"]), "V20240318-7": ("in-progress", ["B", "A"])}
    assert [e["request"]["method"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"] == [
        "PUT", "PUT"]
    broken = sample("adt_a17.hl7").split(b"\rPID|2")[0] + b"\r"
    with pytest.raises(ConversionError, match="^PID: missing .ADT.A17 needs two PID/PV1 groups"):
        convert(parse(broken), OPTIONS)


def _corpus_message(*parts: str) -> bytes:
    from ehrgate.hl7 import read_batch
    from tests.conftest import corpus_dir

    return read_batch(corpus_dir("hl7v2", *parts).read_bytes()).messages[0].encode()


def test_corpus_procedure_and_guarantor() -> None:
    """Corpus messages (read at test time, skipped without ../shared): HAPI's ADT^A03 with a PR1 and
    Google's ADT^A08 with a GT1."""
    procedure = convert(parse(_corpus_message("hapi-hl7v2", "parser", "adt_a03.txt")), OPTIONS).bundle
    assert not errors(procedure)
    assert pick(procedure, "Procedure.code") == {"coding": [{"code": "1111", "display": "Mastoplastica"}],
                                                "text": "Protesi"}
    assert pick(procedure, "Procedure.performedDateTime") == "2009-02-24"
    assert pick(procedure, "Procedure.status") == "unknown"
    guarantor = convert(parse(_corpus_message("google-hdh-whistle", "adt_a08_ex1.hl7")), OPTIONS).bundle
    assert not errors(guarantor)
    assert pick(guarantor, "Account.identifier[0].value") == "151"
    party = pick(guarantor, "Account.guarantor[0].party")
    person = next(e["resource"] for e in guarantor["entry"] if e["fullUrl"] == party["reference"])
    assert person["resourceType"] == "RelatedPerson" and person["birthDate"] == "1977-09-20"
    assert person["identifier"][0]["value"] == "150"


def test_an_update_without_guarantors_keeps_the_account(store: Any) -> None:
    """PID-18 alone (no GT1/IN1) only makes sure the Account exists: an A08 after the A03 does not
    erase the guarantors and coverage the A03 sent."""
    load(store, convert_sample("adt_a03_procedure.hl7").bundle)
    update = b"\r".join(line for line in sample("adt_a03_procedure.hl7").split(b"\r")
                        if not line.startswith((b"GT1", b"IN1", b"IN2")))
    bundle = convert(parse(update.replace(b"ADT^A03^ADT_A03|A03-PR1-1", b"ADT^A08^ADT_A01|A08-PR1-2")), OPTIONS).bundle
    assert [e["request"]["method"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Account"] == ["POST"]
    load(store, bundle)
    accounts = current(store, "Account")
    assert len(accounts) == 1 and len(accounts[0]["guarantor"]) == 2 and accounts[0]["coverage"]


def test_practitioner_degree_is_a_qualification() -> None:
    """XCN-7 (degree) → Practitioner.qualification.code (XCN[Practitioner], DegreeLicenseCertificate)."""
    bundle = convert_sample("adt_a01.hl7").bundle
    attending = next(p for p in resources(bundle, "Practitioner") if p["identifier"][0]["value"] == "004777")
    assert attending["qualification"] == [{"code": {"coding": [{"system": THO + "v2-0360", "code": "MD"}]}}]
    referrer = next(p for p in resources(bundle, "Practitioner") if p["identifier"][0]["value"] == "005111")
    assert "qualification" not in referrer


def test_next_of_kin_social_security_number() -> None:
    """NK1-37 → RelatedPerson.identifier, system us-ssn, type SS (NK1[RelatedPerson])."""
    raw = sample("adt_a01.hl7").replace(b"|C^Emergency Contact^HL70131\r",
                                        b"|C^Emergency Contact^HL70131" + b"|" * 30 + b"123-45-6789\r")
    assert parse(raw).get("NK1-37") == "123-45-6789"
    result = convert(parse(raw), OPTIONS)
    assert pick(result.bundle, "RelatedPerson.identifier") == [
        {"type": {"coding": [{"system": THO + "v2-0203", "code": "SS"}]}, "system": "http://hl7.org/fhir/sid/us-ssn",
         "value": "123-45-6789"}]
    assert not result.ignored_fields


def test_pv2_visit_details() -> None:
    """PV2 → Encounter (PV2[Encounter]): PV2-11 length of stay in days, PV2-13 referral source a
    referrer participant, PV2-25 priority (EncounterPriority → v3-ActPriority), PV2-38 mode of arrival."""
    fields = {3: "CP^Chest pain^L", 11: "4", 13: "0099^Source^Sam", 25: "2", 38: "A^Ambulance^HL70430"}
    pv2 = "|".join(["PV2", *(fields.get(n, "") for n in range(1, 39))]).encode()
    raw = sample("adt_a01.hl7").replace(b"PV2|||CP^Chest pain^L", pv2)
    msg = parse(raw)
    assert (msg.get("PV2-11"), msg.get("PV2-13.1"), msg.get("PV2-25"), msg.get("PV2-38")) == ("4", "0099", "2", "A")
    result = convert(msg, OPTIONS)
    visit = pick(result.bundle, "Encounter")
    assert visit["length"] == {"value": 4, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}
    assert visit["priority"] == {"coding": [{"system": THO + "v3-ActPriority", "code": "UR", "display": "urgent"}]}
    referrer = [p for p in visit["participant"] if p["individual"].get("display") == "Sam Source"]
    assert referrer and referrer[0]["type"][0]["coding"][0]["code"] == "REF"
    assert visit["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival",
                                   "valueCoding": {"system": THO + "v2-0430", "code": "A", "display": "Ambulance"}}]
    assert visit["reasonCode"][0]["coding"][0]["code"] == "CP"
    assert not errors(result.bundle)
    assert not [f for f in result.ignored_fields if f.startswith("PV2")]


def test_insurance_company_address() -> None:
    """IN1-5 → the payor Organization's address (IN1[Coverage]: payer(Organization.address), XAD)."""
    raw = sample("adt_a01.hl7").replace(b"|Acme Health Insurance||", b"|Acme Health Insurance|PO Box 500^^Hartford^CT^06101^USA^B|")
    result = convert(parse(raw), OPTIONS)
    payor = pick(result.bundle, "Coverage.payor[0].reference")
    insurer = next(e["resource"] for e in result.bundle["entry"] if e["fullUrl"] == payor)
    assert insurer["address"] == [{"use": "work", "line": ["PO Box 500"], "city": "Hartford", "state": "CT",
                                   "postalCode": "06101", "country": "USA"}]
    assert "IN1-5" not in result.ignored_fields


def test_citizenship_and_nationality() -> None:
    """PID-26 citizenship, PID-39 tribal citizenship → patient-citizenship; PID-28 nationality →
    patient-nationality (PID[Patient]: extension.extension 'code' valueCodeableConcept)."""
    pid = parse(sample("adt_a01.hl7")).segments[2]
    assert pid.name == "PID"
    fields = {26: "USA^United States^ISO3166_1~CAN^Canada^ISO3166_1", 28: "USA^United States^ISO3166_1",
              39: "170^Navajo Nation^HL70171"}
    old = sample("adt_a01.hl7").split(b"\r")[2]
    parts = old.split(b"|") + [b""] * 15
    for n, value in fields.items():
        parts[n] = value.encode()
    raw = sample("adt_a01.hl7").replace(old, b"|".join(parts[:40]))
    result = convert(parse(raw), OPTIONS)
    exts = {e["url"].rsplit("/", 1)[1]: e for e in pick(result.bundle, "Patient.extension")}
    iso = "urn:iso:std:iso:3166"
    assert [e["extension"] for e in pick(result.bundle, "Patient.extension")
            if e["url"].endswith("patient-citizenship")] == [
        [{"url": "code", "valueCodeableConcept": {"coding": [{"system": iso, "code": "USA", "display": "United States"}]}}],
        [{"url": "code", "valueCodeableConcept": {"coding": [{"system": iso, "code": "CAN", "display": "Canada"}]}}],
        [{"url": "code", "valueCodeableConcept": {"coding": [{"system": THO + "v2-0171", "code": "170",
                                                                  "display": "Navajo Nation"}]}}]]
    assert exts["patient-nationality"]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "USA"
    assert not errors(result.bundle)
    assert not [f for f in result.ignored_fields if f in ("PID-26", "PID-28", "PID-39")]


def test_free_text_fields_keep_an_unescaped_ampersand() -> None:
    """ST fields (DG1-4 description, PID-23 birth place) hold text: a '&' the sender did not escape
    is part of it, not a subcomponent separator to cut at."""
    raw = (sample("adt_a01.hl7")
           .replace(b"DG1|1||I10^Essential (primary) hypertension^I10C|", b"DG1|1|||Hypertension & CKD stage 3|")
           .replace(b"|Greensboro NC|", b"|Greensboro & Guilford NC|"))
    bundle = convert(parse(raw), OPTIONS).bundle
    assert [c["code"].get("text") for c in resources(bundle, "Condition")].count("Hypertension & CKD stage 3") == 1
    birth_place = [e for e in pick(bundle, "Patient.extension") if e["url"].endswith("patient-birthPlace")]
    assert birth_place[0]["valueAddress"] == {"text": "Greensboro & Guilford NC"}


@pytest.mark.parametrize(("pid15", "expected"), [
    ("en^English", {"system": "urn:ietf:bcp:47", "code": "en", "display": "English"}),
    ("es-MX", {"system": "urn:ietf:bcp:47", "code": "es-MX"}),
    ("ENG^English^L", {"system": "urn:ehrgate:codesystem:L", "code": "ENG", "display": "English"}),
    ("SPA^Spanish", {"system": THO + "v2-0296", "code": "SPA", "display": "Spanish"}),
])
def test_language_without_a_coding_system(pid15: str, expected: dict[str, Any]) -> None:
    """PID-15 → communication.language (PID[Patient], PrimaryLanguage: BCP-47 codes): a language tag
    sent without a coding system is BCP-47, not a code of the user-defined table 0296."""
    raw = sample("adt_a01.hl7").replace(b"|en^English^ISO639|", f"|{pid15}|".encode())
    assert pick(convert(parse(raw), OPTIONS).bundle, "Patient.communication[0].language.coding[0]") == expected


def _by_type(bundle: dict[str, Any], rtype: str, url: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == url and e["resource"]["resourceType"] == rtype)


def test_event_reason_operator_and_facility_go_to_the_provenance() -> None:
    """EVN[Provenance]: EVN-4 → reason (EventReason), EVN-5 → agent.who, EVN-7 → location (HD[Location])."""
    bundle = convert_sample("adt_a04_details.hl7").bundle
    provenance = resources(bundle, "Provenance")[0]
    assert provenance["reason"] == [{"coding": [{"system": THO + "v3-ActReason", "code": "PATRQT",
                                                 "display": "patient requested"}]}]
    operator = provenance["agent"][1]
    assert operator["type"]["coding"][0]["code"] == "enterer"
    assert operator["who"]["display"] == "Olga Operator"
    assert _by_type(bundle, "Practitioner", operator["who"]["reference"])["identifier"][0]["value"] == "OP77"
    site = _by_type(bundle, "Location", provenance["location"]["reference"])
    assert site["identifier"] == [{"system": "urn:ehrgate:location", "value": "GHH"}]
    assert site["physicalType"]["coding"][0]["code"] == "si"
    assert not errors(bundle)


def test_unknown_event_reason_is_a_data_absent_reason() -> None:
    raw = sample("adt_a04_details.hl7").replace(b"||01|OP77", b"||U|OP77")
    provenance = resources(convert(parse(raw), OPTIONS).bundle, "Provenance")[0]
    assert provenance["reason"] == [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                                    "valueCode": "unknown"}]}]


def test_handicap_and_place_of_worship() -> None:
    """PD1[Patient]: PD1-6 → patient-disability, PD1-14 → patient-congregation (XON[string])."""
    result = convert_sample("adt_a04_details.hl7")
    extensions = {e["url"].rsplit("-", 1)[1]: e for e in pick(result.bundle, "Patient.extension")}
    assert extensions["disability"]["valueCodeableConcept"]["coding"][0]["code"] == "WCH"
    assert extensions["congregation"]["valueString"] == "St Mary Parish"
    assert not result.ignored_fields


def test_expected_admit_discharge_and_visit_description() -> None:
    """PV2[Encounter]: PV2-8/PV2-9 → the R5 plannedStartDate/plannedEndDate extensions, PV2-12 → text.div."""
    result = convert_sample("adt_a04_details.hl7")
    encounter = pick(result.bundle, "Encounter")
    planned = {e["url"].rsplit(".", 1)[1]: e["valueDateTime"] for e in encounter["extension"]}
    assert planned == {"plannedStartDate": "2024-04-05T08:00:00-05:00", "plannedEndDate": "2024-04-08T12:00:00-05:00"}
    assert encounter["text"] == {"status": "additional", "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                                                                "Knee replacement &amp; rehab &lt;left&gt;</div>"}
    assert not errors(result.bundle) and not result.ignored_fields


def test_street_name_dwelling_number_and_addressee() -> None:
    """XAD[Address]: SAD.1-3 → line[1-3] (a street name or number SAD.1 already holds is not repeated),
    XAD.2 → line[4], XAD.19 addressee → line[5]."""
    addresses = pick(convert_sample("adt_a04_details.hl7").bundle, "Patient.address")
    assert addresses[0]["line"] == ["12 Main Street", "Apt 4"]
    assert addresses[1]["line"] == ["Elm Road", "9", "Billing Office"]


def test_details_sample_loads(store: Any) -> None:
    load(store, convert_sample("adt_a04_details.hl7").bundle)
    load(store, convert_sample("adt_a04_details.hl7").bundle)
    assert len(current(store, "Location", "identifier=urn:ehrgate:location|GHH")) == 1
    assert len(current(store, "Provenance")) == 1

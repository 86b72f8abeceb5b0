"""extract.py: the index rows each resource yields (R4 search.html#ptypes), table-driven.

The sample resources are our own; each case lists the exact rows one parameter must produce.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from ehrgate.fhir.search.extract import _parse_reference, extract_index
from ehrgate.fhir.search.normalize import DATE_MAX, DATE_MIN, parse_fhir_date_range
from ehrgate.fhir.search.types import (
    CompositeRow,
    DateRow,
    IndexRows,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OMB = "urn:oid:2.16.840.1.113883.6.238"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
US_SD = "http://hl7.org/fhir/us/core/StructureDefinition/"

# --- row builders for the expectation tables (param filled in by the test) ----------------------

Spec = Callable[[str], Any]


def T(system: str | None, code: str | None, text: str | None = None, ts: str | None = None,
      tc: str | None = None) -> Spec:
    return lambda p: TokenRow(p, system, code, text, ts, tc)


def S(norm: str, exact: str) -> Spec:
    return lambda p: StringRow(p, norm, exact)


def R(target_type: str | None, target_id: str | None, url: str | None = None) -> Spec:
    return lambda p: ReferenceRow(p, target_type, target_id, url)


def D(low: str | int, high: str | int | None = None) -> Spec:
    """A date row: ``low``/``high`` are FHIR dates (their range's low / high end) or sentinels."""
    lo = low if isinstance(low, int) else parse_fhir_date_range(low)[0]
    hi_text = low if high is None else high
    hi = hi_text if isinstance(hi_text, int) else parse_fhir_date_range(hi_text)[1]
    return lambda p: DateRow(p, lo, hi)


def Q(value: float, system: str | None, code: str | None, unit: str | None) -> Spec:
    return lambda p: QuantityRow(p, value, system, code, unit)


def N(value: float) -> Spec:
    return lambda p: NumberRow(p, value)


def U(uri: str) -> Spec:
    return lambda p: UriRow(p, uri)


def C(system: str, code: str, **value: Any) -> Spec:
    return lambda p: CompositeRow(p, system, code, **value)


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def cc(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], **({"text": text} if text else {})}


# --- sample resources ---------------------------------------------------------------------------

SAMPLES: dict[str, dict[str, Any]] = {
    "Patient": {
        "resourceType": "Patient", "id": "p1",
        "meta": {
            "lastUpdated": "2024-01-02T03:04:05.678Z", "source": "http://ex.org/feed#a1",
            "profile": [f"{US_SD}us-core-patient|6.1.0"],
            "tag": [{"system": "http://ex.org/tags", "code": "t1", "display": "Tag One"}],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        },
        "extension": [
            {"url": f"{US_SD}us-core-race", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": OMB, "code": "2106-3", "display": "White"}},
                {"url": "detailed", "valueCoding": {"system": OMB, "code": "2108-9", "display": "European"}},
                {"url": "text", "valueString": "White"}]},
            {"url": f"{US_SD}us-core-ethnicity", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": OMB, "code": "2186-5"}}]},
            {"url": f"{US_SD}us-core-genderIdentity", "valueCodeableConcept": cc(SCT, "446141000124107")},
            {"url": "http://ex.org/other", "valueString": "ignored"},
        ],
        "identifier": [{"use": "usual", "type": cc(V2_0203, "MR", text="Medical Record Number"),
                        "system": "http://hospital.example.org/mrn", "value": "12345"}],
        "active": True,
        "name": [{"use": "official", "family": "Núñez", "given": ["María", "José"], "prefix": ["Dr."],
                  "suffix": ["PhD"]}, {"text": "Maria  Nunez"}],
        "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "home"},
                    {"system": "email", "value": "maria@example.org"}],
        "gender": "female",
        "birthDate": "1970-03-04",
        "deceasedDateTime": "2020-01-01T10:00:00-05:00",
        "address": [{"use": "home", "line": ["12 Rue de l'Église"], "city": "Montréal", "state": "QC",
                     "postalCode": "H2X 1Y4", "country": "CA"}],
        "communication": [{"language": cc("urn:ietf:bcp:47", "fr", text="French")}],
        "generalPractitioner": [ref("Practitioner/pr1"), ref("Organization/o1")],
        "managingOrganization": ref("Organization/o1"),
        "link": [{"other": ref("Patient/p0"), "type": "replaces"}, {"other": ref("RelatedPerson/rp1"), "type": "seealso"}],
    },
    "Observation": {  # a blood pressure panel: components, no value of its own
        "resourceType": "Observation", "id": "bp1", "status": "final",
        "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs")],
        "code": cc(LOINC, "85354-9", "Blood pressure panel", text="BP"),
        "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1"),
        "effectivePeriod": {"start": "2024-03-01T09:30:00+01:00"},
        "performer": [ref("Practitioner/pr1"), ref("Patient/p1")],
        "component": [
            {"code": cc(LOINC, "8480-6", "Systolic"), "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": cc(LOINC, "8462-4", "Diastolic"), "valueQuantity": {"value": 80.5, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
        ],
    },
    "Observation/string": {
        "resourceType": "Observation", "id": "o2", "status": "final", "code": cc(LOINC, "72166-2"),
        "subject": ref("Group/g1"), "valueString": "Never  Smoker", "effectiveDateTime": "2023",
    },
    "Observation/concept": {
        "resourceType": "Observation", "id": "o3", "status": "amended", "code": cc(LOINC, "72166-2"),
        "subject": ref("https://other.example/fhir/Patient/77/_history/2"),
        "valueCodeableConcept": cc(SCT, "8517006", "Ex-smoker"),
        "effectiveTiming": {"event": ["2024-01-01", "2024-02-01T10:00:00Z"]},
        "hasMember": [ref("Observation/o2"), ref("#contained"), {"identifier": {"value": "x"}}],
    },
    "Observation/quantity": {
        "resourceType": "Observation", "id": "o4", "status": "final", "code": cc(LOINC, "8302-2", "Body height"),
        "subject": ref("urn:uuid:5d4b3c2a-0000-4000-8000-000000000001"),
        "valueQuantity": {"value": 182.5, "unit": "cm", "system": UCUM, "code": "cm"},
        "effectiveDateTime": "not a date",
    },
    "Encounter": {
        "resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [cc(SCT, "185349003", "Encounter for check up")],
        "identifier": [{"system": "http://ex.org/visits", "value": "V-1"}],
        "subject": ref("Patient/p1"),
        "participant": [{"individual": ref("Practitioner/pr1")}, {"individual": ref("RelatedPerson/rp1")}],
        "period": {"start": "2024-03-01T09:00:00Z", "end": "2024-03-01T10:00:00Z"},
        "length": {"value": 60, "unit": "min", "system": UCUM, "code": "min"},
        "hospitalization": {"dischargeDisposition": cc("http://terminology.hl7.org/CodeSystem/discharge-disposition", "home")},
        "location": [{"location": ref("Location/l1")}],
        "serviceProvider": ref("Organization/o1"),
    },
    "Condition": {
        "resourceType": "Condition", "id": "c1",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/condition-assertedDate", "valueDateTime": "2019-05-30"}],
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved"),
        "category": [cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")],
        "code": cc(SCT, "44054006", "Diabetes mellitus type 2"),
        "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1"), "asserter": ref("Practitioner/pr1"),
        "onsetDateTime": "2019", "abatementPeriod": {"start": "2020-01", "end": "2020-02-15"},
        "recordedDate": "2019-06-01T10:00:00Z",
    },
    "DiagnosticReport": {
        "resourceType": "DiagnosticReport", "id": "dr1", "status": "final",
        "category": [cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")], "code": cc(LOINC, "58410-2", "CBC panel"),
        "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1"), "effectiveDateTime": "2024-03-01",
        "issued": "2024-03-02T08:00:00.000+00:00", "performer": [ref("Organization/o1")], "result": [ref("Observation/o4")],
    },
    "AllergyIntolerance": {
        "resourceType": "AllergyIntolerance", "id": "a1",
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
        "code": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "7980", "Penicillin G"),
        "patient": ref("Patient/p1"), "recorder": ref("Practitioner/pr1"), "asserter": ref("Patient/p1"),
        "criticality": "high", "recordedDate": "2020-05-05",
        "reaction": [{"substance": cc(SCT, "764146007", "Penicillin"), "manifestation": [cc(SCT, "247472004", "Hives")],
                      "severity": "moderate"}],
    },
    "MedicationRequest": {
        "resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
        "medicationCodeableConcept": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "1049502", text="Oxycodone"),
        "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1"), "authoredOn": "2024-03-01",
        "requester": ref("PractitionerRole/prr1"),
        "dosageInstruction": [{"timing": {"event": ["2024-03-02T08:00:00Z", "2024-03-02T20:00:00Z"]}}],
    },
    "Medication": {
        "resourceType": "Medication", "id": "m1", "status": "active", "code": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "206765"),
        "batch": {"lotNumber": "L-9", "expirationDate": "2025-06"},
        "ingredient": [{"itemReference": ref("Medication/m2")}, {"itemCodeableConcept": cc(SCT, "387458008")}],
    },
    "Immunization": {
        "resourceType": "Immunization", "id": "i1", "status": "completed",
        "vaccineCode": cc("http://hl7.org/fhir/sid/cvx", "140", "Influenza"), "patient": ref("Patient/p1"),
        "occurrenceDateTime": "2023-10-10T14:00:00Z", "lotNumber": "AB12",
        "performer": [{"actor": ref("Practitioner/pr1")}],
        "protocolApplied": [{"series": "Primary", "targetDisease": [cc(SCT, "6142004")], "doseNumberPositiveInt": 1}],
    },
    "Procedure": {
        "resourceType": "Procedure", "id": "pr-1", "status": "completed", "code": cc(SCT, "80146002", "Appendectomy"),
        "subject": ref("Patient/p1"), "performedPeriod": {"start": "2024-01-05T10:00:00Z", "end": "2024-01-05T11:30:00Z"},
        "performer": [{"actor": ref("Patient/p1")}],
        "instantiatesCanonical": ["http://ex.org/fhir/PlanDefinition/pd1|2.0"],
    },
    "DocumentReference": {
        "resourceType": "DocumentReference", "id": "d1", "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"},
        "identifier": [{"system": "http://ex.org/docs", "value": "D-1"}],
        "type": cc(LOINC, "18842-5", "Discharge summary"),
        "category": [cc("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note")],
        "subject": ref("Patient/p1"), "date": "2024-03-03T12:00:00Z", "author": [ref("Practitioner/pr1")],
        "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/b1"}}],
        "context": {"encounter": [ref("Encounter/e1")], "period": {"end": "2024-03-02"}},
    },
    "CarePlan": {
        "resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan",
        "category": [cc("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan")],
        "subject": ref("Patient/p1"), "period": {"start": "2024-01-01"},
        "activity": [{"detail": {"status": "scheduled", "code": cc(SCT, "229065009"),
                                 "scheduledPeriod": {"start": "2024-02-01", "end": "2024-02-28"},
                                 "performer": [ref("Patient/p1"), ref("Practitioner/pr1")]}}],
    },
    "CareTeam": {
        "resourceType": "CareTeam", "id": "ct1", "status": "active", "subject": ref("Patient/p1"),
        "participant": [{"role": [cc(SCT, "17561000", "Cardiologist")], "member": ref("Practitioner/pr1")},
                        {"member": ref("Patient/p1")}],
    },
    "Goal": {
        "resourceType": "Goal", "id": "g1", "lifecycleStatus": "active", "description": {"text": "Lose weight"},
        "subject": ref("Patient/p1"), "startDate": "2024-01-01", "target": [{"dueDate": "2024-12-31"}],
    },
    "Device": {
        "resourceType": "Device", "id": "dv1", "status": "active", "patient": ref("Patient/p1"),
        "udiCarrier": [{"deviceIdentifier": "09504000059118", "carrierHRF": "(01)09504000059118"}],
        "type": cc(SCT, "468063009", "Coated femoral stem prosthesis"), "manufacturer": "Acme",
        "deviceName": [{"name": "Hip Stem", "type": "user-friendly-name"}],
    },
    "Coverage": {
        "resourceType": "Coverage", "id": "cv1", "status": "active", "beneficiary": ref("Patient/p1"),
        "subscriber": ref("RelatedPerson/rp1"), "policyHolder": ref("Patient/p1"), "payor": [ref("Organization/o9")],
        "class": [{"type": cc("http://terminology.hl7.org/CodeSystem/coverage-class", "group"), "value": "GRP-1"}],
    },
    "ServiceRequest": {
        "resourceType": "ServiceRequest", "id": "s1", "status": "active", "intent": "order",
        "code": cc(LOINC, "24323-8"), "subject": ref("Patient/p1"), "authoredOn": "2024-03-01T08:00:00Z",
        "occurrenceTiming": {"event": ["2024-03-05"]}, "performer": [ref("Practitioner/pr1")],
        "requisition": {"system": "http://ex.org/req", "value": "R-7"},
    },
    "Specimen": {
        "resourceType": "Specimen", "id": "sp1", "status": "available", "subject": ref("Patient/p1"),
        "accessionIdentifier": {"system": "http://ex.org/acc", "value": "A-1"},
        "collection": {"collector": ref("PractitionerRole/prr1"), "collectedDateTime": "2024-03-01T07:45:00Z"},
    },
    "Provenance": {
        "resourceType": "Provenance", "id": "pv1", "target": [ref("Observation/bp1"), ref("Patient/p1")],
        "recorded": "2024-03-01T10:00:00Z",
        "agent": [{"type": cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author"),
                   "who": ref("Practitioner/pr1")}],
        "entity": [{"role": "source", "what": ref("DocumentReference/d1")}],
    },
    "RelatedPerson": {
        "resourceType": "RelatedPerson", "id": "rp1", "patient": ref("Patient/p1"),
        "relationship": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "NIECE")],
        "name": [{"family": "Shaw", "given": ["Bett"]}],
    },
    "QuestionnaireResponse": {
        "resourceType": "QuestionnaireResponse", "id": "qr1", "status": "completed",
        "questionnaire": "http://ex.org/fhir/Questionnaire/phq-9|1.0", "subject": ref("Patient/p1"),
        "authored": "2024-03-01T09:00:00Z", "author": ref("Patient/p1"),
    },
    "Appointment": {
        "resourceType": "Appointment", "id": "ap1", "status": "booked", "start": "2024-04-01T09:00:00Z",
        "participant": [{"actor": ref("Patient/p1"), "status": "accepted"},
                        {"actor": ref("Practitioner/pr1"), "status": "tentative"},
                        {"actor": ref("Location/l1"), "status": "accepted"}],
    },
    "Slot": {
        "resourceType": "Slot", "id": "sl1", "schedule": ref("Schedule/sc1"), "status": "free",
        "start": "2024-04-01T09:00:00Z", "end": "2024-04-01T09:15:00Z",
    },
    "Schedule": {
        "resourceType": "Schedule", "id": "sc1", "active": False, "actor": [ref("Practitioner/pr1")],
        "planningHorizon": {"start": "2024-04-01", "end": "2024-04-30"},
    },
    "Task": {
        "resourceType": "Task", "id": "t1", "status": "requested", "intent": "order", "for": ref("Patient/p1"),
        "owner": ref("Organization/o1"), "focus": ref("ServiceRequest/s1"), "lastModified": "2024-03-01T10:00:00Z",
    },
    "Group": {
        "resourceType": "Group", "id": "gr1", "type": "person", "actual": True,
        "member": [{"entity": ref("Patient/p1")}, {"entity": ref("Patient/p2")}],
        "characteristic": [{"code": cc(SCT, "263495000", "Gender"), "valueCodeableConcept": cc(SCT, "248152002", "Female"),
                            "exclude": False}],
    },
    "Binary": {"resourceType": "Binary", "id": "b1", "contentType": "text/plain", "data": "aGk="},
    "AuditEvent": {
        "resourceType": "AuditEvent", "id": "ae1", "recorded": "2024-03-01T10:00:00Z", "action": "R",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "agent": [{"who": ref("Practitioner/pr1"), "requestor": True, "name": "Dr X"},
                  {"who": ref("Patient/p1"), "requestor": False}],
        "source": {"site": "ehr", "observer": ref("Device/dv1")},
        "entity": [{"what": ref("Patient/p1")}],
    },
    "Questionnaire": {
        "resourceType": "Questionnaire", "id": "q1", "url": "http://ex.org/fhir/Questionnaire/phq-9",
        "version": "1.0", "name": "PHQ9", "status": "active",
        "item": [{"linkId": "1", "code": [{"system": LOINC, "code": "44250-9"}], "type": "choice"}],
    },
    "Practitioner": {
        "resourceType": "Practitioner", "id": "pr1",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9941339108"}],
        "name": [{"family": "Bone", "given": ["Ronald"], "prefix": ["Dr"]}],
    },
    "PractitionerRole": {
        "resourceType": "PractitionerRole", "id": "prr1", "practitioner": ref("Practitioner/pr1"),
        "organization": ref("Organization/o1"), "specialty": [cc("http://nucc.org/provider-taxonomy", "208D00000X")],
    },
    "Organization": {
        "resourceType": "Organization", "id": "o1", "name": "Saint Luke's", "alias": ["St. Luke"],
        "address": [{"line": ["1 Main St"], "city": "Boston"}],
    },
    "Location": {
        "resourceType": "Location", "id": "l1", "name": "Ward 7", "status": "active",
        "address": {"city": "Salem", "state": "MA", "postalCode": "01970"},
        "operationalStatus": {"system": "http://terminology.hl7.org/CodeSystem/v2-0116", "code": "O", "display": "Occupied"},
    },
}

CASES: list[tuple[str, str, list[Spec]]] = [
    # common parameters
    ("Patient", "_id", [T(None, "p1")]),
    ("Patient", "_lastUpdated", [D("2024-01-02T03:04:05.678Z")]),
    ("Patient", "_tag", [T("http://ex.org/tags", "t1", "tag one")]),
    ("Patient", "_security", [T("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")]),
    ("Patient", "_profile", [U(f"{US_SD}us-core-patient|6.1.0"), U(f"{US_SD}us-core-patient")]),
    ("Patient", "_source", [U("http://ex.org/feed#a1")]),
    ("Binary", "_id", [T(None, "b1")]),
    # Patient
    ("Patient", "family", [S("nunez", "Núñez")]),
    ("Patient", "given", [S("maria", "María"), S("jose", "José")]),
    ("Patient", "name", [S("nunez", "Núñez"), S("maria", "María"), S("jose", "José"), S("dr.", "Dr."),
                         S("phd", "PhD"), S("maria nunez", "Maria  Nunez")]),
    ("Patient", "birthdate", [D("1970-03-04")]),
    ("Patient", "death-date", [D("2020-01-01T10:00:00-05:00")]),
    ("Patient", "deceased", [T(None, "true")]),
    ("Patient", "gender", [T(None, "female")]),
    ("Patient", "active", [T(None, "true")]),
    ("Patient", "identifier", [T("http://hospital.example.org/mrn", "12345", "medical record number", V2_0203, "MR")]),
    ("Patient", "telecom", [T(None, "+1 555 0100"), T(None, "maria@example.org")]),
    ("Patient", "phone", [T(None, "+1 555 0100")]),
    ("Patient", "email", [T(None, "maria@example.org")]),
    ("Patient", "address", [S("12 rue de l'eglise", "12 Rue de l'Église"), S("montreal", "Montréal"), S("qc", "QC"),
                            S("h2x 1y4", "H2X 1Y4"), S("ca", "CA")]),
    ("Patient", "address-city", [S("montreal", "Montréal")]),
    ("Patient", "address-postalcode", [S("h2x 1y4", "H2X 1Y4")]),
    ("Patient", "address-use", [T(None, "home")]),
    ("Patient", "language", [T("urn:ietf:bcp:47", "fr"), T(None, None, "french")]),
    ("Patient", "general-practitioner", [R("Practitioner", "pr1"), R("Organization", "o1")]),
    ("Patient", "organization", [R("Organization", "o1")]),
    ("Patient", "link", [R("Patient", "p0"), R("RelatedPerson", "rp1")]),
    ("Patient", "race", [T(OMB, "2106-3", "white"), T(OMB, "2108-9", "european")]),
    ("Patient", "ethnicity", [T(OMB, "2186-5")]),
    ("Patient", "gender-identity", [T(SCT, "446141000124107")]),
    # Observation: the panel
    ("Observation", "code", [T(LOINC, "85354-9", "blood pressure panel"), T(None, None, "bp")]),
    ("Observation", "category", [T("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "vital signs")]),
    ("Observation", "status", [T(None, "final")]),
    ("Observation", "subject", [R("Patient", "p1")]),
    ("Observation", "patient", [R("Patient", "p1")]),
    ("Observation", "encounter", [R("Encounter", "e1")]),
    ("Observation", "performer", [R("Practitioner", "pr1"), R("Patient", "p1")]),
    ("Observation", "date", [D("2024-03-01T09:30:00+01:00", DATE_MAX)]),
    ("Observation", "component-code", [T(LOINC, "8480-6", "systolic"), T(LOINC, "8462-4", "diastolic")]),
    ("Observation", "combo-code", [T(LOINC, "85354-9", "blood pressure panel"), T(None, None, "bp"),
                                   T(LOINC, "8480-6", "systolic"), T(LOINC, "8462-4", "diastolic")]),
    ("Observation", "component-value-quantity", [Q(120.0, UCUM, "mm[Hg]", "mmHg"), Q(80.5, UCUM, "mm[Hg]", "mmHg")]),
    ("Observation", "combo-value-quantity", [Q(120.0, UCUM, "mm[Hg]", "mmHg"), Q(80.5, UCUM, "mm[Hg]", "mmHg")]),
    ("Observation", "value-quantity", []),
    ("Observation", "code-value-quantity", []),
    ("Observation", "component-code-value-quantity", [
        C(LOINC, "8480-6", value=120.0, value_system=UCUM, value_code="mm[Hg]", value_unit="mmHg"),
        C(LOINC, "8462-4", value=80.5, value_system=UCUM, value_code="mm[Hg]", value_unit="mmHg")]),
    ("Observation", "combo-code-value-quantity", [
        C(LOINC, "8480-6", value=120.0, value_system=UCUM, value_code="mm[Hg]", value_unit="mmHg"),
        C(LOINC, "8462-4", value=80.5, value_system=UCUM, value_code="mm[Hg]", value_unit="mmHg")]),
    # Observation: other values and references
    ("Observation/string", "value-string", [S("never smoker", "Never  Smoker")]),
    ("Observation/string", "code-value-string", [C(LOINC, "72166-2", value_text="never smoker")]),
    ("Observation/string", "subject", [R("Group", "g1")]),
    ("Observation/string", "patient", []),  # subject.where(resolve() is Patient)
    ("Observation/string", "date", [D("2023")]),
    ("Observation/concept", "value-concept", [T(SCT, "8517006", "ex-smoker")]),
    ("Observation/concept", "code-value-concept", [C(LOINC, "72166-2", value_system=SCT, value_code="8517006")]),
    ("Observation/concept", "combo-code-value-concept", [C(LOINC, "72166-2", value_system=SCT, value_code="8517006")]),
    ("Observation/concept", "patient", [R("Patient", "77", "https://other.example/fhir/Patient/77/_history/2")]),
    ("Observation/concept", "date", [D("2024-01-01"), D("2024-02-01T10:00:00Z")]),
    ("Observation/concept", "has-member", [R("Observation", "o2")]),  # contained and identifier-only skipped
    ("Observation/quantity", "value-quantity", [Q(182.5, UCUM, "cm", "cm")]),
    ("Observation/quantity", "code-value-quantity", [C(LOINC, "8302-2", value=182.5, value_system=UCUM, value_code="cm", value_unit="cm")]),
    ("Observation/quantity", "subject", [R(None, None, "urn:uuid:5d4b3c2a-0000-4000-8000-000000000001")]),
    ("Observation/quantity", "date", []),  # invalid value: skipped, never raised
    # Encounter
    ("Encounter", "class", [T("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")]),
    ("Encounter", "type", [T(SCT, "185349003", "encounter for check up")]),
    ("Encounter", "identifier", [T("http://ex.org/visits", "V-1")]),
    ("Encounter", "patient", [R("Patient", "p1")]),
    ("Encounter", "date", [D("2024-03-01T09:00:00Z", "2024-03-01T10:00:00Z")]),
    ("Encounter", "participant", [R("Practitioner", "pr1"), R("RelatedPerson", "rp1")]),
    ("Encounter", "practitioner", [R("Practitioner", "pr1")]),
    ("Encounter", "location", [R("Location", "l1")]),
    ("Encounter", "length", [Q(60.0, UCUM, "min", "min")]),
    ("Encounter", "discharge-disposition", [T("http://terminology.hl7.org/CodeSystem/discharge-disposition", "home")]),
    # Condition
    ("Condition", "code", [T(SCT, "44054006", "diabetes mellitus type 2")]),
    ("Condition", "clinical-status", [T("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved")]),
    ("Condition", "onset-date", [D("2019")]),
    ("Condition", "abatement-date", [D("2020-01", "2020-02-15")]),
    ("Condition", "asserted-date", [D("2019-05-30")]),
    ("Condition", "recorded-date", [D("2019-06-01T10:00:00Z")]),
    ("Condition", "asserter", [R("Practitioner", "pr1")]),
    ("Condition", "encounter", [R("Encounter", "e1")]),
    # DiagnosticReport
    ("DiagnosticReport", "date", [D("2024-03-01")]),
    ("DiagnosticReport", "issued", [D("2024-03-02T08:00:00.000+00:00")]),
    ("DiagnosticReport", "result", [R("Observation", "o4")]),
    ("DiagnosticReport", "category", [T("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")]),
    # AllergyIntolerance
    ("AllergyIntolerance", "code", [T("http://www.nlm.nih.gov/research/umls/rxnorm", "7980", "penicillin g"),
                                    T(SCT, "764146007", "penicillin")]),
    ("AllergyIntolerance", "patient", [R("Patient", "p1")]),
    ("AllergyIntolerance", "manifestation", [T(SCT, "247472004", "hives")]),
    ("AllergyIntolerance", "severity", [T(None, "moderate")]),
    ("AllergyIntolerance", "date", [D("2020-05-05")]),
    # MedicationRequest / Medication
    ("MedicationRequest", "code", [T("http://www.nlm.nih.gov/research/umls/rxnorm", "1049502"), T(None, None, "oxycodone")]),
    ("MedicationRequest", "intent", [T(None, "order")]),
    ("MedicationRequest", "authoredon", [D("2024-03-01")]),
    ("MedicationRequest", "requester", [R("PractitionerRole", "prr1")]),
    ("MedicationRequest", "date", [D("2024-03-02T08:00:00Z"), D("2024-03-02T20:00:00Z")]),
    ("Medication", "lot-number", [T(None, "L-9")]),
    ("Medication", "expiration-date", [D("2025-06")]),
    ("Medication", "ingredient", [R("Medication", "m2")]),
    ("Medication", "ingredient-code", [T(SCT, "387458008")]),
    # Immunization
    ("Immunization", "vaccine-code", [T("http://hl7.org/fhir/sid/cvx", "140", "influenza")]),
    ("Immunization", "date", [D("2023-10-10T14:00:00Z")]),
    ("Immunization", "lot-number", [S("ab12", "AB12")]),
    ("Immunization", "series", [S("primary", "Primary")]),
    ("Immunization", "target-disease", [T(SCT, "6142004")]),
    ("Immunization", "performer", [R("Practitioner", "pr1")]),
    # Procedure
    ("Procedure", "date", [D("2024-01-05T10:00:00Z", "2024-01-05T11:30:00Z")]),
    ("Procedure", "performer", [R("Patient", "p1")]),
    ("Procedure", "instantiates-canonical", [R(None, None, "http://ex.org/fhir/PlanDefinition/pd1|2.0"),
                                             R(None, None, "http://ex.org/fhir/PlanDefinition/pd1")]),
    # DocumentReference
    ("DocumentReference", "identifier", [T("urn:ietf:rfc:3986", "urn:oid:1.2.3"), T("http://ex.org/docs", "D-1")]),
    ("DocumentReference", "type", [T(LOINC, "18842-5", "discharge summary")]),
    ("DocumentReference", "period", [D(DATE_MIN, "2024-03-02")]),
    ("DocumentReference", "date", [D("2024-03-03T12:00:00Z")]),
    ("DocumentReference", "encounter", [R("Encounter", "e1")]),
    ("DocumentReference", "contenttype", [T(None, "text/plain")]),
    ("DocumentReference", "location", [U("Binary/b1")]),
    # CarePlan, CareTeam, Goal
    ("CarePlan", "date", [D("2024-01-01", DATE_MAX)]),
    ("CarePlan", "activity-date", [D("2024-02-01", "2024-02-28")]),
    ("CarePlan", "performer", [R("Patient", "p1"), R("Practitioner", "pr1")]),
    ("CarePlan", "patient", [R("Patient", "p1")]),
    ("CareTeam", "role", [T(SCT, "17561000", "cardiologist")]),
    ("CareTeam", "participant", [R("Practitioner", "pr1"), R("Patient", "p1")]),
    ("Goal", "description", [T(None, None, "lose weight")]),
    ("Goal", "target-date", [D("2024-12-31")]),
    ("Goal", "lifecycle-status", [T(None, "active")]),
    # Device, Coverage, ServiceRequest, Specimen
    ("Device", "udi-di", [S("09504000059118", "09504000059118")]),
    ("Device", "device-name", [S("hip stem", "Hip Stem"), S("coated femoral stem prosthesis", "Coated femoral stem prosthesis")]),
    ("Device", "patient", [R("Patient", "p1")]),
    ("Coverage", "patient", [R("Patient", "p1")]),
    ("Coverage", "class-value", [S("grp-1", "GRP-1")]),
    ("Coverage", "payor", [R("Organization", "o9")]),
    ("ServiceRequest", "occurrence", [D("2024-03-05")]),
    ("ServiceRequest", "authored", [D("2024-03-01T08:00:00Z")]),
    ("ServiceRequest", "requisition", [T("http://ex.org/req", "R-7")]),
    ("Specimen", "accession", [T("http://ex.org/acc", "A-1")]),
    ("Specimen", "collected", [D("2024-03-01T07:45:00Z")]),
    ("Specimen", "collector", [R("PractitionerRole", "prr1")]),
    # Provenance, RelatedPerson, QuestionnaireResponse
    ("Provenance", "target", [R("Observation", "bp1"), R("Patient", "p1")]),
    ("Provenance", "patient", [R("Patient", "p1")]),
    ("Provenance", "agent", [R("Practitioner", "pr1")]),
    ("Provenance", "entity", [R("DocumentReference", "d1")]),
    ("RelatedPerson", "patient", [R("Patient", "p1")]),
    ("RelatedPerson", "name", [S("shaw", "Shaw"), S("bett", "Bett")]),
    ("QuestionnaireResponse", "questionnaire", [R(None, None, "http://ex.org/fhir/Questionnaire/phq-9|1.0"),
                                                R(None, None, "http://ex.org/fhir/Questionnaire/phq-9")]),
    ("QuestionnaireResponse", "patient", [R("Patient", "p1")]),
    ("QuestionnaireResponse", "authored", [D("2024-03-01T09:00:00Z")]),
    # scheduling, workflow, groups, audit, definitional
    ("Appointment", "actor", [R("Patient", "p1"), R("Practitioner", "pr1"), R("Location", "l1")]),
    ("Appointment", "patient", [R("Patient", "p1")]),
    ("Appointment", "practitioner", [R("Practitioner", "pr1")]),
    ("Appointment", "location", [R("Location", "l1")]),
    ("Appointment", "part-status", [T(None, "accepted"), T(None, "tentative"), T(None, "accepted")]),
    ("Slot", "start", [D("2024-04-01T09:00:00Z")]),
    ("Slot", "schedule", [R("Schedule", "sc1")]),
    ("Schedule", "active", [T(None, "false")]),
    ("Schedule", "date", [D("2024-04-01", "2024-04-30")]),
    ("Task", "patient", [R("Patient", "p1")]),
    ("Task", "owner", [R("Organization", "o1")]),
    ("Task", "modified", [D("2024-03-01T10:00:00Z")]),
    ("Group", "member", [R("Patient", "p1"), R("Patient", "p2")]),
    ("Group", "actual", [T(None, "true")]),
    ("Group", "exclude", [T(None, "false")]),
    ("Group", "characteristic-value", [C(SCT, "263495000", value_system=SCT, value_code="248152002")]),
    ("AuditEvent", "patient", [R("Patient", "p1"), R("Patient", "p1")]),
    ("AuditEvent", "agent-name", [S("dr x", "Dr X")]),
    ("AuditEvent", "site", [T(None, "ehr")]),
    ("AuditEvent", "date", [D("2024-03-01T10:00:00Z")]),
    ("Questionnaire", "url", [U("http://ex.org/fhir/Questionnaire/phq-9")]),
    ("Questionnaire", "code", [T(LOINC, "44250-9")]),
    ("Questionnaire", "version", [T(None, "1.0")]),
    # directory
    ("Practitioner", "identifier", [T("http://hl7.org/fhir/sid/us-npi", "9941339108")]),
    ("Practitioner", "name", [S("bone", "Bone"), S("ronald", "Ronald"), S("dr", "Dr")]),
    ("PractitionerRole", "practitioner", [R("Practitioner", "pr1")]),
    ("PractitionerRole", "specialty", [T("http://nucc.org/provider-taxonomy", "208D00000X")]),
    ("Organization", "name", [S("saint luke's", "Saint Luke's"), S("st. luke", "St. Luke")]),
    ("Organization", "address-city", [S("boston", "Boston")]),
    ("Location", "address", [S("salem", "Salem"), S("ma", "MA"), S("01970", "01970")]),
    ("Location", "operational-status", [T("http://terminology.hl7.org/CodeSystem/v2-0116", "O", "occupied")]),
]

KINDS = ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris", "composites")


def counted(rows: Iterable[Any]) -> Counter[Any]:
    # keyed by type too: a row (a NamedTuple) equals a row of another type holding the same values
    return Counter((type(row), row) for row in rows)


def rows_of(index: IndexRows, code: str) -> Counter[Any]:
    return counted(row for kind in KINDS for row in getattr(index, kind) if row.param == code)


@pytest.mark.parametrize(("sample", "code", "expected"), CASES, ids=[f"{s}-{c}" for s, c, _ in CASES])
def test_rows_for_parameter(sample: str, code: str, expected: list[Spec]) -> None:
    index = extract_index(SAMPLES[sample])
    assert rows_of(index, code) == counted(spec(code) for spec in expected)


COMPARTMENTS = [
    ("Patient", {"p1", "p0"}),  # itself, and the patient it links to
    ("Observation", {"p1"}),
    ("Observation/string", set()),  # subject is a Group
    ("Observation/concept", {"77"}),  # absolute URL ending in Patient/77
    ("Observation/quantity", set()),  # unresolved urn:uuid
    ("Encounter", {"p1"}),
    ("Condition", {"p1"}),
    ("Coverage", {"p1"}),
    ("CarePlan", {"p1"}),
    ("Group", {"p1", "p2"}),
    ("Appointment", {"p1"}),
    ("AuditEvent", {"p1"}),
    ("QuestionnaireResponse", {"p1"}),
    ("RelatedPerson", {"p1"}),
    ("Task", set()),  # not in the R4 patient compartment
    ("Practitioner", set()),
    ("Binary", set()),
    ("Schedule", set()),
]


@pytest.mark.parametrize(("sample", "expected"), COMPARTMENTS)
def test_compartments_are_filled(sample: str, expected: set[str]) -> None:
    assert extract_index(SAMPLES[sample]).compartments == expected


def test_every_sample_type_is_exercised() -> None:
    types = {s["resourceType"] for s in SAMPLES.values()}
    assert {"Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Encounter", "Condition",
            "Observation", "DiagnosticReport", "AllergyIntolerance", "MedicationRequest", "Medication", "Immunization",
            "Procedure", "DocumentReference", "CarePlan", "CareTeam", "Goal", "Device", "Coverage", "ServiceRequest",
            "Specimen", "Provenance", "RelatedPerson", "QuestionnaireResponse", "Appointment", "Slot", "Schedule",
            "Task", "Group", "Binary", "AuditEvent", "Questionnaire"} <= types


def test_binary_has_only_common_rows() -> None:
    index = extract_index(SAMPLES["Binary"])
    assert [(kind, len(getattr(index, kind))) for kind in KINDS if getattr(index, kind)] == [("tokens", 1)]


# --- behaviours that cut across types ----------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "parsed"),
    [
        ("Patient/123", ("Patient", "123", None)),
        ("Patient/123/_history/4", ("Patient", "123", None)),
        ("http://ex.org/fhir/Patient/123", ("Patient", "123", "http://ex.org/fhir/Patient/123")),
        ("https://ex.org/fhir/Patient/123/_history/4", ("Patient", "123", "https://ex.org/fhir/Patient/123/_history/4")),
        ("http://ex.org/fhir/ValueSet/my-vs", ("ValueSet", "my-vs", "http://ex.org/fhir/ValueSet/my-vs")),
        ("http://ex.org/some/path", (None, None, "http://ex.org/some/path")),
        ("urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d", (None, None, "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d")),
        ("urn:oid:1.2.3", (None, None, "urn:oid:1.2.3")),
        ("#contained-1", None),
        ("Patient", None),
        ("Patient/", None),
        ("a/b/c", None),
        ("patient/123", None),
        ("Patient?identifier=x|1", None),
    ],
)
def test_parse_reference(reference: str, parsed: tuple[str | None, str | None, str | None] | None) -> None:
    assert _parse_reference(reference) == parsed


def test_contact_point_token_ignores_the_system() -> None:
    patient = {"resourceType": "Patient", "id": "x", "telecom": [{"system": "fax", "value": "555"}]}
    assert rows_of(extract_index(patient), "telecom") == counted([TokenRow("telecom", None, "555")])
    assert rows_of(extract_index(patient), "phone") == counted([])


def test_identifier_type_codings_give_one_row_each() -> None:
    patient = {"resourceType": "Patient", "id": "x", "identifier": [
        {"system": "s", "value": "v", "type": {"coding": [{"system": V2_0203, "code": "MR"}, {"system": "y", "code": "Z"}]}}]}
    assert rows_of(extract_index(patient), "identifier") == counted(
        [TokenRow("identifier", "s", "v", None, V2_0203, "MR"), TokenRow("identifier", "s", "v", None, "y", "Z")])


def test_codeable_concept_text_equal_to_a_display_adds_no_row() -> None:
    obs = {"resourceType": "Observation", "id": "x", "code": cc(LOINC, "1-8", "Body Weight", text="body  weight")}
    assert rows_of(extract_index(obs), "code") == counted([TokenRow("code", LOINC, "1-8", "body weight")])


@pytest.mark.parametrize("value", [
    "final", True, False, 5, None, [],
    {"coding": [{"system": LOINC, "code": "1-8", "display": "Weight"}, {"system": SCT}, "odd"], "text": "w"},
    {"text": "only text"},
    {"system": "s", "value": "v"},
    {"system": "s", "value": "v", "type": {"coding": [{"system": V2_0203, "code": "MR"}, {"code": "X"}, 3]}},
    {"system": "s", "value": "v", "type": {"text": "no codings"}},
    {"system": "s", "type": {"coding": [{"code": "MR"}]}},
    {"assigner": {"display": "A"}},
    {"system": LOINC, "code": "1-8", "display": "Weight"},
    {"system": LOINC},
    {"unit": "kg"},
], ids=repr)
def test_composite_token_part_is_the_coded_token_rows(value: Any) -> None:
    """A composite's token part (system, code) pairs are exactly the coded rows a token parameter gets."""
    from ehrgate.fhir.search.rows import token_node, token_pairs

    rows: list[TokenRow] = []
    token_node("p", value, rows, frozenset())
    assert token_pairs(value) == [(r.system, r.code) for r in rows if r.code is not None]


def test_deceased_boolean_false() -> None:
    patient = {"resourceType": "Patient", "id": "x", "deceasedBoolean": False}
    assert rows_of(extract_index(patient), "deceased") == counted([TokenRow("deceased", None, "false")])


def test_unknown_type_gets_common_parameters_only() -> None:
    index = extract_index({"resourceType": "Basicx", "id": "z", "meta": {"lastUpdated": "2024"}, "code": cc(SCT, "1")})
    assert index.tokens == [TokenRow("_id", None, "z")]
    assert index.dates == [DateRow("_lastUpdated", *parse_fhir_date_range("2024"))]
    assert index.compartments == set()


def test_patient_without_id_has_no_own_compartment() -> None:
    assert extract_index({"resourceType": "Patient", "name": [{"family": "X"}]}).compartments == set()


def test_malformed_values_are_skipped_not_raised() -> None:
    odd = {"resourceType": "Observation", "id": "x", "code": "not-a-concept", "subject": {"reference": 5},
           "effectivePeriod": {"start": "bad", "end": "2024"}, "valueQuantity": {"value": "12"},
           "performer": ["Patient/1"], "component": [None, {"code": None}], "category": [None]}
    index = extract_index(odd)
    assert index.dates == [] and index.quantities == [] and index.composites == []


def test_rows_are_immutable_named_tuples_of_one_type_per_table() -> None:
    index = extract_index(SAMPLES["Patient"])
    token = index.tokens[0]
    assert type(token) is TokenRow and token == TokenRow("_id", None, "p1") and hash(token) == hash(TokenRow("_id", None, "p1"))
    assert token.code == "p1" and token._asdict()["code"] == "p1"
    with pytest.raises(AttributeError):
        token.code = "other"  # type: ignore[misc]
    for kind, cls in zip(KINDS, (StringRow, TokenRow, ReferenceRow, DateRow, NumberRow, QuantityRow, UriRow, CompositeRow),
                         strict=True):
        for row in getattr(index, kind):
            assert type(row) is cls


def test_extraction_is_deterministic() -> None:
    for sample in SAMPLES.values():
        assert extract_index(sample) == extract_index(sample)


# --- the shared corpus (real US Core examples, Synthea bundles, Bulk Data NDJSON) ------------------

from pathlib import Path  # noqa: E402

from ehrgate.fhir.search.extract import _compile_step, _walk  # noqa: E402
from ehrgate.fhir.search.params import REGISTRY, split_steps  # noqa: E402

from .corpus import CORPUS, corpus_resources  # noqa: E402


def _corpus(folder: str) -> Path:
    path = CORPUS / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent (a fresh clone has no ../shared corpus)")
    return path


def _load(folder: str) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for path in sorted(_corpus(folder).iterdir()):
        if path.suffix in (".json", ".ndjson"):
            resources.extend(corpus_resources(path))
    return resources


def _dropped_references(resource: dict[str, Any]) -> list[str]:
    """References a non-narrowed parameter skipped because their type is not among its targets.

    Each one is a gap in a target list (the spec's targets are complete for valid data).
    """
    rt = resource["resourceType"]
    dropped = []
    for code, param in REGISTRY.get(rt, {}).items():
        if param.type != "reference" or not param.targets or "resolve() is" in param.expression:
            continue
        for path in param.paths:
            for value in _walk([resource], tuple(_compile_step(s) for s in split_steps(path))):
                parsed = _parse_reference(value["reference"]) if isinstance(value, dict) and isinstance(value.get("reference"), str) else None
                if parsed and parsed[0] and parsed[0] not in param.targets:
                    dropped.append(f"{rt}.{code} -> {value['reference']}")
    return dropped


@pytest.mark.corpus
@pytest.mark.parametrize("folder", ["us-core-examples", "synthea-r4", "bulk-ndjson-10-patients"])
def test_corpus_extracts_plausibly(folder: str) -> None:
    resources = [r for r in _load(folder) if "resourceType" in r]
    assert resources
    dropped: list[str] = []
    for resource in resources:
        rt = resource["resourceType"]
        index = extract_index(resource)
        dropped.extend(_dropped_references(resource))
        if "id" in resource:
            assert TokenRow("_id", None, resource["id"]) in index.tokens
        if rt == "Patient" and "id" in resource:
            assert resource["id"] in index.compartments
        if rt == "Observation":
            assert any(r.param == "code" and r.code for r in index.tokens), resource.get("id")
            subject = (resource.get("subject") or {}).get("reference", "")
            if subject:
                assert any(r.param == "subject" for r in index.references), resource["id"]
            if subject.startswith("Patient/"):
                assert ReferenceRow("patient", "Patient", subject[8:]) in index.references
                assert index.compartments == {subject[8:]}
        if rt in ("Condition", "Encounter", "Procedure", "Immunization", "MedicationRequest", "DiagnosticReport"):
            subject = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
            if subject.startswith("Patient/"):
                assert subject[8:] in index.compartments, (rt, resource.get("id"))
    assert dropped == []


@pytest.mark.corpus
def test_corpus_dates_all_parse() -> None:
    """Every date-typed value in the Synthea bundles indexes (nothing silently skipped)."""
    for resource in _load("synthea-r4"):
        for code, param in REGISTRY.get(resource["resourceType"], {}).items():
            if param.type != "date":
                continue
            values = [v for path in param.paths for v in _walk([resource], tuple(_compile_step(s) for s in split_steps(path)))]
            expected = sum(1 for v in values if isinstance(v, str) or (isinstance(v, dict) and ("start" in v or "end" in v)))
            expected += sum(len(v.get("event", [])) for v in values if isinstance(v, dict) and "start" not in v and "end" not in v)
            got = sum(1 for r in extract_index(resource).dates if r.param == code)
            assert got == expected, (resource["resourceType"], resource.get("id"), code)


def test_decimal_values_are_indexed_like_floats() -> None:
    """``jsonio.loads`` parses ``13.20`` (a float would print 13.2) as a Decimal, and the HL7
    converter writes OBX-5 so: quantity, number and composite rows must not skip them."""
    from decimal import Decimal

    obs = {"resourceType": "Observation", "id": "d1", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
           "valueQuantity": {"value": Decimal("13.20"), "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                             "code": "mg/dL"}}
    rows = extract_index(obs)
    assert sorted((q.param, q.value) for q in rows.quantities) == [("combo-value-quantity", 13.2),
                                                                   ("value-quantity", 13.2)]
    assert [c.value for c in rows.composites if c.param == "code-value-quantity"] == [13.2]
    risk = {"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/p"},
            "prediction": [{"probabilityDecimal": Decimal("0.10")}]}
    assert [(n.param, n.value) for n in extract_index(risk).numbers] == [("probability", 0.1)]


@pytest.mark.parametrize("odd", [5, True, 1.5, "text", {"code": "x"}])
def test_a_repeating_element_written_as_a_scalar_gives_no_rows_and_no_error(odd: Any) -> None:
    """Invalid JSON shapes never reach extraction through the store (validation refuses them
    first), but extraction must not raise on them either: ``coding: 5`` raised TypeError."""
    obs = {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": odd, "text": "Glucose"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "identifier": [{"type": {"coding": odd}, "system": "urn:x", "value": "1"}],
        "effectiveTiming": {"event": odd},
    }
    index = extract_index(obs)
    tokens = {(r.param, r.system, r.code) for r in index.tokens}
    assert ("category", "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory") in tokens
    assert ("identifier", "urn:x", "1") in tokens
    assert ("code", None, None) in tokens  # the text alone: the coding gave nothing
    assert not [r for r in index.composites if r.param.startswith("code-")]

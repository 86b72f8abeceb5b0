"""Realistic, valid R4 resources written for these tests (no upstream example was copied).

Each function returns a fresh dict so a test may mutate it freely.
"""

from __future__ import annotations

from typing import Any

PATIENT_ID = "pat-1042"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "meta": {"versionId": "3", "lastUpdated": "2024-03-05T14:22:09.114Z",
                 "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "text": {"status": "generated",
                 "div": '<div xmlns="http://www.w3.org/1999/xhtml">Maria Elena Ortiz, born 1987-11-23</div>'},
        "extension": [
            {
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                "extension": [
                    {"url": "ombCategory",
                     "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2135-2",
                                     "display": "Hispanic or Latino"}},
                    {"url": "text", "valueString": "Hispanic or Latino"},
                ],
            },
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
        ],
        "identifier": [
            {"use": "usual",
             "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
             "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "A-88213",
             "period": {"start": "2015-06-01"}},
        ],
        "active": True,
        "name": [
            {"use": "official", "family": "Ortiz", "given": ["Maria", "Elena"], "prefix": ["Ms."]},
            {"use": "maiden", "family": "Vidal", "given": ["Maria"], "period": {"end": "2012-05-19"}},
        ],
        "telecom": [
            {"system": "phone", "value": "+1 617 555 0142", "use": "mobile", "rank": 1},
            {"system": "email", "value": "m.ortiz@example.org", "use": "home"},
        ],
        "gender": "female",
        "birthDate": "1987-11-23",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                      "valueDateTime": "1987-11-23T04:12:00-05:00"}]},
        "deceasedBoolean": False,
        "address": [
            {"use": "home", "type": "both", "line": ["41 Larch Street", "Apt 2"], "city": "Somerville",
             "state": "MA", "postalCode": "02143", "country": "US", "period": {"start": "2019-09-01"}},
        ],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                      "code": "M", "display": "Married"}]},
        "multipleBirthInteger": 2,
        "contact": [
            {"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                           "code": "N"}]}],
             "name": {"family": "Ortiz", "given": ["Rafael"]},
             "telecom": [{"system": "phone", "value": "+1 617 555 0199"}],
             "gender": "male"},
        ],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]},
                           "preferred": True}],
        "generalPractitioner": [{"reference": "Practitioner/prac-77", "display": "Dr. Ana Lindqvist"}],
        "managingOrganization": {"reference": "Organization/org-3"},
    }


def blood_pressure() -> dict[str, Any]:
    def component(code: str, display: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}

    return {
        "resourceType": "Observation",
        "id": "bp-20240305",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}],
                 "text": "Blood pressure"},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "encounter": {"reference": "Encounter/enc-5531"},
        "effectiveDateTime": "2024-03-05T09:41:00-05:00",
        "issued": "2024-03-05T09:45:12.500-05:00",
        "performer": [{"reference": "Practitioner/prac-77"}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "H"}]}],
        "component": [
            component("8480-6", "Systolic blood pressure", 142),
            component("8462-4", "Diastolic blood pressure", 91.5),
        ],
    }


def glucose() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "glu-1",
        "status": "amended",
        "code": {"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume] in Blood"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectivePeriod": {"start": "2024-03-04T22:00:00Z", "end": "2024-03-05T06:00:00Z"},
        "valueQuantity": {"value": 6.3, "comparator": "<", "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        "referenceRange": [{"low": {"value": 3.9, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
                            "high": {"value": 7.8, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}],
        "note": [{"authorString": "night nurse", "time": "2024-03-05T06:10:00Z", "text": "Patient **fasting**."}],
    }


def encounter() -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "enc-5531",
        "identifier": [{"system": "urn:uuid:6f1c1a52-2b8e-4b1d-9a55-5b0a1e4b7c10", "value": "V-5531"}],
        "status": "finished",
        "statusHistory": [{"status": "arrived", "period": {"start": "2024-03-05T09:02:00-05:00"}},
                          {"status": "in-progress", "period": {"start": "2024-03-05T09:20:00-05:00",
                                                                "end": "2024-03-05T10:05:00-05:00"}}],
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                  "display": "ambulatory"},
        "type": [{"coding": [{"system": SNOMED, "code": "185349003", "display": "Encounter for check up"}]}],
        "subject": {"reference": f"Patient/{PATIENT_ID}", "display": "Maria Elena Ortiz"},
        "participant": [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                               "code": "PPRF"}]}],
                         "individual": {"reference": "Practitioner/prac-77"}}],
        "period": {"start": "2024-03-05T09:02:00-05:00", "end": "2024-03-05T10:05:00-05:00"},
        "length": {"value": 63, "unit": "min", "system": UCUM, "code": "min"},
        "reasonCode": [{"text": "Annual check-up"}],
        "hospitalization": {"dischargeDisposition": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "home"}]}},
        "location": [{"location": {"reference": "Location/loc-2", "display": "Clinic room 2"},
                      "status": "completed"}],
        "serviceProvider": {"reference": "Organization/org-3"},
    }


def condition() -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "cond-htn",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "problem-list-item"}]}],
        "severity": {"coding": [{"system": SNOMED, "code": "6736007", "display": "Moderate"}]},
        "code": {"coding": [{"system": SNOMED, "code": "38341003", "display": "Hypertensive disorder"},
                            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}],
                 "text": "Hypertension"},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "onsetAge": {"value": 34, "unit": "years", "system": UCUM, "code": "a"},
        "recordedDate": "2022-01-14",
        "evidence": [{"detail": [{"reference": "Observation/bp-20240305"}]}],
    }


def medication_request() -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "mr-lisinopril",
        "contained": [{
            "resourceType": "Medication",
            "id": "med1",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
                                 "display": "lisinopril 10 MG Oral Tablet"}]},
            "form": {"text": "tablet"},
        }],
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "medicationReference": {"reference": "#med1"},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": "2024-03-05T10:01:33-05:00",
        "requester": {"reference": "Practitioner/prac-77"},
        "reasonReference": [{"reference": "Condition/cond-htn"}],
        "dosageInstruction": [{
            "sequence": 1,
            "text": "Take one tablet by mouth once daily",
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN"]}},
            "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet",
                                              "system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
                                              "code": "TAB"}}],
        }],
        "dispenseRequest": {"numberOfRepeatsAllowed": 3,
                            "quantity": {"value": 90, "unit": "tablet"},
                            "expectedSupplyDuration": {"value": 90, "unit": "days", "system": UCUM, "code": "d"}},
        "substitution": {"allowedBoolean": True},
    }


def allergy() -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": "alg-1",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                       "code": "active"}]},
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980",
                             "display": "penicillin G"}]},
        "patient": {"reference": f"Patient/{PATIENT_ID}"},
        "reaction": [{"manifestation": [{"text": "hives"}], "severity": "moderate"}],
    }


def transaction_bundle() -> dict[str, Any]:
    """A transaction posting a new patient (urn:uuid) and resources that point at it."""
    pid = "urn:uuid:0b4c9e0c-3d3c-4b7e-8f6b-2f7f8e8f6a11"
    new_patient = patient()
    del new_patient["id"], new_patient["meta"]
    obs = blood_pressure()
    del obs["id"]
    obs["subject"] = {"reference": pid}
    obs["encounter"] = {"reference": "Encounter?identifier=urn:uuid:6f1c1a52-2b8e-4b1d-9a55-5b0a1e4b7c10|V-5531"}
    cond = condition()
    cond["subject"] = {"reference": pid}
    return {
        "resourceType": "Bundle",
        "id": "tx-1",
        "type": "transaction",
        "entry": [
            {"fullUrl": pid, "resource": new_patient,
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=A-88213"}},
            {"fullUrl": "urn:uuid:7d0f5c2e-9a4d-4a8e-b2c1-3c5d6e7f8a90", "resource": obs,
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "http://ehrgate.example/fhir/Condition/cond-htn", "resource": cond,
             "request": {"method": "PUT", "url": "Condition/cond-htn"}},
            {"request": {"method": "DELETE", "url": "Observation/glu-1"}},
        ],
    }


ALL = {
    "Patient": patient,
    "Observation (blood pressure)": blood_pressure,
    "Observation (glucose)": glucose,
    "Encounter": encounter,
    "Condition": condition,
    "MedicationRequest": medication_request,
    "AllergyIntolerance": allergy,
    "Bundle (transaction)": transaction_bundle,
}

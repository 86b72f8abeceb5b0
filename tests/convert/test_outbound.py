"""FHIR → v2 builders (outbound.py): SIU for Appointments, ADT for Patients, and back again."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.convert import OutboundError, appointment_to_siu, convert, patient_to_adt
from ehrgate.convert.outbound import Envelope, fhir_dtm

from .conftest import OPTIONS, pick

PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "p1",
    "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "urn:ehrgate:id:GHH", "value": "MRN1001"},
                   {"system": "urn:oid:2.16.840.1.113883.4.1", "value": "999-99-1234"}],
    "name": [{"use": "official", "family": "Everywoman", "given": ["Eve", "Elaine"]}],
    "gender": "female", "birthDate": "1962-03-20",
    "address": [{"use": "home", "line": ["2222 Home Street"], "city": "Greensboro", "state": "NC",
                 "postalCode": "27401"}],
    "telecom": [{"system": "phone", "value": "336-555-2004", "use": "home"},
                {"system": "phone", "value": "336-555-0199", "use": "work"}],
    "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
}
APPOINTMENT: dict[str, Any] = {
    "resourceType": "Appointment", "id": "a1", "status": "booked",
    "identifier": [{"type": {"coding": [{"code": "FILL"}]}, "system": "urn:ehrgate:id:EHRGATE", "value": "APT-1"}],
    "serviceType": [{"coding": [{"system": "http://snomed.info/sct", "code": "185389009", "display": "Follow-up"}]}],
    "start": "2024-05-20T09:30:00-04:00", "end": "2024-05-20T10:00:00-04:00", "comment": "Bring list | of meds",
    "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                    {"actor": {"reference": "Practitioner/d1"}, "status": "accepted"},
                    {"actor": {"reference": "Location/l1"}, "status": "accepted"}],
}
RESOURCES = {"Patient/p1": PATIENT,
             "Practitioner/d1": {"resourceType": "Practitioner", "identifier": [{"value": "004777"}],
                                 "name": [{"family": "Attend", "given": ["Aaron"]}]},
             "Location/l1": {"resourceType": "Location", "identifier": [{"value": "CLINIC1"}], "name": "Clinic 1"}}


@pytest.mark.parametrize(("action", "events", "trigger"), [("create", "person", "A28"), ("update", "person", "A31"),
                                                          ("create", "registration", "A04"),
                                                          ("update", "registration", "A08")])
def test_patient_events(action: Any, events: Any, trigger: str) -> None:
    msg = patient_to_adt(PATIENT, action=action, events=events, control_id="C1", timestamp="20240501120000")
    assert msg.trigger_event == trigger
    assert msg.get("EVN-1") == trigger
    assert msg.get("PV1-2") == "N"


def test_patient_round_trip() -> None:
    msg = patient_to_adt(PATIENT, action="update", control_id="C1", timestamp="20240501120000",
                         envelope=Envelope(sending_facility="EHRGATE", receiving_application="REG"))
    assert msg.get("MSH-4") == "EHRGATE" and msg.get("MSH-5") == "REG" and msg.get("MSH-10") == "C1"
    assert msg.get("PID-3(2).4.2") == "2.16.840.1.113883.4.1"
    back = convert(msg, OPTIONS).bundle
    assert pick(back, "Patient.identifier[0].system") == "urn:ehrgate:id:GHH"
    assert pick(back, "Patient.identifier[0].value") == "MRN1001"
    assert pick(back, "Patient.identifier[1].system") == "urn:oid:2.16.840.1.113883.4.1"
    for key in ("name", "gender", "birthDate", "address", "telecom"):
        assert pick(back, f"Patient.{key}") == PATIENT[key], key
    assert pick(back, "Patient.maritalStatus.coding[0].code") == "M"


@pytest.mark.parametrize(("action", "status", "trigger"), [("create", "booked", "S12"), ("update", "booked", "S14"),
                                                          ("update", "cancelled", "S15"), ("update", "noshow", "S26"),
                                                          ("delete", "booked", "S17")])
def test_appointment_events(action: Any, status: str, trigger: str) -> None:
    msg = appointment_to_siu({**APPOINTMENT, "status": status}, action=action, control_id="C2",
                             timestamp="20240501120000", resources=RESOURCES)
    assert msg.trigger_event == trigger


def test_appointment_round_trip() -> None:
    msg = appointment_to_siu(APPOINTMENT, action="create", control_id="C2", timestamp="20240501120000",
                             resources=RESOURCES)
    assert msg.get("SCH-11.4") == "20240520093000-0400"
    assert msg.get("NTE-3") == "Bring list | of meds"
    assert msg.get("AIP-3.2") == "Attend"
    back = convert(msg, OPTIONS).bundle
    for key in ("status", "start", "end", "comment"):
        assert pick(back, f"Appointment.{key}") == APPOINTMENT[key], key
    assert pick(back, "Appointment.minutesDuration") == 30
    assert pick(back, "Appointment.identifier[0].value") == "APT-1"
    assert pick(back, "Appointment.serviceType[0].coding[0].code") == "185389009"
    assert pick(back, "Patient.identifier[0].value") == "MRN1001"
    assert pick(back, "Practitioner.identifier[0].value") == "004777"


def test_fhir_dates_to_dtm() -> None:
    assert fhir_dtm("2024-03-15T08:30:00Z") == "20240315083000+0000"
    assert fhir_dtm("2024-03-15T08:30:00.25-05:00") == "20240315083000.25-0500"
    assert fhir_dtm("1962-03") == "196203"
    with pytest.raises(OutboundError, match="is not a FHIR date"):
        fhir_dtm("15/03/2024")


def test_unusable_resources_are_refused_with_the_reason() -> None:
    with pytest.raises(OutboundError, match="PID-3 needs at least one patient identifier"):
        patient_to_adt({"resourceType": "Patient"}, action="create", control_id="C", timestamp="20240101")
    with pytest.raises(OutboundError, match="takes an Appointment"):
        appointment_to_siu(PATIENT, action="create", control_id="C", timestamp="20240101")


def test_patient_round_trip_keeps_what_pid_can_carry() -> None:
    """Elements the inbound PID map reads come back after patient_to_adt → convert: the birth time
    (PID-7, patient-birthTime), every name suffix (XPN-4/XPN-6), a postal address (XAD-7 M), the
    validity periods of names, addresses and numbers (XPN-12/13, XAD-13/14, XTN-13/14), the birth order
    (PID-24/25) and the language (PID-15)."""
    patient = {
        **PATIENT,
        "name": [{"use": "official", "family": "Everywoman", "given": ["Eve", "Elaine"], "prefix": ["Dr"],
                  "suffix": ["Jr", "PhD"], "period": {"start": "2001-06-02"}}],
        "birthDate": "1962-03-20",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                      "valueDateTime": "1962-03-20T06:15:00-05:00"}]},
        "address": [{"use": "home", "line": ["2222 Home Street"], "city": "Greensboro", "state": "NC",
                     "period": {"start": "2019-01-01", "end": "2024-12-31"}},
                    {"type": "postal", "line": ["PO Box 12"], "city": "Greensboro", "state": "NC"}],
        "telecom": [{"system": "phone", "value": "336-555-2004", "use": "home", "period": {"start": "2020-05-01"}}],
        "multipleBirthInteger": 2,
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]},
                           "preferred": True}],
    }
    msg = patient_to_adt(patient, action="update", control_id="C1", timestamp="20240501120000")
    assert msg.get("PID-7") == "19620320061500-0500"
    back = convert(msg, OPTIONS).bundle
    for key in ("name", "birthDate", "_birthDate", "address", "telecom", "multipleBirthInteger", "communication"):
        assert pick(back, f"Patient.{key}") == patient[key], key
    twin = patient_to_adt({**PATIENT, "multipleBirthBoolean": True}, action="update", control_id="C2",
                          timestamp="20240501120000")
    assert pick(convert(twin, OPTIONS).bundle, "Patient.multipleBirthBoolean") is True


def test_appointment_round_trip_keeps_the_location_identifier_system() -> None:
    """AIL-3 PL.10 (comprehensive location identifier, EI) carries the Location's identifier with its
    system; read back, it keys the Location (PL-to-Location: PL.10 → identifier), so the round trip finds it."""
    located = {**RESOURCES, "Location/l1": {"resourceType": "Location", "name": "Clinic 1",
                                            "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.6", "value": "CLINIC1"}]}}
    msg = appointment_to_siu(APPOINTMENT, action="create", control_id="C2", timestamp="20240501120000",
                             resources=located)
    assert msg.get("AIL-3.10.1") == "CLINIC1" and msg.get("AIL-3.10.3") == "2.16.840.1.113883.19.6"
    back = convert(msg, OPTIONS).bundle
    place = next(e for e in back["entry"] if e["resource"]["resourceType"] == "Location")
    assert {"system": "urn:oid:2.16.840.1.113883.19.6", "value": "CLINIC1"} in place["resource"]["identifier"]
    assert place["request"]["ifNoneExist"] == "identifier=urn:oid:2.16.840.1.113883.19.6|CLINIC1"

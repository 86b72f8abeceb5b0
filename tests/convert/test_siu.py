"""SIU → Appointment (siu.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.convert import ConversionError, convert
from ehrgate.hl7 import parse

from .conftest import OPTIONS, convert_sample, current, errors, load, pick, resources, sample

CASES: list[tuple[str, str, Any]] = [
    ("siu_s12.hl7", "Appointment.status", "booked"),
    ("siu_s12.hl7", "Appointment.start", "2024-05-20T09:30:00-04:00"),
    ("siu_s12.hl7", "Appointment.end", "2024-05-20T10:00:00-04:00"),
    ("siu_s12.hl7", "Appointment.minutesDuration", 30),
    ("siu_s12.hl7", "Appointment.identifier[1].value", "FAPT-200"),
    ("siu_s12.hl7", "Appointment.identifier[1].type.coding[0].code", "FILL"),
    ("siu_s12.hl7", "Appointment.serviceType[0].coding[0].code", "185389009"),
    ("siu_s12.hl7", "Appointment.appointmentType.coding[0].code", "ROUTINE"),
    ("siu_s12.hl7", "Appointment.reasonCode[0].coding[0].code", "FU"),
    ("siu_s12.hl7", "Appointment.comment", "Bring medication list"),
    ("siu_s12.hl7", "Appointment.participant[0].status", "accepted"),
    ("siu_s12.hl7", "Appointment.participant[1].type[0].coding[0].code", "ATND"),
    ("siu_s12.hl7", "Appointment.participant[1].actor.display", "Dr Aaron A Attend"),
    ("siu_s12.hl7", "Appointment.participant[2].actor.display", "201"),
    ("siu_s14.hl7", "Appointment.start", "2024-05-20T10:00:00-04:00"),
    ("siu_s14.hl7", "Appointment.minutesDuration", 45),
    ("siu_s15.hl7", "Appointment.status", "cancelled"),
    ("siu_s15.hl7", "Appointment.participant[0].status", "declined"),
    ("siu_s26.hl7", "Appointment.status", "noshow"),
]


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_appointment_values(name: str, path: str, expected: Any) -> None:
    assert pick(convert_sample(name).bundle, path) == expected


def test_participants_are_patient_practitioner_and_location() -> None:
    bundle = convert_sample("siu_s12.hl7").bundle
    kinds = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    actors = [kinds[p["actor"]["reference"]] for p in pick(bundle, "Appointment.participant")]
    assert actors == ["Patient", "Practitioner", "Location"]


def test_start_without_end_names_the_field() -> None:
    with pytest.raises(ConversionError) as info:
        convert_sample("siu_no_end.hl7")
    assert str(info.value).startswith("SCH-11: has a start but no end and no duration")


def test_cancel_updates_the_booked_appointment(store: Any) -> None:
    for name in ("siu_s12.hl7", "siu_s14.hl7", "siu_s15.hl7"):
        bundle = convert_sample(name).bundle
        assert errors(bundle) == [], name
        load(store, bundle)
    appointments = current(store, "Appointment")
    assert len(appointments) == 1
    assert appointments[0]["status"] == "cancelled"
    assert appointments[0]["start"] == "2024-05-20T09:30:00-04:00"  # as the S15 states it
    assert appointments[0]["meta"]["versionId"] == "3"
    load(store, convert_sample("siu_s26.hl7").bundle)
    assert [a["status"] for a in current(store, "Appointment")] == ["noshow"]


def test_schedule_id_gives_a_schedule_and_a_slot(store: Any) -> None:
    """SCH-5 → Schedule (actors from AIP/AIL) and the Appointment's Slot; a cancellation frees the
    same Slot (siu_s12_slot.hl7)."""
    booked = convert_sample("siu_s12_slot.hl7").bundle
    assert not errors(booked)
    schedule = pick(booked, "Schedule")
    assert schedule["identifier"] == [{"system": "urn:ehrgate:id:GHH", "value": "DRATTEND-AM"}]
    assert [a["display"] for a in schedule["actor"]] == ["Dr Aaron A Attend", "201"]
    slot = pick(booked, "Slot")
    assert (slot["status"], slot["start"], slot["end"]) == ("busy", "2024-05-20T09:30:00-04:00",
                                                            "2024-05-20T10:00:00-04:00")
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in booked["entry"]}
    assert slot["schedule"] == {"reference": urls["Schedule"]}
    assert pick(booked, "Appointment.slot") == [{"reference": urls["Slot"]}]
    cancel = convert(parse(sample("siu_s12_slot.hl7").replace(b"SIU^S12^SIU_S12|SIU-0011", b"SIU^S15^SIU_S12|SIU-0012")),
                     OPTIONS).bundle
    assert pick(cancel, "Slot.status") == "free" and pick(cancel, "Slot.id") == slot["id"]
    load(store, booked)
    load(store, cancel)
    assert [s["status"] for s in current(store, "Slot")] == ["free"]
    assert len(current(store, "Schedule")) == 1
    assert resources(convert_sample("siu_s12.hl7").bundle, "Slot") == []  # no SCH-5: no Slot


@pytest.mark.parametrize("minutes", ["3020240230", "99999999999"])
def test_an_impossible_duration_names_the_field(minutes: str) -> None:
    """A duration no FHIR positiveInt (minutesDuration) or calendar (the end) can hold is a
    ConversionError naming SCH-9, not an invalid Bundle or a crash."""
    raw = sample("siu_s12.hl7").replace(b"|30|min|^^30^20240520093000-0400^20240520100000-0400|",
                                        f"|{minutes}|min|^^^20240520093000-0400|".encode())
    with pytest.raises(ConversionError) as info:
        convert(parse(raw), OPTIONS)
    assert str(info.value).startswith(f"SCH-9: '{minutes}' is not a duration an appointment can have")

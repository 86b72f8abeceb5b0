"""SIU S12-S17, S26 → Appointment (IG message map SIU_S12; segment maps SCH[Appointment],
AIS[Appointment], AIG[Appointment], AIL[Appointment], AIP[Appointment]; FillerStatusCodes[Appointment]).

The Appointment's identity is the filler appointment ID (SCH-2), else the placer's (SCH-1): a
reschedule (S13), modification (S14), cancellation (S15), discontinuation (S16), deletion (S17)
or no-show (S26) updates the Appointment the booking (S12) created. The trigger sets the status
for S15/S16/S17/S26; for the others SCH-25 (filler status) does, 'booked' when it is empty.

Start and end come from SCH-11 (TQ start/end), else TQ1-7/TQ1-8, else the first resource segment
with a start; an end missing is the start plus the duration (SCH-9/SCH-10, else the resource's).
FHIR lets only proposed, cancelled and waitlisted appointments go without both (invariant app-3).

Slot and Schedule, where the message has them: the IG maps neither (SCH-5 Schedule ID is blank in
SCH[Appointment]), but SCH-5 names the schedule the appointment was booked on. With SCH-5 and a
start and end, the Schedule (identifier SCH-5, actors the AIL/AIP resources; conditional create:
the schedule is reference data) gets a Slot for the appointment's time (``busy``, or ``free``
once the appointment is cancelled, deleted or a no-show), and ``Appointment.slot`` points to it.
The Slot is keyed by the schedule and the appointment, so a reschedule moves it.
"""

from __future__ import annotations

from typing import Any

from .bundle import Builder, search_key
from .codesystems import code_system_uri
from .datatypes import codeable, decimal, ei_identifier
from .dtm import datetime_, shifted
from .errors import REQUIRED_FIELD_MISSING, UNSUPPORTED_MESSAGE_TYPE, ConversionError
from .observation import notes
from .parties import location, practitioner
from .patient import patient
from .tables import APPOINTMENT_STATUS
from .values import Seg

__all__ = ["AIG_FIELDS", "AIL_FIELDS", "AIP_FIELDS", "AIS_FIELDS", "SCH_FIELDS", "TRIGGERS", "convert"]

JSON = dict[str, Any]
SCH_FIELDS = frozenset({1, 2, 5, 7, 8, 9, 10, 11, 25, 26, 27})
AIS_FIELDS = frozenset({1, 3, 4, 7, 8, 10})
AIG_FIELDS = frozenset({1, 3, 4, 8, 11, 12, 14})
AIL_FIELDS = frozenset({1, 3, 4, 6, 9, 10, 12})
AIP_FIELDS = frozenset({1, 3, 4, 6, 9, 10, 12})

TRIGGERS = {"S12": "", "S13": "", "S14": "", "S15": "cancelled", "S16": "cancelled", "S17": "entered-in-error",
            "S26": "noshow"}
_UNITS = {"": 1.0, "MIN": 1.0, "M": 1.0, "MINS": 1.0, "MINUTE": 1.0, "MINUTES": 1.0, "S": 1 / 60, "SEC": 1 / 60,
          "H": 60.0, "HR": 60.0, "HRS": 60.0, "HOUR": 60.0, "HOURS": 60.0, "D": 1440.0, "DAY": 1440.0, "DAYS": 1440.0}
_MAX_MINUTES = 2**31 - 1  # Appointment.minutesDuration is a positiveInt
_PARTICIPANT_STATUS = {"booked": "accepted", "pending": "tentative", "waitlist": "tentative",
                       "cancelled": "declined", "entered-in-error": "declined", "noshow": "declined"}
# (segment, start field, duration field, duration units field, filler status field)
_TIMES = {"AIS": (4, 7, 8, 10), "AIG": (8, 11, 12, 14), "AIL": (6, 9, 10, 12), "AIP": (6, 9, 10, 12)}


def _minutes(seg: Seg, amount_field: int, unit_field: int) -> float | None:
    amount = seg.text(amount_field)
    if not amount:
        return None
    factor = _UNITS.get(seg.text(unit_field).upper())
    if factor is None:
        raise ConversionError(seg.where(unit_field), f"{seg.text(unit_field)!r} is not a duration unit this "
                              "conversion knows (expected minutes, hours, seconds or days, e.g. 'MIN')")
    minutes = float(decimal(amount, seg.where(amount_field))) * factor
    if not 0 <= minutes <= _MAX_MINUTES:
        raise ConversionError(seg.where(amount_field), f"{amount!r} is not a duration an appointment can have "
                              f"(expected 0 to {_MAX_MINUTES} minutes, the range of FHIR's minutesDuration)")
    return minutes


def _filler_status(seg: Seg, field: int) -> str:
    return APPOINTMENT_STATUS.get(seg.text(field).upper(), "")


def _first(places: list[tuple[Seg | None, int, int]]) -> tuple[str, str]:
    """The first valued (segment, field, component) of ``places``: (value, field name)."""
    for seg, field, comp in places:
        if seg is not None and seg.text(field, comp):
            return seg.text(field, comp), seg.where(field)
    return "", ""


def convert(b: Builder, segs: list[Seg], trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise ConversionError("MSH-9", f"SIU^{trigger or '?'} is not converted (expected one of "
                              f"{', '.join(sorted(TRIGGERS))})", code=UNSUPPORTED_MESSAGE_TYPE)
    sch = next((s for s in segs if s.name == "SCH"), None)
    if sch is None:
        raise ConversionError("SCH", f"missing (SIU^{trigger} needs the scheduling activity segment)",
                              code=REQUIRED_FIELD_MISSING)
    ctx = b.ctx
    b.use(sch)
    tq1 = next((s for s in segs if s.name == "TQ1"), None)
    b.use(tq1)
    out: JSON = {}
    idents = [i for i in (ei_identifier(sch.value(1), ctx, "PLAC"), ei_identifier(sch.value(2), ctx, "FILL")) if i]
    if idents:
        out["identifier"] = idents
    status = TRIGGERS[trigger] or _filler_status(sch, 25) or "booked"
    out["status"] = status
    service: JSON | None = None
    resources = [s for s in segs if s.name in _TIMES]
    for seg in resources:
        if seg.name == "AIS" and service is None:
            service = codeable(seg.value(3), ctx)
    if service:
        out["serviceType"] = [service]
    kind = codeable(sch.value(8), ctx, "0277")
    if kind:
        out["appointmentType"] = kind
    reason = codeable(sch.value(7), ctx, "0276")
    if reason:
        out["reasonCode"] = [reason]

    timing: list[tuple[Seg | None, int, int]] = [(sch, 11, 4), (tq1, 7, 1)]
    start_raw, start_where = _first(timing)
    end_raw, end_where = _first([(sch, 11, 5), (tq1, 8, 1)])
    duration = _minutes(sch, 9, 10)
    for seg in resources:
        start_f, dur_f, unit_f, _status = _TIMES[seg.name]
        if not start_raw and seg.text(start_f):
            start_raw, start_where = seg.text(start_f), seg.where(start_f)
            if duration is None:
                duration = _minutes(seg, dur_f, unit_f)
    if start_raw:
        out["start"] = datetime_(start_raw, start_where, ctx)
        if end_raw:
            out["end"] = datetime_(end_raw, end_where, ctx)
        elif duration is not None:
            out["end"] = shifted(start_raw, start_where, ctx, duration)
    if duration is not None and duration >= 1 and duration == int(duration):
        out["minutesDuration"] = int(duration)
    if "start" in out and "end" not in out:
        raise ConversionError(sch.where(11), "has a start but no end and no duration (expected SCH-11.5, TQ1-8, "
                              "or SCH-9/SCH-10 or a resource duration)", code=REQUIRED_FIELD_MISSING)
    if "start" not in out and status not in ("proposed", "cancelled", "waitlist"):
        raise ConversionError(sch.where(11), f"no start time for a {status} appointment (expected SCH-11.4, "
                              "TQ1-7 or the start of an AIS/AIG/AIL/AIP segment)", code=REQUIRED_FIELD_MISSING)
    comments = notes([s for s in segs if s.name == "NTE"])
    b.use(*(s for s in segs if s.name == "NTE"))
    if comments:
        out["comment"] = "\n".join(n["text"] for n in comments)
    based = [i for i in (ei_identifier(sch.value(26), ctx, "PLAC"), ei_identifier(sch.value(27), ctx, "FILL")) if i]
    if based:
        out["basedOn"] = [{"type": "ServiceRequest", "identifier": i} for i in based]

    participants: list[JSON] = []
    pid = next((s for s in segs if s.name == "PID"), None)
    if pid is not None:
        pd1 = next((s for s in segs if s.name == "PD1"), None)
        b.use(pid, pd1)
        who = patient(b, pid, pd1)
        participants.append({"actor": who.ref(), "status": _PARTICIPANT_STATUS.get(status, "accepted")})
    for seg in resources:
        b.use(seg)
        if seg.name == "AIS":
            continue
        actor: JSON | None
        if seg.name == "AIP":
            actor = practitioner(b, seg.value(3))
        elif seg.name == "AIL":
            actor = location(b, seg.value(3))
        else:
            v = seg.value(3)
            actor = {"display": v[2] or v[1]} if v is not None and (v[2] or v[1]) else None
        role = codeable(seg.value(4), ctx)
        if actor is None and role is None:
            continue
        part: JSON = {}
        if role:
            part["type"] = [role]
        if actor:
            part["actor"] = actor
        own = _filler_status(seg, _TIMES[seg.name][3])
        part["status"] = _PARTICIPANT_STATUS.get(own or status, "accepted")
        participants.append(part)
    if not participants:
        raise ConversionError("PID", "missing (an appointment needs a participant: a PID, AIP, AIL or AIG segment)",
                              code=REQUIRED_FIELD_MISSING)
    out["participant"] = participants
    key = next((i for i in reversed(idents)), None)
    if key is None:
        raise ConversionError(sch.where(1), "no appointment ID (expected the placer ID SCH-1 or the filler ID SCH-2)",
                              code=REQUIRED_FIELD_MISSING)
    criteria = search_key(key)
    slot = _slot(b, sch, out, participants[1:] if pid is not None else participants,
                 f"{criteria.get('system', '')}|{criteria['value']}")
    if slot:
        out["slot"] = [{"reference": slot}]
    b.upsert("Appointment", out, criteria)


_FREE = frozenset({"cancelled", "entered-in-error", "noshow"})


def _slot(b: Builder, sch: Seg, appointment: JSON, resources: list[JSON], key: str) -> str | None:
    """SCH-5 → the Schedule (created when new) and the appointment's Slot on it; None without SCH-5
    or without a start and an end (a Slot requires both)."""
    v = sch.value(5)
    if v is None or not v[1] or "start" not in appointment or "end" not in appointment:
        return None
    system = code_system_uri(v[3], b.ctx.code_systems)
    if not system or system.startswith("urn:ehrgate:codesystem:"):  # a local code: the sender's schedule
        system = b.ctx.default_authority
    ident: JSON = {"system": system, "value": v[1]}
    actors = [p["actor"] for p in resources if "actor" in p]
    schedule: JSON = {"identifier": [ident], "active": True,
                      "actor": actors or [{"display": v[2] or v[1]}]}
    if appointment.get("serviceType"):
        schedule["serviceType"] = appointment["serviceType"]
    if v[2]:
        schedule["comment"] = v[2]
    schedule_url = b.ensure("Schedule", schedule, search_key(ident))
    slot: JSON = {"schedule": {"reference": schedule_url}}
    if appointment.get("serviceType"):
        slot["serviceType"] = appointment["serviceType"]
    if appointment.get("appointmentType"):
        slot["appointmentType"] = appointment["appointmentType"]
    slot.update({"status": "free" if appointment["status"] in _FREE else "busy",
                 "start": appointment["start"], "end": appointment["end"]})
    return b.keyed("Slot", slot, f"{ident['system']}|{ident['value']}|slot|{key}")

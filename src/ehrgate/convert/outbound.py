"""FHIR → HL7 v2 builders for the outbound channels the store's outbox drives:

* ``appointment_to_siu``: Appointment booked/updated/cancelled → SIU^S12/S14/S15 (S26 no-show,
  S17 deletion), HL7 v2.5.1 chapter 10 (SCH, RGS, AIS, AIL, AIP);
* ``patient_to_adt``: Patient created/updated → ADT^A28/A31, or A04/A08 when the channel registers
  visits (``events="registration"``), chapter 3 (EVN, PID, PV1).

They are the inverse of the inbound maps for the elements both directions share, so a message this
module builds converts back to the same Appointment or Patient. Pure: the caller passes the
resources an Appointment refers to (``resources``, keyed by reference such as 'Patient/12'), the
control ID and the timestamp. Returns a parsed ``ehrgate.hl7.Message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote

from ..hl7 import Delimiters, Message, escape, format_timestamp, parse
from .datatypes import AUTHORITY_PREFIX
from .tables import APPOINTMENT_STATUS, MARITAL_STATUS

__all__ = ["Envelope", "OutboundError", "appointment_to_siu", "fhir_dtm", "patient_to_adt"]

JSON = dict[str, Any]
_D = Delimiters()
_GENDER = {"female": "F", "male": "M", "other": "O", "unknown": "U"}
_FILLER_STATUS = {v: k.capitalize() for k, v in APPOINTMENT_STATUS.items()} | {"checked-in": "Started",
                                                                             "arrived": "Started"}
_MARITAL = {code: v2 for v2, (code, _display, system) in MARITAL_STATUS.items() if system == "v3-MaritalStatus"}
_NAME_USE = {"official": "L", "usual": "D", "maiden": "M", "nickname": "N", "anonymous": "S", "old": "BAD",
             "temp": "TEMP"}
_TELECOM_USE = {"home": "PRN", "work": "WPN", "mobile": "PRS"}
_TELECOM_SYSTEM = {"phone": "PH", "fax": "FX", "email": "Internet", "pager": "BP"}
_BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
_SIU_EVENT = {"create": "S12", "update": "S14", "delete": "S17"}
_SIU_REASON = {"S12": "Booked", "S13": "Rescheduled", "S14": "Modified", "S15": "Cancelled", "S17": "Deleted",
               "S26": "No-show"}


class OutboundError(ValueError):
    """A resource that cannot be expressed as the requested message; names the element and why."""


@dataclass(frozen=True)
class Envelope:
    """MSH-3..6, MSH-11 and MSH-12 of the messages an outbound channel sends."""

    sending_application: str = "EHRGATE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"


def _e(text: Any) -> str:
    return escape(str(text), _D) if text not in (None, "") else ""


def _join(parts: list[str], sep: str) -> str:
    while parts and not parts[-1]:
        parts.pop()
    return sep.join(parts)


def _comp(*parts: Any) -> str:
    return _join([_e(p) for p in parts], "^")


def _segment(name: str, fields: Mapping[int, str]) -> str:
    top = max(fields) if fields else 0
    return _join([name] + [fields.get(n, "") for n in range(1, top + 1)], "|")


_FHIR_DT = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?)?)?(Z|[+-]\d{2}:\d{2})?")


def fhir_dtm(value: str) -> str:
    """FHIR date/dateTime/instant → HL7 DTM keeping precision and offset ('2024-03-15T08:30:00-05:00'
    → '20240315083000-0500')."""
    m = _FHIR_DT.fullmatch(value or "")
    if m is None:
        raise OutboundError(f"{value!r} is not a FHIR date or dateTime (expected YYYY-MM-DDThh:mm:ss+zz:zz)")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    out = year + (month or "") + (day or "") + (hour or "") + (minute or "") + (second or "") + (frac or "")
    if zone and hour:
        out += "+0000" if zone == "Z" else zone.replace(":", "")
    return out


def _msh(env: Envelope, kind: str, control_id: str, timestamp: str | datetime) -> str:
    return _segment("MSH", {1: "^~\\&", 2: _e(env.sending_application), 3: _e(env.sending_facility),
                            4: _e(env.receiving_application), 5: _e(env.receiving_facility),
                            6: format_timestamp(timestamp), 8: kind, 9: _e(control_id),
                            10: _e(env.processing_id), 11: _e(env.version)})


def _authority(system: str) -> str:
    if system.startswith(AUTHORITY_PREFIX):
        return _e(unquote(system[len(AUTHORITY_PREFIX):]))
    if system.startswith("urn:oid:"):
        return "&" + _e(system[8:]) + "&ISO"
    if system.startswith("urn:uuid:"):
        return "&" + _e(system[9:]) + "&UUID"
    return "&" + _e(system) + "&URI" if system else ""


def _cx(ident: JSON) -> str:
    kind = ((ident.get("type") or {}).get("coding") or [{}])[0].get("code", "")
    return _join([_e(ident.get("value", "")), "", "", _authority(ident.get("system", "")), _e(kind)], "^")


def _xpn(name: JSON) -> str:
    """HumanName → XPN; suffixes go where the inbound map reads them (XPN-4, XPN-6, XPN-14)."""
    given = name.get("given") or []
    suffix = [*(name.get("suffix") or []), "", ""]
    start, end = _period(name)
    return _join([_e(name.get("family", "")), _e(given[0] if given else ""), _e(" ".join(given[1:])),
                  _e(suffix[0]), _e((name.get("prefix") or [""])[0]), _e(suffix[1]),
                  _e(_NAME_USE.get(name.get("use", ""), "")), "", "", "", "", start, end,
                  _e(" ".join(suffix[2:]).strip())], "^")


def _period(element: JSON) -> tuple[str, str]:
    """A name's, address's or number's ``period`` → the DTMs of its effective and expiration dates."""
    period = element.get("period") or {}
    return (fhir_dtm(period["start"]) if period.get("start") else "",
            fhir_dtm(period["end"]) if period.get("end") else "")


def _xad(addr: JSON) -> str:
    lines = addr.get("line") or []
    kind = {"home": "H", "work": "O", "temp": "C", "old": "BA", "billing": "BI"}.get(addr.get("use", ""), "") or (
        "M" if addr.get("type") == "postal" else "")  # table 0190: M mailing (AddressType-Type.csv)
    start, end = _period(addr)
    return _join([_e(lines[0] if lines else ""), _e(" ".join(lines[1:])), _e(addr.get("city", "")),
                  _e(addr.get("state", "")), _e(addr.get("postalCode", "")), _e(addr.get("country", "")),
                  _e(kind), "", _e(addr.get("district", "")), "", "", "", start, end], "^")


def _xtn(cp: JSON) -> str:
    system = cp.get("system", "phone")
    value = _e(cp.get("value", ""))
    use = _TELECOM_USE.get(cp.get("use", ""), "")
    kind = "CP" if cp.get("use") == "mobile" and system == "phone" else _TELECOM_SYSTEM.get(system, "")
    start, end = _period(cp)
    dates = ["", "", "", "", "", "", "", "", start, end] if start or end else []  # XTN-13/14
    if system == "email":
        return _join(["", use or "NET", kind, value, *dates], "^")
    return _join([value, use, kind, "", *dates], "^")


def _pid(patient: JSON) -> str:
    f: dict[int, str] = {1: "1"}
    f[3] = "~".join(_cx(i) for i in patient.get("identifier", []) if i.get("value"))
    if not f[3]:
        raise OutboundError("Patient.identifier: none with a value (PID-3 needs at least one patient identifier)")
    f[5] = "~".join(_xpn(n) for n in patient.get("name", [])) or '""'
    birth_time = next((e.get("valueDateTime") for e in (patient.get("_birthDate") or {}).get("extension", [])
                       if e.get("url") == _BIRTH_TIME), None)
    if birth_time or patient.get("birthDate"):
        f[7] = fhir_dtm(birth_time or patient["birthDate"])
    if patient.get("gender"):
        f[8] = _GENDER.get(patient["gender"], "U")
    f[11] = "~".join(_xad(a) for a in patient.get("address", []))
    telecom = patient.get("telecom", [])
    f[13] = "~".join(_xtn(t) for t in telecom if t.get("use") != "work")
    f[14] = "~".join(_xtn(t) for t in telecom if t.get("use") == "work")
    languages = patient.get("communication") or []
    language = next((c for c in languages if c.get("preferred")), languages[0] if languages else None)
    if language and language.get("language"):
        f[15] = _cwe(language["language"])
    marital = ((patient.get("maritalStatus") or {}).get("coding") or [{}])[0].get("code", "")
    if marital in _MARITAL:
        f[16] = _MARITAL[marital]
    if patient.get("multipleBirthInteger"):
        f[24], f[25] = "Y", str(patient["multipleBirthInteger"])
    elif "multipleBirthBoolean" in patient:
        f[24] = "Y" if patient["multipleBirthBoolean"] else "N"
    if patient.get("deceasedDateTime"):
        f[29] = fhir_dtm(patient["deceasedDateTime"])
        f[30] = "Y"
    elif "deceasedBoolean" in patient:
        f[30] = "Y" if patient["deceasedBoolean"] else "N"
    return _segment("PID", {k: v for k, v in f.items() if v})


def patient_to_adt(patient: JSON, *, action: Literal["create", "update"], control_id: str,
                   timestamp: str | datetime, events: Literal["person", "registration"] = "person",
                   envelope: Envelope | None = None) -> Message:
    """Patient → ADT^A28 (create) / A31 (update), or A04 / A08 with ``events='registration'``."""
    if patient.get("resourceType") != "Patient":
        raise OutboundError(f"resourceType is {patient.get('resourceType')!r}; patient_to_adt takes a Patient")
    trigger = {("person", "create"): "A28", ("person", "update"): "A31", ("registration", "create"): "A04",
               ("registration", "update"): "A08"}.get((events, action))
    if trigger is None:
        raise OutboundError(f"action {action!r} with events {events!r} has no ADT event (expected action create "
                            "or update, events person or registration)")
    env = envelope or Envelope()
    structure = "ADT_A05" if trigger in ("A28", "A31", "A04", "A08") else "ADT_A01"
    when = format_timestamp(timestamp)
    segments = [_msh(env, f"ADT^{trigger}^{structure}", control_id, timestamp),
                _segment("EVN", {1: trigger, 2: when}), _pid(patient), _segment("PV1", {1: "1", 2: "N"})]
    return parse("\r".join(segments) + "\r")


def _participant_segments(appointment: JSON, resources: Mapping[str, JSON]) -> tuple[JSON | None, list[str]]:
    patient: JSON | None = None
    out: list[str] = []
    n_ail = n_aip = 0
    for part in appointment.get("participant", []):
        actor = part.get("actor") or {}
        ref = actor.get("reference", "")
        kind = ref.split("/")[0] if "/" in ref else ""
        found = resources.get(ref)
        role = ((part.get("type") or [{}])[0].get("coding") or [{}])[0]
        if kind == "Patient":
            patient = found or patient
        elif kind == "Location":
            n_ail += 1
            first = ((found or {}).get("identifier") or [{}])[0]
            ident = first.get("value", "")
            name = (found or {}).get("name") or actor.get("display", "")
            # PL.10 (EI, subcomponents): the identifier with its system, which PL.1 cannot carry
            comprehensive = _ei(first).replace("^", "&") if ident and first.get("system") else ""
            out.append(_segment("AIL", {1: str(n_ail), 2: "A", 3: _join(
                [_e(ident or name), "", "", "", "", "", "", "", _e(name), comprehensive], "^")}))
        elif kind in ("Practitioner", "PractitionerRole") or (not kind and actor.get("display")):
            n_aip += 1
            ident = ((found or {}).get("identifier") or [{}])[0].get("value", "")
            name = ((found or {}).get("name") or [{}])[0]
            person = _join([_e(ident), _e(name.get("family", "")) or _e(actor.get("display", "")),
                            _e((name.get("given") or [""])[0])], "^")
            out.append(_segment("AIP", {1: str(n_aip), 2: "A", 3: person,
                                        4: _comp(role.get("code", ""), role.get("display", ""))}))
    return patient, out


def appointment_to_siu(appointment: JSON, *, action: Literal["create", "update", "delete"], control_id: str,
                       timestamp: str | datetime, resources: Mapping[str, JSON] | None = None,
                       envelope: Envelope | None = None) -> Message:
    """Appointment → SIU: create S12, update S14, cancelled S15, no-show S26, delete S17."""
    if appointment.get("resourceType") != "Appointment":
        raise OutboundError(f"resourceType is {appointment.get('resourceType')!r}; appointment_to_siu takes an "
                            "Appointment")
    status = appointment.get("status", "")
    trigger = _SIU_EVENT.get(action)
    if trigger is None:
        raise OutboundError(f"action {action!r} has no SIU event (expected create, update or delete)")
    if action != "delete" and status == "cancelled":
        trigger = "S15"
    elif action != "delete" and status == "noshow":
        trigger = "S26"
    env = envelope or Envelope()
    idents = appointment.get("identifier", [])
    placer = next((i for i in idents if _type_code(i) == "PLAC"), None)
    filler = next((i for i in idents if _type_code(i) == "FILL"), None) or next(
        (i for i in idents if i is not placer), None)
    f: dict[int, str] = {}
    if placer:
        f[1] = _ei(placer)
    f[2] = _ei(filler) if filler else _comp(appointment.get("id", ""), env.sending_application)
    if not f[2]:
        raise OutboundError("Appointment.id and Appointment.identifier are empty (SCH-2 needs the appointment ID)")
    f[6] = _comp("", _SIU_REASON[trigger])
    reason = (appointment.get("reasonCode") or [{}])[0]
    f[7] = _cwe(reason)
    f[8] = _cwe(appointment.get("appointmentType") or {})
    start, end = appointment.get("start"), appointment.get("end")
    minutes = appointment.get("minutesDuration")
    if minutes is None and start and end:
        minutes = int((_parse_instant(end) - _parse_instant(start)).total_seconds() // 60)
    if minutes is not None:
        f[9], f[10] = str(minutes), "min^minutes^ANS+"
    if start:
        f[11] = _join(["", "", str(minutes) if minutes is not None else "", fhir_dtm(start),
                       fhir_dtm(end) if end else ""], "^")
    f[25] = _comp(_FILLER_STATUS.get(status, ""))
    segments = [_msh(env, f"SIU^{trigger}^SIU_S12", control_id, timestamp), _segment("SCH", f)]
    if appointment.get("comment"):
        segments.append(_segment("NTE", {1: "1", 3: _e(appointment["comment"])}))
    patient, resource_segments = _participant_segments(appointment, resources or {})
    if patient is not None:
        segments.append(_pid(patient))
    segments.append(_segment("RGS", {1: "1", 2: "A"}))
    service = (appointment.get("serviceType") or [None])[0]
    if service:
        segments.append(_segment("AIS", {1: "1", 2: "A", 3: _cwe(service),
                                         4: fhir_dtm(start) if start else ""}))
    segments.extend(resource_segments)
    return parse("\r".join(segments) + "\r")


def _type_code(ident: JSON) -> str:
    return str(((ident.get("type") or {}).get("coding") or [{}])[0].get("code", ""))


def _ei(ident: JSON) -> str:
    authority = _authority(ident.get("system", ""))
    ns, _, rest = authority.partition("&")
    uid, _, kind = rest.partition("&")
    return _join([_e(ident.get("value", "")), ns, uid, kind], "^")


def _cwe(cc: JSON) -> str:
    coding = (cc.get("coding") or [{}])[0]
    from .codesystems import LOCAL_PREFIX, SYSTEMS

    system = coding.get("system", "")
    names = {uri: name for name, uri in reversed(list(SYSTEMS.items()))}
    if system.startswith("http://terminology.hl7.org/CodeSystem/v2-"):
        name = "HL7" + system.rsplit("-", 1)[1]
    elif system.startswith(LOCAL_PREFIX):
        name = unquote(system[len(LOCAL_PREFIX):])
    else:
        name = names.get(system, "")
    return _join([_e(coding.get("code", "")), _e(coding.get("display", "")), _e(name), "", "", "", "", "",
                  _e(cc.get("text", ""))], "^")


def _parse_instant(value: str) -> datetime:
    text = value.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise OutboundError(f"{value!r} is not a FHIR instant (expected YYYY-MM-DDThh:mm:ss+zz:zz)") from None

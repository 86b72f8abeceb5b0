"""PV1 (+ PV2) → Encounter (IG segment map PV1[Encounter], vocabularies PatientClass[EncounterClass],
PatientClass[EncounterStatus], Event[EncounterStatus]).

The Encounter's identity is the visit number PV1-19 (else the alternate visit ID PV1-50); without
either, it is the patient's visit admitted at PV1-44, and without that, this message's visit.
"""

from __future__ import annotations

from html import escape
from typing import Any

from .bundle import Builder, search_key
from .codesystems import UCUM
from .datatypes import Ctx, codeable, coding, decimal, identifier
from .dtm import datetime_, is_null_date
from .parties import location, practitioner
from .patient import PatientRef
from .tables import (
    ENCOUNTER_CLASS,
    ENCOUNTER_PRIORITY,
    ENCOUNTER_STATUS_BY_CLASS,
    ENCOUNTER_STATUS_BY_EVENT,
    V2_0004,
)
from .values import Seg

__all__ = ["PV1_FIELDS", "PV2_FIELDS", "EncounterRef", "encounter"]

JSON = dict[str, Any]
PV1_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 19, 36, 38, 42, 44, 45, 50, 52})
PV2_FIELDS = frozenset({3, 8, 9, 11, 12, 13, 25, 38})
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
_PLANNED_START = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate"
_PLANNED_END = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate"
_ROLES = ((7, "ATND", "attender"), (8, "REF", "referrer"), (9, "CON", "consultant"), (17, "ADM", "admitter"),
          (52, "PART", "Participation"))
#: Triggers after which the visit is in progress whatever PV1 says (transfer, its cancellation,
#: class changes).
_IN_PROGRESS = frozenset({"A06", "A07", "A12"})


class EncounterRef:
    __slots__ = ("key", "url")

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    def ref(self) -> JSON:
        return {"reference": self.url}


def _status(pv1: Seg, trigger: str) -> str:
    by_event = ENCOUNTER_STATUS_BY_EVENT.get(trigger)
    if by_event:
        return by_event
    if trigger in _IN_PROGRESS:
        return "in-progress"
    if pv1.has(45):
        return "finished"
    return ENCOUNTER_STATUS_BY_CLASS.get(pv1.text(2).upper(), "unknown")


def _visit_details(pv2: Seg, out: JSON, ctx: Ctx) -> None:
    """PV2[Encounter]: PV2-11 actual length of stay (days, NM[Quantity-LengthOfStay]), PV2-25 visit
    priority (EncounterPriority), PV2-38 mode of arrival (the R4 encounter-modeOfArrival extension),
    PV2-8/PV2-9 expected admit/discharge (the R5 plannedStartDate/plannedEndDate as cross-version
    extensions), PV2-12 visit description (the narrative: ``additional``, as it is in no element)."""
    days = pv2.text(11)
    if days:
        out["length"] = {"value": decimal(days, pv2.where(11)), "unit": "days", "system": UCUM, "code": "d"}
    priority = pv2.value(25)
    if priority is not None and priority[1]:
        mapped = ENCOUNTER_PRIORITY.get(priority[1])
        found = {"coding": [{"system": _ACT_PRIORITY, "code": mapped[0], "display": mapped[1]}]} if mapped else (
            codeable(priority, ctx, "0217"))
        if found:
            out["priority"] = found
    exts = []
    arrival = coding(pv2.value(38), ctx, "0430")
    if arrival:
        exts.append({"url": "http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival", "valueCoding": arrival})
    for field, url in ((8, _PLANNED_START), (9, _PLANNED_END)):
        when = pv2.text(field)
        if when and not is_null_date(when):
            exts.append({"url": url, "valueDateTime": datetime_(when, pv2.where(field), ctx)})
    if exts:
        out["extension"] = exts
    description = pv2.string(12)
    if description:
        out["text"] = {"status": "additional",
                       "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{escape(description)}</div>'}


def encounter(b: Builder, pv1: Seg, who: PatientRef, *, pv2: Seg | None = None, trigger: str = "",
              update: bool = False) -> EncounterRef:
    ctx = b.ctx
    out: JSON = {}
    visit = identifier(pv1.value(19), ctx, type_code="VN")
    if visit is not None and not pv1.value(19)[5]:  # type: ignore[index]
        visit["type"]["text"] = "visit number"
    alternates = [i for i in (identifier(v, ctx) for v in pv1.reps(50)) if i]
    alternate = alternates[0] if alternates else None
    idents = [i for i in (visit, *alternates) if i]
    if idents:
        out["identifier"] = idents
    status = _status(pv1, trigger)
    out["status"] = status
    kind = pv1.text(2).upper()
    mapped = ENCOUNTER_CLASS.get(kind)
    if mapped:
        out["class"] = {"system": mapped[0], "code": mapped[1], "display": mapped[2]}
    elif kind:
        out["class"] = {"system": V2_0004, "code": kind}
    else:
        out["class"] = {"system": V2_0004, "code": "U", "display": "Unknown"}
    admission = codeable(pv1.value(4), ctx, "0007")
    if admission:
        out["type"] = [admission]
    service = codeable(pv1.value(10), ctx, "0069")
    if service:
        out["serviceType"] = service
    out["subject"] = who.ref()
    participants = []
    roles = [(pv1, field, code, text) for field, code, text in _ROLES]
    if pv2 is not None:
        roles.append((pv2, 13, "REF", "referrer"))  # PV2-13 referral source (PV2[Encounter])
    for seg, field, code, text in roles:
        for v in seg.reps(field):
            actor = practitioner(b, v)
            if actor:
                participants.append({"type": [{"coding": [{"system": _PARTICIPATION, "code": code}], "text": text}],
                                     "individual": actor})
    if participants:
        out["participant"] = participants
    start, end = pv1.text(44), pv1.text(45)
    if start or (end and trigger != "A13"):
        period: JSON = {}
        if start:
            period["start"] = datetime_(start, pv1.where(44), ctx)
        if end and trigger != "A13":
            period["end"] = datetime_(end, pv1.where(45), ctx)
        out["period"] = period
    if pv2 is not None:
        reasons = [c for c in (codeable(v, ctx) for v in pv2.reps(3)) if c]
        if reasons:
            out["reasonCode"] = reasons
        _visit_details(pv2, out, ctx)
    stay: JSON = {}
    pre = identifier(pv1.value(5), ctx)
    if pre:
        stay["preAdmissionIdentifier"] = pre
    for key, field, table in (("reAdmission", 13, "0092"), ("admitSource", 14, "0023"),
                              ("dischargeDisposition", 36, "0112")):
        found = codeable(pv1.value(field), ctx, table)
        if found:
            stay[key] = found
    for key, field, table in (("dietPreference", 38, "0114"), ("specialCourtesy", 16, "0099"),
                              ("specialArrangement", 15, "0009")):
        many = [c for c in (codeable(v, ctx, table) for v in pv1.reps(field)) if c]
        if many:
            stay[key] = many
    if stay:
        out["hospitalization"] = stay
    here = "completed" if status in ("finished", "cancelled") else "planned" if kind == "P" else "active"
    places = []
    for field, state in ((3, here), (11, here), (6, "completed"), (42, "reserved")):
        where = location(b, pv1.value(field))
        if where:
            places.append({"location": where, "status": state})
    if places:
        out["location"] = places
    key_ident = visit or alternate
    if key_ident is not None:
        criteria = search_key(key_ident)
        url = b.upsert("Encounter", out, criteria) if update else b.ensure("Encounter", out, criteria)
        return EncounterRef(url, f"{criteria.get('system', '')}|{criteria['value']}")
    key = f"{who.key}|visit|{start}" if start else f"{who.key}|message|{b.message_key}"
    return EncounterRef(b.keyed("Encounter", out, key), key)

"""VXU^V04 → Immunization (+ Patient, RelatedPerson, Observation) (IG message map VXU_V04; segment maps
ORC[Immunization], RXA[Immunization], RXR[Immunization]; CompletionStatus, RouteOfAdministration).

One Immunization per RXA, keyed by the filler order number ORC-3 (the record's ID in the sending
registry or EHR), else the placer's ORC-2, else the patient, vaccine and date. RXA-21 'D' marks
it entered-in-error; RXA-9 '00' (NIP001 "new immunization record") makes it a primary-source record.
OBXs after an RXA (VIS dates, funding eligibility) become Observations ``partOf`` the Immunization.
"""

from __future__ import annotations

from typing import Any

from .bundle import Builder, search_key
from .datatypes import codeable, decimal, ei_identifier, quantity
from .dtm import date, datetime_
from .encounter import EncounterRef, encounter
from .errors import REQUIRED_FIELD_MISSING, ConversionError
from .observation import observation
from .parties import location, organization_from_cwe, practitioner
from .patient import PatientRef, patient, related_person
from .tables import COMPLETION_STATUS, ROUTE
from .values import Seg

__all__ = ["RXA_FIELDS", "RXR_FIELDS", "convert"]

JSON = dict[str, Any]
RXA_FIELDS = frozenset({1, 2, 3, 5, 6, 7, 9, 10, 11, 15, 16, 17, 18, 19, 20, 21, 22, 27})
RXR_FIELDS = frozenset({1, 2})
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
_V3_ROUTES = frozenset({"AP", "B", "DT", "EP", "ET", "GTT", "GU", "IMR", "IA", "IB", "IC", "ICV", "IH", "IHA", "IM",
                        "IN", "IO", "IP", "IS", "IT", "IU", "MTH", "MM", "NS", "NG", "NP", "NT", "OP", "OT", "OTH",
                        "PF", "PO", "PR", "RM", "SD", "SL", "TP", "TRA", "TL", "UR", "VG", "VM", "WND", *ROUTE})
_FUNCTION = "http://terminology.hl7.org/CodeSystem/v2-0443"


def _groups(segs: list[Seg]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    last: list[Seg] | None = None
    for seg in segs:
        if seg.name == "ORC" or (seg.name == "RXA" and (current is None or current.get("rxa") is not None)):
            current = {"orc": seg if seg.name == "ORC" else None, "rxa": seg if seg.name == "RXA" else None,
                       "rxr": None, "obx": []}
            groups.append(current)
            last = None
        elif current is None:
            continue
        elif seg.name == "RXA":
            current["rxa"] = seg
        elif seg.name == "RXR" and current["rxr"] is None:
            current["rxr"] = seg
        elif seg.name == "OBX":
            last = []
            current["obx"].append((seg, last))
        elif seg.name == "NTE" and last is not None:
            last.append(seg)
    return groups


def _route(v: Any, b: Builder) -> JSON | None:
    cc = codeable(v, b.ctx, "0162")
    if cc is None:
        return None
    code = v[1].upper()
    if code in _V3_ROUTES and v[3].upper() in ("", "HL70162"):
        cc["coding"] = [{"system": V3_ROUTE, "code": ROUTE.get(code, code)}, *cc.get("coding", [])]
    return cc


def _immunization(b: Builder, group: dict[str, Any], who: PatientRef, visit: EncounterRef | None) -> str | None:
    ctx = b.ctx
    orc: Seg | None = group["orc"]
    rxa: Seg | None = group["rxa"]
    if rxa is None:
        return None
    rxr: Seg | None = group["rxr"]
    b.use(orc, rxa, rxr)
    out: JSON = {}
    idents = [i for i in ((ei_identifier(orc.value(2), ctx, "PLAC"), ei_identifier(orc.value(3), ctx, "FILL"))
                          if orc is not None else ()) if i]
    if idents:
        out["identifier"] = idents
    if rxa.text(21).upper() == "D":
        status = "entered-in-error"
    else:
        status = COMPLETION_STATUS.get(rxa.text(20).upper(), "completed")
    out["status"] = status
    refusal = codeable(rxa.value(18), ctx)
    if refusal and status == "not-done":
        out["statusReason"] = refusal
    vaccine = codeable(rxa.value(5), ctx)
    if vaccine is None:
        raise ConversionError(rxa.where(5), "missing (expected the administered vaccine, e.g. a CVX code)",
                              code=REQUIRED_FIELD_MISSING)
    out["vaccineCode"] = vaccine
    out["patient"] = who.ref()
    if visit is not None:
        out["encounter"] = visit.ref()
    given = rxa.text(3)
    if not given:
        raise ConversionError(rxa.where(3), "missing (expected the date/time the vaccine was given)",
                              code=REQUIRED_FIELD_MISSING)
    out["occurrenceDateTime"] = datetime_(given, rxa.where(3), ctx)
    if rxa.text(22):
        out["recorded"] = datetime_(rxa.text(22), rxa.where(22), ctx)
    notes = rxa.value(9)
    if notes is not None and notes[1]:
        out["primarySource"] = notes[1] == "00"
        if notes[1] != "00":
            origin = codeable(notes, ctx)
            if origin:
                out["reportOrigin"] = origin
    where = location(b, rxa.value(27) or rxa.value(11))
    if where:
        out["location"] = where
    maker = organization_from_cwe(b, rxa.value(17))
    if maker:
        out["manufacturer"] = maker
    if rxa.text(15):
        out["lotNumber"] = rxa.text(15)
    if rxa.text(16):
        out["expirationDate"] = date(rxa.text(16), rxa.where(16))
    if rxr is not None:
        site = codeable(rxr.value(2), ctx, "0163")
        if site:
            out["site"] = site
        route = _route(rxr.value(1), b)
        if route:
            out["route"] = route
    amount = rxa.text(6)
    if amount and amount != "999":
        out["doseQuantity"] = quantity(decimal(amount, rxa.where(6)), rxa.value(7), ctx)
    performers = []
    for seg, field, function in ((rxa, 10, "AP"), (orc, 12, "OP")):
        for v in seg.reps(field) if seg is not None else ():
            actor = practitioner(b, v)
            if actor:
                performers.append({"function": {"coding": [{"system": _FUNCTION, "code": function}]},
                                   "actor": actor})
    if performers:
        out["performer"] = performers
    reasons = [c for c in (codeable(v, ctx) for v in rxa.reps(19)) if c]
    if reasons:
        out["reasonCode"] = reasons
    key_ident = next((i for i in reversed(idents)), None)
    if key_ident is not None:
        return b.upsert("Immunization", out, search_key(key_ident))
    code = (vaccine.get("coding") or [{}])[0].get("code", vaccine.get("text", ""))
    return b.keyed("Immunization", out, f"{who.key}|immunization|{code}|{given}")


def convert(b: Builder, segs: list[Seg], trigger: str) -> None:
    pid = next((s for s in segs if s.name == "PID"), None)
    if pid is None:
        raise ConversionError("PID", f"missing ({b.message_type} needs the patient identification segment)",
                              code=REQUIRED_FIELD_MISSING)
    pd1 = next((s for s in segs if s.name == "PD1"), None)
    b.use(pid, pd1)
    who = patient(b, pid, pd1)
    visit = None
    pv1 = next((s for s in segs if s.name == "PV1"), None)
    if pv1 is not None and any(pv1.has(f) for f in (3, 19, 44, 50)):
        b.use(pv1)
        visit = encounter(b, pv1, who, update=False)
    first_order = next((i for i, s in enumerate(segs) if s.name in ("ORC", "RXA")), len(segs))
    seen: dict[tuple[str, str], int] = {}
    for seg in segs[:first_order]:
        if seg.name == "NK1":
            b.use(seg)
            related_person(b, seg, who)
        elif seg.name == "OBX":
            b.use(seg)
            n = seen[(seg.text(3), seg.text(4))] = seen.get((seg.text(3), seg.text(4)), 0) + 1
            observation(b, seg, who, scope=f"{who.key}|{b.message_key}", visit=visit, occurrence=n)
    for group in _groups(segs[first_order:]):
        url = _immunization(b, group, who, visit)
        seen = {}
        for obx, nte in group["obx"]:
            b.use(obx, *nte)
            n = seen[(obx.text(3), obx.text(4))] = seen.get((obx.text(3), obx.text(4)), 0) + 1
            extra = {"partOf": [{"reference": url}]} if url else None
            observation(b, obx, who, scope=f"{url or b.message_key}|vxu", visit=visit, nte=nte, extra=extra,
                        occurrence=n)


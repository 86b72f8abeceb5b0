"""PR1 → Procedure (IG segment map PR1[Procedure]; message map ADT_A01 PROCEDURE group).

A procedure is the patient's procedure of one code on one date: PR1-19 (procedure identifier)
keys it when the sender gives one, else the patient, the code and PR1-5. PR1 says nothing about
the procedure's state, and the IG's rule is "if not clear, use unknown".
"""

from __future__ import annotations

from typing import Any

from .bundle import Builder, search_key
from .datatypes import codeable, codeable_or_text, ei_identifier
from .dtm import datetime_, has_time, shifted
from .encounter import EncounterRef
from .parties import location, practitioner
from .patient import PatientRef
from .values import Seg

__all__ = ["PR1_FIELDS", "procedure"]

JSON = dict[str, Any]
PR1_FIELDS = frozenset({1, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 19, 23})
_SCT = "http://snomed.info/sct"
#: PR1 practitioner fields → performer.function (the IG's SNOMED CT codes; PR1-12 has none)
_PERFORMERS = ((8, "88189002", "Anesthesiologist"), (11, "304292004", "Surgeon"), (12, "", ""))


def procedure(b: Builder, pr1: Seg, who: PatientRef, visit: EncounterRef | None) -> str | None:
    """PR1 → Procedure; returns its fullUrl (None when PR1 names no procedure)."""
    ctx = b.ctx
    code = codeable_or_text(pr1.value(3), pr1.string(4), ctx)
    if code is None:
        return None
    out: JSON = {}
    ident = ei_identifier(pr1.value(19), ctx)
    if ident:
        out["identifier"] = [ident]
    out["status"] = "unknown"
    category = codeable(pr1.value(6), ctx, "0230")
    if category:
        out["category"] = category
    out["code"] = code
    out["subject"] = who.ref()
    if visit is not None:
        out["encounter"] = visit.ref()
    when = pr1.text(5)
    if when:
        start = datetime_(when, pr1.where(5), ctx)
        minutes = pr1.text(7)
        if minutes and has_time(when):  # PR1-7 procedure minutes: the end of the period
            out["performedPeriod"] = {"start": start, "end": shifted(when, pr1.where(5), ctx, _minutes(pr1))}
        else:
            out["performedDateTime"] = start
    performers = []
    for field, function, display in _PERFORMERS:
        for v in pr1.reps(field):
            actor = practitioner(b, v)
            if actor is None:
                continue
            entry: JSON = {}
            if function:
                entry["function"] = {"coding": [{"system": _SCT, "code": function, "display": display}]}
            entry["actor"] = actor
            performers.append(entry)
    if performers:
        out["performer"] = performers
    where = location(b, pr1.value(23))
    if where:
        out["location"] = where
    reasons = [c for c in (codeable(v, ctx) for v in pr1.reps(15)) if c]
    if reasons:
        out["reasonCode"] = reasons
    modifiers = [c for c in (codeable(v, ctx) for v in pr1.reps(16)) if c]
    if modifiers:  # PR1-16 procedure code modifier: the IG puts it with the code; R4 has no element
        out.setdefault("note", []).append({"text": "Code modifier: " + ", ".join(
            m.get("text") or m["coding"][0].get("code", "") for m in modifiers)})
    if ident is not None:
        return b.upsert("Procedure", out, search_key(ident))
    coding = (code.get("coding") or [{}])[0]
    key = f"{who.key}|procedure|{coding.get('system', '')}|{coding.get('code', '')}|{code.get('text', '')}|{when}"
    return b.keyed("Procedure", out, key)


def _minutes(pr1: Seg) -> float:
    from .datatypes import decimal

    return float(decimal(pr1.text(7), pr1.where(7)))

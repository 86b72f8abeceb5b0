"""ORC + OBR → ServiceRequest (IG segment maps ORC[ServiceRequest], OBR[ServiceRequest], TQ1[ServiceRequest];
vocabularies OrderControlCode[ServiceRequest.status], OrderStatus, ExtendedPriorityCodes).

Shared by orders (ORM/OML, which own the order: conditional update), results (ORU, which link to
it, creating it when the order was never seen) and documents (MDM). The order's identity is its
placer order number (ORC-2, else OBR-2), else its filler order number (ORC-3, else OBR-3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .bundle import Builder, search_key
from .datatypes import codeable, ei_identifier, identifier
from .dtm import datetime_, has_time, instant
from .encounter import EncounterRef
from .errors import ConversionError
from .observation import notes
from .parties import practitioner
from .patient import PatientRef
from .tables import ORDER_CONTROL_STATUS, ORDER_STATUS, PRIORITY, REPORT_STATUS
from .values import Seg

__all__ = ["OBR_ORDER_FIELDS", "ORC_FIELDS", "TQ1_FIELDS", "order_identifiers", "order_number", "order_people",
           "service_request"]

JSON = dict[str, Any]
ORC_FIELDS = frozenset({1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 19})
OBR_ORDER_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 10, 11, 16, 27, 29, 31, 53})
TQ1_FIELDS = frozenset({1, 7, 9})
_REPORT_TO_ORDER = {"final": "completed", "corrected": "completed", "cancelled": "revoked"}


def order_identifiers(b: Builder, orc: Seg | None, obr: Seg | None) -> list[JSON]:
    """Placer (PLAC) and filler (FILL) order numbers: ORC-2/3, else OBR-2/3."""
    out = []
    for field, kind in ((2, "PLAC"), (3, "FILL")):
        v = (orc.value(field) if orc is not None else None) or (obr.value(field) if obr is not None else None)
        found = ei_identifier(v, b.ctx, kind)
        if found:
            out.append(found)
    return out


def order_number(ident: JSON) -> str:
    """'system|value' of a placer or filler order number (what ``shared`` holds)."""
    return f"{ident.get('system', '')}|{ident['value']}"


def _status(orc: Seg | None, obr: Seg | None) -> str:
    if orc is not None:
        status = ORDER_STATUS.get(orc.text(5).upper()) or ORDER_CONTROL_STATUS.get(orc.text(1).upper())
        if status:
            return status
    if obr is not None:
        found = _REPORT_TO_ORDER.get(REPORT_STATUS.get(obr.text(25).upper(), ""))
        if found:
            return found
    return "unknown"


def service_request(b: Builder, orc: Seg | None, obr: Seg | None, who: PatientRef, *,
                    visit: EncounterRef | None = None, update: bool, scope: str, tq1: Seg | None = None,
                    nte: Sequence[Seg] = (), reasons: Sequence[JSON] = (), specimens: Sequence[str] = (),
                    supporting: Sequence[str] = (), shared: frozenset[str] = frozenset()) -> tuple[str, str]:
    """Returns (fullUrl, identity key). ``shared`` holds order numbers that several order groups of
    the message carry (a sender using ORC-2 for the requisition, or one accession number in OBR-3
    for every test of a specimen): those orders are keyed by their other order number instead, else
    by the shared number and the service code."""
    ctx = b.ctx
    out: JSON = {}
    idents = order_identifiers(b, orc, obr)
    if idents:
        out["identifier"] = idents
    if obr is not None:
        for v in obr.reps(53):  # alternate placer order numbers (CX)
            alternate = identifier(v, ctx, type_code="PLAC")
            if alternate:
                out.setdefault("identifier", []).append(alternate)
    if orc is not None and orc.value(4) is not None:
        group = ei_identifier(orc.value(4), ctx, "PGN")
        if group:
            out["requisition"] = group
    parents = []
    if obr is not None and obr.has(29) and not obr.has(50):
        parent = obr.value(29)  # EIP: the parent's placer and filler order numbers (OBR[ServiceRequest])
        for n, kind in ((1, "PLAC"), (2, "FILL")):
            found = ei_identifier(parent.part(n), ctx, kind) if parent is not None else None
            if found:
                parents.append({"type": "ServiceRequest", "identifier": found})
    if parents:
        out["basedOn"] = parents
    out["status"] = _status(orc, obr)
    out["intent"] = "reflex-order" if obr is not None and obr.text(11).upper() == "G" else "order"
    priority_code = ((tq1.text(9) if tq1 is not None else "") or (orc.text(7, 6) if orc is not None else "")
                     or (obr.text(27, 6) if obr is not None else "") or (obr.text(5) if obr is not None else ""))
    priority = PRIORITY.get(priority_code.upper())
    if priority:
        out["priority"] = priority
    if obr is not None:
        code = codeable(obr.value(4), ctx)
        if code:
            out["code"] = code
    out["subject"] = who.ref()
    if visit is not None:
        out["encounter"] = visit.ref()
    when, where = "", ""
    for seg, field, comp in ((tq1, 7, 1), (orc, 7, 4), (obr, 27, 4), (obr, 6, 1)):
        if seg is not None and seg.text(field, comp):
            when, where = seg.text(field, comp), seg.where(field)
            break
    if when:
        out["occurrenceDateTime"] = datetime_(when, where, ctx)
    if orc is not None and orc.text(9) and orc.text(1).upper() in ("NW", "SN", ""):
        out["authoredOn"] = datetime_(orc.text(9), orc.where(9), ctx)
    requester = (practitioner(b, orc.value(12)) if orc is not None else None) or (
        practitioner(b, obr.value(16)) if obr is not None else None)
    if requester:
        out["requester"] = requester
    if obr is not None:
        why = [c for c in (codeable(v, ctx) for v in obr.reps(31)) if c]
        if why:
            out["reasonCode"] = why
    if reasons:
        out["reasonReference"] = list(reasons)
    if supporting:
        out["supportingInfo"] = [{"reference": u} for u in supporting]
    if specimens:
        out["specimen"] = [{"reference": u} for u in specimens]
    annotations = notes(list(nte))
    if annotations:
        out["note"] = annotations
    key_ident = next((i for i in idents if order_number(i) not in shared), None)
    if key_ident is None and idents:
        code = out.get("code", {}).get("coding", [{}])[0].get("code", "")
        scope = f"{order_number(idents[0])}|{code}"
    if key_ident is not None:
        criteria = search_key(key_ident)
        url = b.upsert("ServiceRequest", out, criteria) if update else b.ensure("ServiceRequest", out, criteria)
        return url, f"{criteria.get('system', '')}|{criteria['value']}"
    return b.keyed("ServiceRequest", out, scope), scope


_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
#: ORC-1 (order control, table 0119) → Provenance.activity (ORC[Provenance]: CREATE / UPDATE / CANCEL)
_ORDER_ACTIVITY = {"NW": "CREATE", "SN": "CREATE", "CH": "CREATE", "CA": "CANCEL", "CR": "CANCEL", "OC": "CANCEL",
                   "OD": "CANCEL", "DC": "CANCEL", "DR": "CANCEL"}
#: ORC fields → Provenance.agent.type (IG segment map ORC[Provenance])
_ORDER_AGENTS = ((10, "enterer"), (11, "verifier"), (12, "author"), (19, "performer"))


def order_people(b: Builder, orc: Seg | None, obr: Seg | None, request: str | None, specimens: Sequence[str],
                 scope: str) -> None:
    """The order's people that ServiceRequest has no element for.

    * ORC-10 entered by, ORC-11 verified by, ORC-19 action by → a Provenance of the order (IG
      ORC[Provenance]: agents ``enterer``, ``verifier``, ``author`` (ORC-12), ``performer``; activity
      from ORC-1; ORC-9 the time). Written only when one of ORC-10/11/19 is valued: ORC-12 alone is
      already the ServiceRequest's requester.
    * OBR-10 collector → ``Specimen.collection.collector`` of the order's specimens (IG
      OBR[Specimen]); an order without an SPM has no Specimen to carry it.
    """
    if obr is not None and specimens:
        collector = practitioner(b, obr.value(10))
        if collector:
            for url in specimens:
                b.resource(url).setdefault("collection", {}).setdefault("collector", collector)
    if orc is None or request is None or not any(orc.has(f) for f in (10, 11, 19)):
        return
    agents = []
    for field, kind in _ORDER_AGENTS:
        for v in orc.reps(field):
            who = practitioner(b, v)
            if who:
                agents.append({"type": {"coding": [{"system": _PARTICIPANT, "code": kind}]}, "who": who})
    if not agents:
        return
    out: JSON = {"target": [{"reference": request}]}
    when = orc.text(9)
    recorded = ""
    if when:
        # lenient: this Provenance is about the order, not the order itself; a malformed ORC-9 does
        # not cost the message (the ServiceRequest's authoredOn, when read, still fails on it)
        try:
            out["occurredDateTime"] = datetime_(when, orc.where(9), b.ctx)
            recorded = instant(when, orc.where(9), b.ctx) if has_time(when) else ""
        except ConversionError as exc:
            b.warnings.append(f"{exc}; the order's Provenance takes the message time")
    out["recorded"] = recorded or b.recorded()
    control = orc.text(1).upper()
    if control:
        out["activity"] = {"coding": [{"system": _DATA_OPERATION, "code": _ORDER_ACTIVITY.get(control, "UPDATE")}],
                           "text": f"order control {control}"}
    out["agent"] = agents
    b.keyed("Provenance", out, f"{scope}|order|{b.message_key}")

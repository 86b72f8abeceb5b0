"""MDM T01-T11 → DocumentReference (IG message map MDM_T02; segment maps TXA[DocumentReference],
OBX[DocumentReference]).

The document's identity is TXA-12 (unique document number), its ``masterIdentifier``: a status
change (T03/T04), addendum (T05/T06), edit (T07/T08) or replacement (T09/T10) of a document
updates the DocumentReference the original (T01/T02) created; a cancel (T11) marks it
entered-in-error. TXA-13 (parent document number) relates the document to its parent: an addendum
``appends``, an edit ``transforms`` and a replacement ``replaces`` it (logical references by identifier).

Content (OBX-5), one ``content`` per OBX: ED → an Attachment with its data as sent (base64), TX/ST
→ the repetitions joined by line feeds as text/plain, FT → the same as text/x-hl7-ft with its
formatting commands kept, RP → the pointer as the attachment URL. A notification
without content (T01, T03, T05, T07, T09, T11) still needs one ``content`` in FHIR R4: its title
says the content was not sent.
"""

from __future__ import annotations

import base64
from typing import Any

from .bundle import Builder, search_key
from .datatypes import codeable, ei_identifier
from .dtm import has_time, instant
from .encounter import EncounterRef, encounter
from .errors import REQUIRED_FIELD_MISSING, UNSUPPORTED_MESSAGE_TYPE, ConversionError
from .observation import attachment
from .oru import group_orders
from .parties import practitioner
from .patient import patient
from .service_request import order_identifiers, service_request
from .values import Seg

__all__ = ["TRIGGERS", "TXA_FIELDS", "convert"]

JSON = dict[str, Any]
TXA_FIELDS = frozenset({1, 2, 3, 6, 9, 10, 12, 13, 16, 17, 18, 19, 25})
TRIGGERS = frozenset({f"T{n:02d}" for n in range(1, 12)})
_RELATION = {"T05": "appends", "T06": "appends", "T07": "transforms", "T08": "transforms", "T09": "replaces",
             "T10": "replaces"}
_DOC_STATUS = {"AU": "final", "LA": "final", "DI": "preliminary", "DO": "preliminary", "IP": "preliminary",
               "IN": "preliminary", "PA": "preliminary"}
_AVAILABILITY = {"AV": "current", "UN": "current", "OB": "superseded", "CA": "entered-in-error"}
_TEXT_TYPES = frozenset({"TX", "FT", "ST", "CF"})


def _text_attachment(text: str, mime: str) -> JSON:
    return {"attachment": {"contentType": mime, "data": base64.b64encode(text.encode()).decode()}}


def _content(b: Builder, obxs: list[Seg], txa: Seg) -> list[JSON]:
    """One content per OBX (OBX[DocumentReference]): its repetitions are the lines of a text."""
    out: list[JSON] = []
    for obx in obxs:
        kind = obx.text(2).upper()
        values = obx.reps(5)
        if kind == "ED":
            out.extend({"attachment": found} for found in (attachment(v) for v in values) if found)
        elif kind == "RP":
            out.extend({"attachment": {"url": v[1]}} for v in values if v[1])
        elif kind == "FT":  # formatted text keeps its formatting commands (\.br\, \.sp\, ...) as sent
            sep = obx.d.component or "^"
            text = "\n".join(sep.join(v.comps) for v in values)
            if text:
                out.append(_text_attachment(text, "text/x-hl7-ft"))
        elif kind in _TEXT_TYPES or not kind:
            text = "\n".join(v.text() for v in values)
            if text:
                out.append(_text_attachment(text, "text/plain; charset=utf-8"))
    if not out:
        title = txa.text(16) or "content not sent in this message"
        out.append({"attachment": {"title": title}})
    return out


def convert(b: Builder, segs: list[Seg], trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise ConversionError("MSH-9", f"MDM^{trigger or '?'} is not converted (expected one of "
                              f"{', '.join(sorted(TRIGGERS))})", code=UNSUPPORTED_MESSAGE_TYPE)
    txa = next((s for s in segs if s.name == "TXA"), None)
    if txa is None:
        raise ConversionError("TXA", f"missing (MDM^{trigger} needs the document notification segment)",
                              code=REQUIRED_FIELD_MISSING)
    groups = [g for g in group_orders(segs) if g.pid is not None]
    if not groups:
        raise ConversionError("PID", f"missing (MDM^{trigger} needs the patient identification segment)",
                              code=REQUIRED_FIELD_MISSING)
    group = groups[0]
    assert group.pid is not None
    ctx = b.ctx
    b.use(txa, group.pid, group.pd1)
    who = patient(b, group.pid, group.pd1)
    visit: EncounterRef | None = None
    if group.pv1 is not None and any(group.pv1.has(f) for f in (3, 19, 44, 50)):
        b.use(group.pv1, group.pv2)
        visit = encounter(b, group.pv1, who, pv2=group.pv2, update=False)
    related = []
    for index, order in enumerate(group.orders):
        if order.orc is None and order.obr is None:
            continue
        if not order_identifiers(b, order.orc, order.obr):
            continue
        b.use(order.orc, order.obr, order.tq1, *order.nte)
        url, _ = service_request(b, order.orc, order.obr, who, visit=visit, update=False,
                                 scope=f"{b.message_key}|order|{index}", tq1=order.tq1, nte=order.nte)
        related.append({"reference": url})
    obxs = [s for s in segs if s.name == "OBX" and s.index > txa.index]
    b.use(*obxs)
    out: JSON = {}
    master = ei_identifier(txa.value(12), ctx)
    if master:
        out["masterIdentifier"] = master
    if txa.text(16):
        out["identifier"] = [{"value": txa.text(16)}]
    status = "entered-in-error" if trigger == "T11" else _AVAILABILITY.get(txa.text(19).upper(), "current")
    out["status"] = status
    doc_status = _DOC_STATUS.get(txa.text(17).upper())
    if doc_status:
        out["docStatus"] = doc_status
    kind = codeable(txa.value(2), ctx, "0270")
    if kind:
        out["type"] = kind
    out["subject"] = who.ref()
    made = txa.text(6)
    if made and has_time(made):
        out["date"] = instant(made, txa.where(6), ctx)
    authors = [a for a in (practitioner(b, v) for v in txa.reps(9)) if a]
    if authors:
        out["author"] = authors
    checker = practitioner(b, txa.value(10))
    if checker:
        out["authenticator"] = checker
    parent = ei_identifier(txa.value(13), ctx)
    relation = _RELATION.get(trigger)
    if parent and relation:
        out["relatesTo"] = [{"code": relation, "target": {"type": "DocumentReference", "identifier": parent}}]
    title = txa.string(25)
    if title:
        out["description"] = title
    label = txa.text(18).upper()
    if label in ("V", "R", "U"):
        out["securityLabel"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0272",
                                             "code": label}]}]
    out["content"] = _content(b, obxs, txa)
    context: JSON = {}
    if visit is not None:
        context["encounter"] = [visit.ref()]
    if related:
        context["related"] = related
    if context:
        out["context"] = context
    if master is not None:
        b.upsert("DocumentReference", out, search_key(master))
    else:
        b.keyed("DocumentReference", out, f"{b.message_key}|document")

"""ORU^R01 and OUL^R22 → DiagnosticReport, Observation, Specimen (+ the ServiceRequest they answer)
(IG message map ORU_R01; segment maps OBR[DiagnosticReport], OBX[Observation], SPM[Specimen]).

A message may hold several patients, each with several order groups (ORC/OBR, their NTEs, OBXs
and SPMs). One DiagnosticReport per OBR, keyed by the filler order number (else the placer's):
a corrected report (OBR-25 C) updates the report and the results of the first. One Observation
per OBX, keyed by the report, OBX-3, OBX-4 and its rank among equal codes. OUL^R22 sends the SPM
before its orders: an order without an SPM of its own refers to the last SPM before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bundle import Builder, search_key
from .datatypes import absent_code, codeable
from .dtm import datetime_, is_null_date
from .encounter import EncounterRef, encounter
from .errors import REQUIRED_FIELD_MISSING, ConversionError
from .observation import issued_at, obr_specimen, observation, specimen
from .parties import practitioner
from .patient import PatientRef, patient
from .roles import to_encounter, to_observation, to_order, to_patient
from .service_request import order_identifiers, order_number, order_people, service_request
from .tables import REPORT_STATUS
from .values import Seg

__all__ = ["OBR_REPORT_FIELDS", "Order", "convert", "group_orders", "people"]

JSON = dict[str, Any]
OBR_REPORT_FIELDS = frozenset({7, 8, 14, 15, 22, 24, 25, 32, 33, 34, 35})
THO = "http://terminology.hl7.org/CodeSystem/"
_LAB_SECTIONS = frozenset({"", "LAB", "CH", "HM", "MB", "MCB", "MYC", "SR", "SP", "BLB", "CP", "IMM", "TX", "VR",
                           "PAT", "CG", "BG", "OSL", "HLA", "CUS"})

#: OBR[DiagnosticReport]: the performer's function by field (v3-ParticipationType)
_PERFORMER_FUNCTION = {34: ("SPRF", "secondary performer"), 35: ("TRANS", "Transcriber")}


def _performer_function(field: int) -> JSON:
    code, display = _PERFORMER_FUNCTION[field]
    return {"url": "http://hl7.org/fhir/StructureDefinition/event-performerFunction",
            "valueCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                 "code": code, "display": display}]}}


@dataclass
class Order:
    orc: Seg | None = None
    obr: Seg | None = None
    tq1: Seg | None = None
    nte: list[Seg] = field(default_factory=list)
    results: list[tuple[Seg, list[Seg]]] = field(default_factory=list)
    specimens: list[Seg] = field(default_factory=list)
    dg1: list[Seg] = field(default_factory=list)
    roles: list[Seg] = field(default_factory=list)
    """PRT/ROL of the order (after ORC, OBR, TQ1 or NTE, before the first OBX)."""
    result_roles: dict[int, list[Seg]] = field(default_factory=dict)
    """PRT/ROL after an OBX, by the OBX's position in the message."""
    about_specimen: dict[int, int] = field(default_factory=dict)
    """OBXs of a SPECIMEN group (after an SPM of the order): the OBX's position → the SPM's rank."""


@dataclass
class PatientGroup:
    pid: Seg | None
    pd1: Seg | None = None
    pv1: Seg | None = None
    pv2: Seg | None = None
    observations: list[tuple[Seg, list[Seg]]] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    loose_specimens: list[tuple[int, Seg]] = field(default_factory=list)
    patient_roles: list[Seg] = field(default_factory=list)
    visit_roles: list[Seg] = field(default_factory=list)


def group_orders(segs: list[Seg]) -> list[PatientGroup]:
    """Split a results or orders message into patients and their order groups."""
    groups: list[PatientGroup] = []
    group: PatientGroup | None = None
    order: Order | None = None
    last: list[Seg] | None = None  # where the next NTE goes
    roles: list[Seg] | None = None  # where the next PRT/ROL goes
    for seg in segs:
        name = seg.name
        if name == "PID":
            group, order, last = PatientGroup(seg), None, None
            groups.append(group)
            roles = group.patient_roles
        elif group is None and name not in ("ORC", "OBR", "OBX", "SPM"):
            continue
        elif group is None:  # ORU/OUL without a PATIENT group (optional in ORU_R01): results only
            group = PatientGroup(None)
            groups.append(group)
        if group is None or name == "PID":
            continue
        if name in ("PD1", "PV1", "PV2") and order is None:
            setattr(group, name.lower(), seg)
            last = None
            if name != "PD1":
                roles = group.visit_roles
        elif name == "ORC":
            if order is not None and order.orc is None and order.obr is not None and not order.results:
                order.orc = seg  # OUL_R22 and OML_O33 put the ORC after its OBR
            else:
                order = Order(orc=seg)
                group.orders.append(order)
            last, roles = order.nte, order.roles
        elif name == "OBR":
            if order is None or order.obr is not None or order.results:
                order = Order()
                group.orders.append(order)
            order.obr = seg
            last, roles = order.nte, order.roles
        elif name == "TQ1" and order is not None:
            order.tq1 = order.tq1 or seg
        elif name == "OBX":
            notes: list[Seg] = []
            if order is None:
                group.observations.append((seg, notes))
                roles = None
            else:
                order.results.append((seg, notes))
                roles = order.result_roles.setdefault(seg.index, [])
                if order.specimens:  # ORU_R01 SPECIMEN.SPECIMEN_OBSERVATION: after the order's SPM
                    order.about_specimen[seg.index] = len(order.specimens) - 1
            last = notes
        elif name == "SPM":
            if order is None or (order.obr is None and order.orc is None):
                group.loose_specimens.append((len(group.orders), seg))
            else:
                order.specimens.append(seg)
            last, roles = None, None
        elif name == "DG1" and order is not None:
            order.dg1.append(seg)
        elif name in ("PRT", "ROL") and roles is not None:
            roles.append(seg)
        elif name == "NTE" and last is not None:
            last.append(seg)
    return groups


def shared_placers(b: Builder, orders: list[Order]) -> frozenset[str]:
    """Order numbers (placer or filler, ``order_number``) carried by more than one order group of
    the message: they identify a requisition or an accession, not one order or report."""
    if len(orders) < 2:
        return frozenset()
    seen: dict[str, int] = {}
    for order in orders:
        for number in {order_number(i) for i in order_identifiers(b, order.orc, order.obr)}:
            seen[number] = seen.get(number, 0) + 1
    return frozenset(v for v, n in seen.items() if n > 1)


def _report_status(obr: Seg) -> str:
    return REPORT_STATUS.get(obr.text(25).upper(), "unknown")


def convert(b: Builder, segs: list[Seg], trigger: str) -> None:
    groups = group_orders(segs)
    if not groups:
        raise ConversionError("PID", f"missing ({b.message_type} needs the patient identification segment)",
                              code=REQUIRED_FIELD_MISSING)
    for group in groups:
        b.use(group.pid, group.pd1)
        who = patient(b, group.pid, group.pd1) if group.pid is not None else PatientRef("", b.message_key)
        visit: EncounterRef | None = None
        if group.pv1 is not None and any(group.pv1.has(f) for f in (3, 19, 44, 50)):
            b.use(group.pv1, group.pv2)
            visit = encounter(b, group.pv1, who, pv2=group.pv2, update=False)
        people(b, group, who, visit)
        seen: dict[tuple[str, str], int] = {}
        for obx, nte in group.observations:
            b.use(obx, *nte)
            n = seen[(obx.text(3), obx.text(4))] = seen.get((obx.text(3), obx.text(4)), 0) + 1
            observation(b, obx, who, scope=f"{who.key}|{b.message_key}", visit=visit, nte=nte, occurrence=n)
        loose: list[str] = []
        shared = shared_placers(b, group.orders)
        for index, order in enumerate(group.orders):
            for at, spm in group.loose_specimens:
                if at <= index:
                    b.use(spm)
                    loose = [specimen(b, spm, who, scope=f"{b.message_key}|{group.pid.seq if group.pid else 0}")]
            _report(b, order, who, visit, index, loose, shared)


def people(b: Builder, group: PatientGroup, who: PatientRef, visit: EncounterRef | None) -> None:
    """PRT/ROL of the PATIENT and VISIT groups (roles.py)."""
    for seg in group.patient_roles:
        to_patient(b, seg, who.url)
    if visit is not None:
        for seg in group.visit_roles:
            to_encounter(b, seg, visit.url)


def _report(b: Builder, order: Order, who: PatientRef, visit: EncounterRef | None, index: int,
            loose: list[str], shared: frozenset[str]) -> None:
    obr = order.obr
    b.use(order.orc, obr, order.tq1, *order.nte)
    idents = order_identifiers(b, order.orc, obr)
    scope = f"{b.message_key}|order|{index}"
    request = None
    if idents and who.url:
        request, _ = service_request(b, order.orc, obr, who, visit=visit, update=False, scope=scope,
                                     tq1=order.tq1, nte=order.nte, shared=shared)
    if obr is None:
        return
    ctx = b.ctx
    specimens = []
    for spm in order.specimens:
        b.use(spm)
        specimens.append(specimen(b, spm, who, scope=scope))
    specimens = specimens or loose
    if not specimens:  # v2.3/v2.4: the specimen is described in OBR (one per order: its numbers)
        found = obr_specimen(b, obr, who, f"{'|'.join(order_number(i) for i in idents) or scope}|obr")
        if found:
            specimens = [found]
    order_people(b, order.orc, obr, request, specimens, scope)
    out: JSON = {}
    if idents:
        out["identifier"] = idents
    if request:
        out["basedOn"] = [{"reference": request}]
    out["status"] = _report_status(obr)
    section = obr.text(24).upper()
    category = codeable(obr.value(24), ctx, "0074")
    if category:
        out["category"] = [category]
    code = codeable(obr.value(4), ctx)
    if code is None:
        b.warnings.append(f"{obr.where(4)}: empty; the DiagnosticReport's code is marked unknown (data-absent-reason)")
        code = absent_code()
    out["code"] = code
    if who.url:
        out["subject"] = who.ref()
    if visit is not None:
        out["encounter"] = visit.ref()
    collected, collected_end = (t if not is_null_date(t) else "" for t in (obr.text(7), obr.text(8)))
    effective = datetime_(collected, obr.where(7), ctx) if collected else ""
    if effective and collected_end:
        out["effectivePeriod"] = {"start": effective, "end": datetime_(collected_end, obr.where(8), ctx)}
    elif effective:
        out["effectiveDateTime"] = effective
    issued = issued_at(obr.text(22), obr.where(22), b)
    if issued:
        out["issued"] = issued
    # OBR-32/33 interpreters, OBR-34/35 technician and transcriptionist: NDL, whose component 1 is a
    # CNN with subcomponents that line up with XCN's components. OBR[DiagnosticReport] marks each
    # performer's part with event-performerFunction: SPRF (OBR-34), TRANS (OBR-35).
    interpreters = [p for f in (32, 33) for p in (practitioner(b, v.part(1)) for v in obr.reps(f)) if p]
    if interpreters:
        out["resultsInterpreter"] = interpreters
    performers = [{**p, "extension": [_performer_function(f)]} for f in (34, 35)
                  for p in (practitioner(b, v.part(1)) for v in obr.reps(f)) if p]
    if performers:
        out["performer"] = performers
    if specimens:
        out["specimen"] = [{"reference": u} for u in specimens]
    for seg in order.roles:
        to_order(b, seg, request=request, report=out, specimens=specimens)
    key_ident = next((i for i in reversed(idents) if order_number(i) not in shared), None)
    report_key = order_number(key_ident) if key_ident else scope
    if key_ident is None and idents:  # an accession number several reports share: it and the test
        coding = (code.get("coding") or [{}])[0]
        report_key = f"{order_number(idents[-1])}|{coding.get('system', '')}|{coding.get('code', '')}"
    results = []
    seen: dict[tuple[str, ...], int] = {}
    lab = "laboratory" if section in _LAB_SECTIONS else ""
    for obx, nte in order.results:
        b.use(obx, *nte)
        rank = order.about_specimen.get(obx.index)
        if rank is not None and rank < len(specimens):
            # ORU_R01 SPECIMEN_OBSERVATION: an Observation whose focus is the Specimen, not a result
            scope_key = f"{report_key}|specimen|{rank}"
            n = seen[(scope_key, obx.text(3), obx.text(4))] = seen.get((scope_key, obx.text(3), obx.text(4)), 0) + 1
            url = observation(b, obx, who, scope=scope_key, visit=visit, nte=nte, effective=effective, issued=issued,
                              category=lab, extra={"focus": [{"reference": specimens[rank]}]}, occurrence=n)
            for seg in order.result_roles.get(obx.index, ()):
                to_observation(b, seg, url)
            continue
        n = seen[(obx.text(3), obx.text(4))] = seen.get((obx.text(3), obx.text(4)), 0) + 1
        extra = {"basedOn": [{"reference": request}]} if request else None
        url = observation(b, obx, who, scope=report_key, visit=visit, nte=nte, effective=effective,
                          issued=issued, category=lab, extra=extra, occurrence=n)
        if specimens and "specimen" not in b.resource(url):
            b.resource(url)["specimen"] = {"reference": specimens[0]}
        for seg in order.result_roles.get(obx.index, ()):
            to_observation(b, seg, url)
        results.append({"reference": url})
    if results:
        out["result"] = results
    if key_ident is not None:
        criteria = search_key(key_ident)
        b.upsert("DiagnosticReport", out, criteria)
    else:
        b.keyed("DiagnosticReport", out, report_key)

"""ORM^O01 and OML^O21 → ServiceRequest (+ Condition, Observation, Specimen)
(IG message maps ORM_O01, OML_O21; segment maps ORC[ServiceRequest], OBR[ServiceRequest]).

Orders own their ServiceRequest: each ORC/OBR group is a conditional update keyed by the placer
order number, so the cancel (ORC-1 CA/OC, ORC-5 CA) of an order updates the request the new order
(NW) created. DG1s of the group become the request's reasons, its OBXs supporting information and
its SPMs (OML) its specimens.
"""

from __future__ import annotations

from .bundle import Builder
from .clinical import condition
from .encounter import EncounterRef, encounter
from .errors import REQUIRED_FIELD_MISSING, ConversionError
from .observation import observation, specimen
from .oru import group_orders, people, shared_placers
from .patient import patient
from .roles import to_observation, to_order
from .service_request import order_identifiers, order_number, order_people, service_request

__all__ = ["convert"]


def convert(b: Builder, segs: list, trigger: str) -> None:  # type: ignore[type-arg]
    groups = group_orders(segs)
    if not groups or any(g.pid is None for g in groups):
        raise ConversionError("PID", f"missing ({b.message_type} needs the patient identification segment)",
                              code=REQUIRED_FIELD_MISSING)
    for group in groups:
        assert group.pid is not None
        b.use(group.pid, group.pd1)
        who = patient(b, group.pid, group.pd1)
        visit: EncounterRef | None = None
        if group.pv1 is not None and any(group.pv1.has(f) for f in (3, 19, 44, 50)):
            b.use(group.pv1, group.pv2)
            visit = encounter(b, group.pv1, who, pv2=group.pv2, update=False)
        people(b, group, who, visit)
        shared = shared_placers(b, group.orders)
        for index, order in enumerate(group.orders):
            b.use(order.orc, order.obr, order.tq1, *order.nte)
            idents = order_identifiers(b, order.orc, order.obr)
            # the order's own number (as service_request keys it): a requisition number several
            # orders share would give their supporting OBX and SPM one identity
            own = next((i for i in idents if order_number(i) not in shared), None)
            scope = (order_number(own) if own is not None
                     else f"{order_number(idents[0])}|{order.obr.text(4) if order.obr else ''}" if idents
                     else f"{b.message_key}|order|{index}")
            reasons = []
            for dg1 in order.dg1:
                b.use(dg1)
                found = condition(b, dg1, who, visit)
                if found:
                    reasons.append({"reference": found})
            specimens = []
            for spm in order.specimens:
                b.use(spm)
                specimens.append(specimen(b, spm, who, scope=scope))
            for at, spm in group.loose_specimens:
                if at <= index + 1 and not order.specimens:
                    b.use(spm)
                    specimens.append(specimen(b, spm, who, scope=f"{b.message_key}|{group.pid.seq}"))
            supporting = []
            seen: dict[tuple[str, str], int] = {}
            for obx, nte in order.results:
                b.use(obx, *nte)
                n = seen[(obx.text(3), obx.text(4))] = seen.get((obx.text(3), obx.text(4)), 0) + 1
                url = observation(b, obx, who, scope=f"{scope}|supporting", visit=visit, nte=nte, occurrence=n)
                for seg in order.result_roles.get(obx.index, ()):
                    to_observation(b, seg, url)
                supporting.append(url)
            request, _ = service_request(b, order.orc, order.obr, who, visit=visit, update=True, scope=scope,
                                         tq1=order.tq1, nte=order.nte, reasons=reasons, specimens=specimens,
                                         supporting=supporting, shared=shared)
            order_people(b, order.orc, order.obr, request, specimens, scope)
            for seg in order.roles:
                to_order(b, seg, request=request, report=None, specimens=specimens)

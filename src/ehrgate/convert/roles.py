"""ROL and PRT → who took part, and in what role (IG segment maps ROL[Encounter-PractitionerRole],
ROL[Patient-GeneralPractitioner], PRT[Patient-GeneralPractitioner-Practitioner]; message map
ADT_A01, which places them by the segment they follow).

ROL (HL7 v2.5 section 15.4.7) and its v2.7 successor PRT (section 7.4.4) name a person (ROL-4,
PRT-5) or an organisation (ROL-14, PRT-8) in a role (ROL-3, table 0443; PRT-4, table 0912) for a
period (ROL-5/6, PRT-11/12). Where they stand decides what they describe:

* after PID/PD1, role ``PP`` (primary care provider) → ``Patient.generalPractitioner``;
* after PV1/PV2 → ``Encounter.participant`` (type, period, individual);
* after PR1 → ``Procedure.performer`` (function, actor);
* in an order group (ORU_R01, OML_O21 maps), by role: ``OP`` ordering provider →
  ``ServiceRequest.requester`` (when ORC-12/OBR-16 left it empty), ``ARI``/``TN``/``TR`` →
  ``DiagnosticReport.performer``, ``PRI`` → ``DiagnosticReport.resultsInterpreter``, ``SC``
  specimen collector → ``Specimen.collection.collector``; after an OBX, the person →
  ``Observation.performer``.

The IG points each person at a PractitionerRole; this package writes the Practitioner and the
role code next to it (one resource per person, not one per person and role). ROL-2/PRT-2 ``DE``
(delete) leaves the role out. ROLs in the insurance group are not mapped (the IG maps none), nor
the IG's devices (PRT-10) and observation locations (PRT-9/14).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bundle import Builder
from .datatypes import codeable
from .dtm import datetime_
from .parties import organization, practitioner
from .values import Seg

__all__ = ["PRT_FIELDS", "ROL_FIELDS", "Role", "role", "to_encounter", "to_observation", "to_order", "to_patient",
           "to_procedure"]

JSON = dict[str, Any]
ROL_FIELDS = frozenset({2, 3, 4, 5, 6, 14})
PRT_FIELDS = frozenset({2, 4, 5, 8, 11, 12})
#: (role, person, organisation, begin, end, role table) field numbers per segment
_LAYOUT = {"ROL": (3, 4, 14, 5, 6, "0443"), "PRT": (4, 5, 8, 11, 12, "0912")}


@dataclass
class Role:
    code: str
    """ROL-3.1 / PRT-4.1 as sent, upper case ('PP', 'AT', ...)."""
    kind: JSON | None
    person: JSON | None
    organization: JSON | None
    period: JSON | None

    @property
    def actor(self) -> JSON | None:
        return self.person or self.organization

    def participant(self) -> JSON | None:
        """Encounter.participant (a person only: R4 does not allow an Organization there)."""
        if self.person is None:
            return None
        out: JSON = {}
        if self.kind:
            out["type"] = [self.kind]
        if self.period:
            out["period"] = self.period
        out["individual"] = self.person
        return out

    def performer(self) -> JSON | None:
        """Procedure.performer."""
        actor = self.actor
        if actor is None:
            return None
        out: JSON = {}
        if self.kind:
            out["function"] = self.kind
        out["actor"] = actor
        return out


def role(b: Builder, seg: Seg) -> Role | None:
    """ROL/PRT → the role, its person/organisation and period; None for a deletion or an empty one."""
    kind_f, person_f, org_f, begin_f, end_f, table = _LAYOUT[seg.name]
    if seg.text(2).upper() == "DE":
        return None
    ctx = b.ctx
    person = practitioner(b, seg.value(person_f))
    org = organization(b, seg.value(org_f))
    if person is None and org is None:
        return None
    period = {k: datetime_(seg.text(f), seg.where(f), ctx) for k, f in (("start", begin_f), ("end", end_f))
              if seg.text(f)}
    return Role(seg.text(kind_f).upper(), codeable(seg.value(kind_f), ctx, table), person, org, period or None)


def to_patient(b: Builder, seg: Seg, patient_url: str) -> None:
    """A ROL/PRT after PID: role PP → ``Patient.generalPractitioner``; other roles are not mapped."""
    if seg.text(3 if seg.name == "ROL" else 4).upper() != "PP":
        return
    found = role(b, seg)
    actor = found.actor if found is not None else None
    if actor is None or not patient_url:
        return
    b.use(seg)
    doctors = b.resource(patient_url).setdefault("generalPractitioner", [])
    if actor not in doctors:
        doctors.append(actor)


def to_encounter(b: Builder, seg: Seg, encounter_url: str) -> None:
    found = role(b, seg)
    entry = found.participant() if found is not None else None
    if entry is not None:
        b.use(seg)
        b.resource(encounter_url).setdefault("participant", []).append(entry)


def to_procedure(b: Builder, seg: Seg, procedure_url: str) -> None:
    found = role(b, seg)
    entry = found.performer() if found is not None else None
    if entry is not None:
        b.use(seg)
        b.resource(procedure_url).setdefault("performer", []).append(entry)


def to_order(b: Builder, seg: Seg, *, request: str | None, report: JSON | None, specimens: list[str]) -> None:
    """A PRT/ROL of an order group into the order, its report or its specimens, by role."""
    found = role(b, seg)
    if found is None:
        return
    code = found.code
    if code == "OP" and request and found.actor is not None:
        b.resource(request).setdefault("requester", found.actor)
    elif code in ("ARI", "TN", "TR") and report is not None and found.actor is not None:
        report.setdefault("performer", []).append(found.actor)
    elif code == "PRI" and report is not None and found.person is not None:
        report.setdefault("resultsInterpreter", []).append(found.person)
    elif code == "SC" and specimens and found.person is not None:
        for url in specimens:
            b.resource(url).setdefault("collection", {}).setdefault("collector", found.person)
    else:
        return
    b.use(seg)


def to_observation(b: Builder, seg: Seg, observation_url: str) -> None:
    """A PRT/ROL after an OBX: the person (PRT-5) performed the observation."""
    found = role(b, seg)
    if found is None or found.actor is None:
        return
    performers = b.resource(observation_url).setdefault("performer", [])
    if found.actor not in performers:
        performers.append(found.actor)
    b.use(seg)

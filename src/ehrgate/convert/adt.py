"""ADT → Patient, Encounter, RelatedPerson, AllergyIntolerance, Condition, Procedure, Coverage,
Account, Observation (IG message maps ADT_A01, ADT_A02, ADT_A05, ADT_A06, ADT_A09, ADT_A11, ADT_A17).

ROL/PRT go to what they follow (roles.py): the Patient's general practitioner (after PID, role
PP), the Encounter's participants (after PV1), the Procedure's performers (after PR1). PID-18 and
GT1 make the Account (account.py), IN1 (+ IN2) the Coverage.

ADT messages own the patient: the Patient and the Encounter are written with conditional updates,
so A08 after A04 updates the same Patient and A03 discharges the Encounter A01 admitted. The
trigger sets the visit's status (Event[EncounterStatus]): A01/A02/A13 in progress, A03 finished,
A04/A05 planned, A11 cancelled; the others take it from PV1.

A40 (merge patient - patient identifier list, HL7 v2.5 section 3.3.40): for each PID/MRG pair the
surviving Patient (PID) gets ``link: replaces`` the merged one (MRG-1), which becomes inactive with
``link: replaced-by`` the survivor. Both are created when unknown and otherwise changed by a JSON
Patch of ``active`` and ``link`` only, so neither loses the demographics the store holds (an A40's
PID is often just the identifiers). The Bundle re-points no other resource (the IG has no A40 map,
and "every resource referencing X" needs a search over the store, which a pure conversion cannot
do): the engine's ``fhir_store`` destination does that after the Bundle, in the same transaction
(fhir/store/merge.py) - see docs/convert.md, "A40 merge".
"""

from __future__ import annotations

from typing import Any

from .account import account, guarantor
from .bundle import Builder, search_key
from .clinical import allergy, condition, coverage, coverage_details, diagnosis
from .datatypes import decimal, human_name, identifier
from .encounter import EncounterRef, encounter
from .errors import REQUIRED_FIELD_MISSING, UNSUPPORTED_MESSAGE_TYPE, ConversionError
from .observation import observation
from .patient import PatientRef, patient, patient_link, related_person
from .procedure import procedure
from .roles import to_encounter, to_patient, to_procedure
from .values import Seg

__all__ = ["MRG_FIELDS", "TRIGGERS", "convert"]

JSON = dict[str, Any]
TRIGGERS = frozenset({"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A09", "A10", "A11", "A12", "A13",
                      "A14", "A15", "A16", "A17", "A21", "A22", "A25", "A26", "A27", "A28", "A31", "A32", "A33",
                      "A38", "A40", "A60"})
#: Person-level events: no visit is created even when a PV1 is present.
_PERSON_ONLY = frozenset({"A28", "A31", "A40"})
MRG_FIELDS = frozenset({1, 2, 4, 7})


def _visit_present(pv1: Seg) -> bool:
    return any(pv1.has(f) for f in (3, 19, 44, 50))


def convert(b: Builder, segs: list[Seg], trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise ConversionError("MSH-9", f"ADT^{trigger or '?'} is not converted (expected one of "
                              f"{', '.join(sorted(TRIGGERS))})", code=UNSUPPORTED_MESSAGE_TYPE)
    if trigger == "A40":
        _merge(b, segs)
        return
    if trigger == "A17":
        _swap(b, segs)
        return
    pid = next((s for s in segs if s.name == "PID"), None)
    if pid is None:
        raise ConversionError("PID", f"missing (ADT^{trigger} needs the patient identification segment)",
                              code=REQUIRED_FIELD_MISSING)
    pd1 = next((s for s in segs if s.name == "PD1"), None)
    pv1 = next((s for s in segs if s.name == "PV1"), None)
    pv2 = next((s for s in segs if s.name == "PV2"), None)
    b.use(pid, pd1)
    who = patient(b, pid, pd1)
    visit: EncounterRef | None = None
    if pv1 is not None and trigger not in _PERSON_ONLY and _visit_present(pv1):
        b.use(pv1, pv2)
        visit = encounter(b, pv1, who, pv2=pv2, trigger=trigger, update=True)
    diagnoses: list[JSON] = []
    seen: dict[tuple[str, str], int] = {}
    guarantors: list[JSON] = []
    coverages: list[tuple[str, int]] = []
    # ROL/PRT describe what they follow (ADT_A01: PID.ROL, PV1.ROL, PROCEDURE.ROL, INSURANCE.ROL)
    context, procedure_url, coverage_url = "patient", "", ""
    for i, seg in enumerate(segs):
        name = seg.name
        if name == "NK1":
            b.use(seg)
            related_person(b, seg, who)
        elif name in ("PV1", "PV2"):
            context = "visit"
        elif name in ("AL1", "IAM"):
            b.use(seg)
            allergy(b, seg, who)
            context = ""
        elif name == "DG1":
            b.use(seg)
            found = condition(b, seg, who, visit)
            if found and visit is not None:
                diagnoses.append(diagnosis(seg, found))
            context = ""
        elif name == "PR1":
            b.use(seg)
            procedure_url = procedure(b, seg, who, visit) or ""
            context = "procedure"
        elif name == "GT1":
            b.use(seg)
            found_guarantor = guarantor(b, seg, who)
            if found_guarantor:
                guarantors.append(found_guarantor)
            context = ""
        elif name == "IN1":
            b.use(seg)
            coverage_url = coverage(b, seg, who) or ""
            if coverage_url:
                rank = decimal(seg.text(22), seg.where(22)) if seg.text(22) else 0
                coverages.append((coverage_url, rank if isinstance(rank, int) and rank > 0 else 0))
            context = "insurance"
        elif name == "IN2" and context == "insurance" and coverage_url:
            b.use(seg)
            coverage_details(b, seg, coverage_url)
        elif name in ("ROL", "PRT"):
            _role(b, seg, context, who, visit, procedure_url)
        elif name == "OBX":
            nte = _notes_after(segs, i)
            b.use(seg, *nte)
            scope = visit.key if visit is not None else who.key
            n = seen[(seg.text(3), seg.text(4))] = seen.get((seg.text(3), seg.text(4)), 0) + 1
            observation(b, seg, who, scope=f"{scope}|adt", visit=visit, nte=nte, occurrence=n)
            context = ""
        elif name not in ("PID", "PD1", "NTE", "EVN", "MSH"):
            context = ""
    if diagnoses and visit is not None:
        b.resource(visit.url)["diagnosis"] = diagnoses
    if trigger not in _PERSON_ONLY:
        account(b, pid, who, guarantors, coverages)


def _role(b: Builder, seg: Seg, context: str, who: PatientRef, visit: EncounterRef | None, procedure_url: str) -> None:
    """A ROL/PRT into the resource of the segment group it follows (see roles.py)."""
    if context == "patient":
        to_patient(b, seg, who.url)
    elif context == "visit" and visit is not None:
        to_encounter(b, seg, visit.url)
    elif context == "procedure" and procedure_url:
        to_procedure(b, seg, procedure_url)


def _swap(b: Builder, segs: list[Seg]) -> None:
    """A17 (swap patients, IG message map ADT_A17): two PID/PD1/PV1/PV2 groups, each the visit of one
    patient with the bed it now has; each updates its Patient and Encounter as a transfer would."""
    groups: list[list[Seg | None]] = []
    for seg in segs:
        if seg.name == "PID":
            groups.append([seg, None, None, None])
        elif groups and seg.name in ("PD1", "PV1", "PV2"):
            groups[-1][("PD1", "PV1", "PV2").index(seg.name) + 1] = seg
    if len(groups) != 2 or any(g[2] is None for g in groups):
        raise ConversionError("PID" if len(groups) != 2 else "PV1", "missing (ADT^A17 needs two PID/PV1 groups, "
                              "one per patient whose beds are swapped)", code=REQUIRED_FIELD_MISSING)
    for pid, pd1, pv1, pv2 in groups:
        assert pid is not None and pv1 is not None
        b.use(pid, pd1, pv1, pv2)
        who = patient(b, pid, pd1)
        if _visit_present(pv1):
            encounter(b, pv1, who, pv2=pv2, trigger="A17", update=True)


def _notes_after(segs: list[Seg], i: int) -> list[Seg]:
    out = []
    for seg in segs[i + 1:]:
        if seg.name != "NTE":
            break
        out.append(seg)
    return out


def _merge(b: Builder, segs: list[Seg]) -> None:
    pairs: list[tuple[Seg, Seg | None, Seg]] = []
    current: Seg | None = None
    pd1: Seg | None = None
    for seg in segs:
        if seg.name == "PID":
            current, pd1 = seg, None
        elif seg.name == "PD1":
            pd1 = seg
        elif seg.name == "MRG" and current is not None:
            pairs.append((current, pd1, seg))
    if not pairs:
        raise ConversionError("MRG", "missing (ADT^A40 needs a PID followed by an MRG naming the merged patient)",
                              code=REQUIRED_FIELD_MISSING)
    for pid, pd1_seg, mrg in pairs:
        b.use(pid, pd1_seg, mrg)
        survivor = patient(b, pid, pd1_seg, update=False)
        if survivor.key.startswith("unidentified|"):
            raise ConversionError(pid.where(3), "no patient identifier (ADT^A40 needs the surviving patient's ID)",
                                  code=REQUIRED_FIELD_MISSING)
        merged, merged_key = _merged_patient(b, mrg, survivor)
        b.patch("Patient", survivor.url, _criteria(survivor.key), [
            {"op": "add", "path": "/active", "value": True},
            {"op": "add", "path": "/link", "value": [patient_link(merged, "replaces")]}])
        b.patch("Patient", merged, merged_key, [
            {"op": "add", "path": "/active", "value": False},
            {"op": "add", "path": "/link", "value": [patient_link(survivor.url, "replaced-by")]}])


def _criteria(key: str) -> JSON:
    system, _, value = key.partition("|")
    return {"system": system, "value": value} if system else {"value": value}


def _merged_patient(b: Builder, mrg: Seg, survivor: PatientRef) -> tuple[str, JSON]:
    reps = mrg.reps(1)
    chosen = next((v for v in reps if v[1] and v[5].upper() in ("MR", "MRN")), None) or next(
        (v for v in reps if v[1]), None)
    key = identifier(chosen, b.ctx)
    if key is None:
        raise ConversionError(mrg.where(1), "no prior patient identifier (expected the merged patient's ID)",
                              code=REQUIRED_FIELD_MISSING)
    criteria = search_key(key)
    if f"{criteria.get('system', '')}|{criteria['value']}" == survivor.key:
        raise ConversionError(mrg.where(1), f"{criteria['value']!r} is the surviving patient's own identifier "
                              "(expected the identifier of the patient merged into it)")
    idents = [i for f in (1, 4) for i in (identifier(v, b.ctx) for v in mrg.reps(f)) if i]
    resource: JSON = {"identifier": idents}
    names = [n for n in (human_name(v, b.ctx) for v in mrg.reps(7)) if n]
    if names:
        resource["name"] = names
    return b.ensure("Patient", resource, criteria), criteria

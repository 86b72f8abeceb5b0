"""AL1/IAM → AllergyIntolerance, DG1 → Condition, IN1 (+ IN2) → Coverage (IG segment maps
AL1[AllergyIntolerance], IAM[AllergyIntolerance], DG1[Condition], IN1[Coverage]).

None of them carries a business identifier the sender keeps stable (IAM-7 and DG1-20 aside), so
each is keyed by its patient and its subject matter: the allergy to one allergen, the diagnosis of
one code in one visit, the coverage by one plan. A repeated A08 updates them in place.
"""

from __future__ import annotations

from typing import Any

from .bundle import Builder, search_key
from .datatypes import address, codeable, codeable_or_text, decimal, ei_identifier, human_name, identifier
from .dtm import date, datetime_, is_null_date
from .encounter import EncounterRef
from .parties import organization, person_display, practitioner
from .patient import PatientRef
from .tables import ALLERGY_CATEGORY, ALLERGY_CRITICALITY, ALLERGY_SEVERITY, ALLERGY_TYPE, DIAGNOSIS_ROLE
from .values import Seg

__all__ = ["AL1_FIELDS", "DG1_FIELDS", "IAM_FIELDS", "IN1_FIELDS", "IN2_FIELDS", "allergy", "condition", "coverage",
           "coverage_details", "diagnosis"]

JSON = dict[str, Any]
THO = "http://terminology.hl7.org/CodeSystem/"
AL1_FIELDS = frozenset({1, 2, 3, 4, 5, 6})
IAM_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 17})
DG1_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 19, 20, 21})
IN1_FIELDS = frozenset({1, 2, 3, 4, 5, 8, 12, 13, 15, 16, 17, 18, 19, 22, 36, 49})
#: IN2 (insurance additional information): the member numbers a payer knows the patient by.
IN2_FIELDS = frozenset({6, 8, 61})
_IN2_IDENTIFIERS = ((61, "MB"), (6, "MC"), (8, "MA"))

_CLINICAL = {"active": "active", "inactive": "inactive", "resolved": "resolved"}
# table 0438 (allergy clinical status) → verification status
_VERIFICATION = {"U": "unconfirmed", "P": "unconfirmed", "S": "unconfirmed", "C": "confirmed",
                 "D": "confirmed", "E": "entered-in-error"}


def _code_key(cc: JSON | None) -> str:
    if not cc:
        return ""
    c = (cc.get("coding") or [{}])[0]
    return f"{c.get('system', '')}|{c.get('code', '')}|{cc.get('text', '')}"


def allergy(b: Builder, seg: Seg, who: PatientRef) -> str | None:
    """AL1 or IAM → AllergyIntolerance (the two share fields 2-5)."""
    ctx = b.ctx
    code = codeable(seg.value(3), ctx)
    if code is None:
        return None
    kind = seg.text(2).upper()
    out: JSON = {"clinicalStatus": {"coding": [{"system": THO + "allergyintolerance-clinical", "code": "active"}]}}
    if seg.name == "IAM":
        action = seg.text(6).upper()
        status = _VERIFICATION.get(seg.text(17).upper(), "")
        if action == "D" or status == "entered-in-error":
            out = {"verificationStatus": {"coding": [{"system": THO + "allergyintolerance-verification",
                                                      "code": "entered-in-error"}]}}
        elif status:
            out["verificationStatus"] = {"coding": [{"system": THO + "allergyintolerance-verification",
                                                     "code": status}]}
        ident = ei_identifier(seg.value(7), ctx)
        if ident:
            out["identifier"] = [ident]
    if ALLERGY_TYPE.get(kind):
        out["type"] = ALLERGY_TYPE[kind]
    if ALLERGY_CATEGORY.get(kind):
        out["category"] = [ALLERGY_CATEGORY[kind]]
    criticality = ALLERGY_CRITICALITY.get(seg.text(4).upper())
    if criticality:
        out["criticality"] = criticality
    out["code"] = code
    out["patient"] = who.ref()
    onset = seg.text(6) if seg.name == "AL1" else seg.text(11)
    if onset:
        out["onsetDateTime"] = datetime_(onset, seg.where(6 if seg.name == "AL1" else 11), ctx)
    elif seg.name == "IAM" and seg.text(12):
        out["onsetString"] = seg.text(12)
    if seg.name == "IAM" and seg.text(13):
        out["recordedDate"] = datetime_(seg.text(13), seg.where(13), ctx)
    reactions = [{"text": v.text()} for v in seg.reps(5) if v.text()]
    if reactions:
        out["reaction"] = [{"manifestation": reactions}]
        severity = ALLERGY_SEVERITY.get(seg.text(4).upper())
        if severity:
            out["reaction"][0]["severity"] = severity
    ident = out.get("identifier", [None])[0]
    return b.identity("AllergyIntolerance", out, ident, f"{who.key}|allergy|{_code_key(code)}")


def condition(b: Builder, dg1: Seg, who: PatientRef, visit: EncounterRef | None) -> str | None:
    """DG1 → Condition, an encounter diagnosis when the message has a visit."""
    ctx = b.ctx
    code = codeable_or_text(dg1.value(3), dg1.string(4), ctx)
    if code is None:
        return None
    out: JSON = {}
    ident = ei_identifier(dg1.value(20), ctx)
    if ident:
        out["identifier"] = [ident]
    if dg1.text(21).upper() == "D":
        out["verificationStatus"] = {"coding": [{"system": THO + "condition-ver-status", "code": "entered-in-error"}]}
    if visit is not None:
        out["category"] = [{"coding": [{"system": THO + "condition-category", "code": "encounter-diagnosis"}]}]
    out["code"] = code
    out["subject"] = who.ref()
    if visit is not None:
        out["encounter"] = visit.ref()
    if dg1.text(5):
        out["onsetDateTime"] = datetime_(dg1.text(5), dg1.where(5), ctx)
    if dg1.text(19):
        out["recordedDate"] = datetime_(dg1.text(19), dg1.where(19), ctx)
    asserter = practitioner(b, dg1.value(16))
    if asserter:
        out["asserter"] = asserter
    scope = visit.key if visit is not None else who.key
    return b.identity("Condition", out, ident, f"{scope}|diagnosis|{_code_key(code)}")


def diagnosis(dg1: Seg, url: str) -> JSON:
    """DG1 → an Encounter.diagnosis entry (IG DG1[Encounter]): the Condition, DG1-6 type → ``use``
    (DiagnosisType: A → diagnosis-role AD, else the table 0052 code), DG1-15 priority → ``rank``."""
    out: JSON = {"condition": {"reference": url}}
    kind = dg1.text(6).upper()
    if kind:
        role = DIAGNOSIS_ROLE.get(kind)
        out["use"] = {"coding": [{"system": THO + "diagnosis-role", "code": role[0], "display": role[1]}
                                 if role else {"system": THO + "v2-0052", "code": kind}]}
    rank = dg1.text(15)
    if rank.isdigit() and 0 < int(rank) < 2**31:  # a positiveInt
        out["rank"] = int(rank)
    return out


def coverage(b: Builder, in1: Seg, who: PatientRef) -> str | None:
    """IN1 → Coverage: payor from IN1-3/IN1-4, plan IN1-2, period IN1-12/13, type IN1-15."""
    ctx = b.ctx
    payor_ref = None
    company = in1.value(3)
    name = in1.text(4)
    if company is not None and company[1]:
        ident = identifier(company, ctx)
        if ident is not None:
            resource: JSON = {"identifier": [ident]}
            if name:
                resource["name"] = name
            addresses = [a for a in (address(v, ctx) for v in in1.reps(5)) if a]  # IN1-5 → payor address
            if addresses:
                resource["address"] = addresses
            criteria = search_key(ident)
            payor_ref = {"reference": b.ensure("Organization", resource, criteria)}
            if name:
                payor_ref["display"] = name
    if payor_ref is None:
        payor_ref = organization(b, in1.value(4)) or {"display": in1.text(2, 2) or in1.text(2) or "unknown payor"}
    out: JSON = {"status": "active"}
    plan = in1.value(2)
    if plan is not None and plan[1]:
        out["identifier"] = [{"value": plan[1]}]
    policy = in1.text(49) or in1.text(36)
    if policy:
        out["subscriberId"] = policy
    kind = codeable(in1.value(15), ctx, "0086")
    if kind:
        out["type"] = kind
    subscriber = _subscriber(b, in1, who)
    if subscriber:
        out["subscriber"] = subscriber
    out["beneficiary"] = who.ref()
    relation = codeable(in1.value(17), ctx, "0063")
    if relation:
        out["relationship"] = relation
    start, end = in1.text(12), in1.text(13)
    if start or end:
        out["period"] = {k: date(t, in1.where(f)) for k, t, f in (("start", start, 12), ("end", end, 13)) if t}
    out["payor"] = [payor_ref]
    group = in1.text(8)
    if group:
        out["class"] = [{"type": {"coding": [{"system": THO + "coverage-class", "code": "group"}]}, "value": group}]
    order = in1.text(22)
    if order:
        value = decimal(order, in1.where(22))
        if isinstance(value, int) and value > 0:
            out["order"] = value
    key = f"{who.key}|coverage|{payor_ref.get('reference') or payor_ref.get('display')}|{plan[1] if plan else ''}|{policy}"
    return b.keyed("Coverage", out, key)


def _subscriber(b: Builder, in1: Seg, who: PatientRef) -> JSON | None:
    """IN1-16 (name of insured) → Coverage.subscriber: the Patient when IN1-17 is ``SEL``, else a
    RelatedPerson with the insured's name, birth date (IN1-18), address (IN1-19) and relationship."""
    ctx = b.ctx
    relation = in1.text(17).upper()
    if relation == "SEL":
        return who.ref()
    names = [n for n in (human_name(v, ctx) for v in in1.reps(16)) if n]
    if not names:
        return None
    out: JSON = {"patient": who.ref()}
    kind = codeable(in1.value(17), ctx, "0063")
    if kind:
        out["relationship"] = [kind]
    out["name"] = names
    if in1.text(18) and not is_null_date(in1.text(18)):
        out["birthDate"] = date(in1.text(18), in1.where(18))
    addresses = [a for a in (address(v, ctx) for v in in1.reps(19)) if a]
    if addresses:
        out["address"] = addresses
    display = person_display(names[0])
    return {"reference": b.keyed("RelatedPerson", out, f"{who.key}|insured|{relation}|{display}"), "display": display}


def coverage_details(b: Builder, in2: Seg, url: str) -> None:
    """IN2 → more identifiers of the Coverage its IN1 made (the IG maps no IN2 field): IN2-61 patient
    member number (type MB), IN2-6 Medicare card number (MC), IN2-8 Medicaid case number (MA)."""
    resource = b.resource(url)
    for field, kind in _IN2_IDENTIFIERS:
        for v in in2.reps(field):
            found = identifier(v, b.ctx, type_code=kind)
            if found and found not in resource.get("identifier", []):
                resource.setdefault("identifier", []).append(found)

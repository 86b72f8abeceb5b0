"""PID-18 and GT1 → Account with its guarantors (IG segment map PID[Account]; the IG leaves GT1
unmapped, so its mapping here follows FHIR R4 Account.guarantor).

The patient account (PID-18, ADT_A01's PID[Account]) is the Account; each GT1 (guarantor, HL7 v2.5
section 6.5.5) adds a ``guarantor`` whose ``party`` is the Patient when GT1-11 says the guarantor
is the patient (``SEL``), else a RelatedPerson built from GT1 (name, address, phones, birth date,
sex, relationship, guarantor number), else the guarantor organisation (GT1-21). The coverages of
the message (IN1) are the account's ``coverage``, ranked by IN1-22.

Identity: the Account is keyed by PID-18 - a conditional update when the message has GT1 or IN1
segments, else a conditional create (a message without them is silent about guarantors and
coverage); without PID-18 a message with GT1 gets the patient's one Account (``keyed`` by the
patient). A guarantor
RelatedPerson is keyed by the patient, relationship and name, apart from NK1's contacts (a GT1
does not overwrite what NK1 said about the same person).
"""

from __future__ import annotations

from typing import Any

from .bundle import Builder, search_key
from .datatypes import address, codeable, contact_point, human_name, identifier
from .dtm import date, is_null_date
from .parties import organization, person_display
from .patient import PatientRef
from .tables import GENDER
from .values import Seg

__all__ = ["GT1_FIELDS", "account", "guarantor"]

JSON = dict[str, Any]
GT1_FIELDS = frozenset({1, 2, 3, 5, 6, 7, 8, 9, 11, 13, 14, 21})


def guarantor(b: Builder, gt1: Seg, who: PatientRef) -> JSON | None:
    """GT1 → an Account.guarantor (None when it names nobody)."""
    ctx = b.ctx
    relation = gt1.text(11).upper()
    party: JSON | None = None
    if relation == "SEL":
        party = who.ref()
    else:
        names = [n for n in (human_name(v, ctx) for v in gt1.reps(3)) if n]
        if names:
            party = {"reference": _related_person(b, gt1, who, names), "display": person_display(names[0])}
        else:
            party = organization(b, gt1.value(21))
    if party is None:
        return None
    out: JSON = {"party": party}
    start, end = gt1.text(13), gt1.text(14)
    if start or end:
        out["period"] = {k: date(t, gt1.where(f)) for k, t, f in (("start", start, 13), ("end", end, 14)) if t}
    return out


def _related_person(b: Builder, gt1: Seg, who: PatientRef, names: list[JSON]) -> str:
    ctx = b.ctx
    out: JSON = {"patient": who.ref()}
    idents = [i for i in (identifier(v, ctx) for v in gt1.reps(2)) if i]
    if idents:
        out["identifier"] = idents
    relation = codeable(gt1.value(11), ctx, "0063")
    if relation:
        out["relationship"] = [relation]
    out["name"] = names
    telecom = [t for f, use in ((6, "home"), (7, "work")) for t in
               (contact_point(v, ctx, default_use=use) for v in gt1.reps(f)) if t]
    if telecom:
        out["telecom"] = telecom
    gender = GENDER.get(gt1.text(9).upper())
    if gender:
        out["gender"] = gender
    if gt1.text(8) and not is_null_date(gt1.text(8)):
        out["birthDate"] = date(gt1.text(8), gt1.where(8))
    addresses = [a for a in (address(v, ctx) for v in gt1.reps(5)) if a]
    if addresses:
        out["address"] = addresses
    return b.keyed("RelatedPerson", out, f"{who.key}|gt1|{gt1.text(11).upper()}|{person_display(names[0])}")


def account(b: Builder, pid: Seg, who: PatientRef, guarantors: list[JSON], coverages: list[tuple[str, int]]) -> str | None:
    """PID-18 (+ the GT1 guarantors and IN1 coverages) → the patient's Account; None when the message
    has neither a patient account number nor a guarantor."""
    ident = identifier(pid.value(18), b.ctx, type_code="AN")
    if ident is None and not guarantors:
        return None
    out: JSON = {}
    if ident is not None:
        out["identifier"] = [ident]
    out["status"] = "active"
    out["subject"] = [who.ref()]
    if coverages:
        out["coverage"] = [{"coverage": {"reference": url}, **({"priority": rank} if rank else {})}
                           for url, rank in coverages]
    if guarantors:
        out["guarantor"] = guarantors
    if ident is not None:
        # a message without GT1/IN1 is silent about them, not saying there are none: it only makes
        # sure the account exists (an A03 must not erase the guarantors its A01 sent)
        if guarantors or coverages:
            return b.upsert("Account", out, search_key(ident))
        return b.ensure("Account", out, search_key(ident))
    return b.keyed("Account", out, f"{who.key}|account")

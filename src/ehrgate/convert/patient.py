"""PID, PD1, NK1 and MRG → Patient and RelatedPerson (IG segment maps PID[Patient], PD1[Patient],
NK1[RelatedPerson]; race and ethnicity as the US Core extensions).

The Patient's identity is one identifier: the first PID-3 repetition of type MR, else the first of
PID-3, else PID-2 or PID-4. Message types in ``ConversionOptions.patient_updates`` (ADT by default)
write the Patient with a conditional update; the others link to it, creating it when it is new.
"""

from __future__ import annotations

import re
from typing import Any

from .bundle import Builder, ref
from .datatypes import V2_0203, Ctx, address, codeable, contact_point, human_name, identifier
from .dtm import date, datetime_, has_time, is_null_date
from .parties import organization, person_display, practitioner
from .tables import CONTACT_ROLE, GENDER, MARITAL_STATUS, RELATIONSHIP, YES_NO
from .values import Seg, Value

__all__ = ["PD1_FIELDS", "PID_FIELDS", "NK1_FIELDS", "PatientRef", "patient", "related_person"]

JSON = dict[str, Any]
THO = "http://terminology.hl7.org/CodeSystem/"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
CDCREC = "urn:oid:2.16.840.1.113883.6.238"

PID_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26,
                        28, 29, 30, 39, 40})
PD1_FIELDS = frozenset({3, 4, 6, 14})
NK1_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 20, 30, 31, 32, 33, 37, 40, 41})

_OMB_RACE = {"1002-5": "American Indian or Alaska Native", "2028-9": "Asian",
             "2054-5": "Black or African American", "2076-8": "Native Hawaiian or Other Pacific Islander",
             "2106-3": "White"}
_OMB_ETHNICITY = {"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
_ETHNIC_0189 = {"H": "2135-2", "N": "2186-5"}
_BCP47 = re.compile(r"[a-z]{2}(-[A-Z]{2})?")  # ISO 639-1 [+ region]: a tag as it stands


class PatientRef:
    """The Patient entry of a message: its fullUrl and the key other identities derive from."""

    __slots__ = ("key", "url")

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    def ref(self) -> JSON:
        return {"reference": self.url}


def _key_identifier(pid: Seg, b: Builder) -> JSON | None:
    candidates = pid.reps(3)
    chosen = next((v for v in candidates if v[1] and v[5].upper() in ("MR", "MRN")), None)
    chosen = chosen or next((v for v in candidates if v[1]), None) or pid.value(2) or pid.value(4)
    ident = identifier(chosen, b.ctx)
    if ident is None:
        return None
    return {"system": ident["system"], "value": ident["value"]} if "system" in ident else {"value": ident["value"]}


def _race(reps: list[Value], url: str, omb: dict[str, str], b: Builder) -> JSON | None:
    subs: list[JSON] = []
    texts: list[str] = []
    for v in reps:
        for n in (1, 4):
            code = v[n]
            code = _ETHNIC_0189.get(code, code) if url.endswith("ethnicity") else code
            if not code:
                continue
            kind = "ombCategory" if code in omb else "detailed"
            system_name = v[n + 2].upper()
            if kind == "detailed" and system_name not in ("CDCREC", "HL70005", "HL70189", ""):
                continue
            if kind == "detailed" and not (len(code) == 6 and code[4] == "-"):
                continue
            display = omb.get(code) or v[n + 1]
            coding = {"system": CDCREC, "code": code}
            if display:
                coding["display"] = display
            subs.append({"url": kind, "valueCoding": coding})
        label = v[2] or v[9] or v[1]
        if label:
            texts.append(label)
    if not texts:
        return None
    return {"url": url, "extension": [*subs, {"url": "text", "valueString": ", ".join(texts)}]}


def _language(v: Value | None, ctx: Ctx) -> JSON | None:
    """PID-15/NK1-20 → a CodeableConcept (PrimaryLanguage: BCP-47). A code sent without a coding
    system that is a language tag ('en', 'es-MX') is BCP-47; other codes stay in table 0296."""
    found = codeable(v, ctx, "0296")
    if found and v is not None and not v[3] and _BCP47.fullmatch(v[1]):
        found["coding"][0]["system"] = "urn:ietf:bcp:47"
    return found


def _pd1_extensions(pd1: Seg, ctx: Ctx) -> list[JSON]:
    """PD1[Patient]: PD1-6 handicap → patient-disability (CWE[CodeableConcept]); PD1-14 place of
    worship → patient-congregation (XON[string]: the organization name; the extension holds one)."""
    exts: list[JSON] = []
    handicap = codeable(pd1.value(6), ctx, "0295")
    if handicap:
        exts.append({"url": "http://hl7.org/fhir/StructureDefinition/patient-disability",
                     "valueCodeableConcept": handicap})
    worship = next((v[1] for v in pd1.reps(14) if v[1]), "")
    if worship:
        exts.append({"url": "http://hl7.org/fhir/StructureDefinition/patient-congregation",
                     "valueString": worship})
    return exts


def _patient_resource(pid: Seg, pd1: Seg | None, b: Builder) -> JSON:
    ctx = b.ctx
    out: JSON = {}
    idents = [identifier(v, ctx) for f in (2, 3, 4) for v in pid.reps(f)]
    ssn = pid.text(19)
    if ssn:
        idents.append({"type": {"coding": [{"system": V2_0203, "code": "SS"}]},
                       "system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn})
    dln = pid.value(20)
    if dln is not None and dln[1]:
        idents.append({"type": {"coding": [{"system": V2_0203, "code": "DL"}]}, "value": dln[1]})
    unique: list[JSON] = []
    for ident in idents:
        if ident is not None and ident not in unique:
            unique.append(ident)
    if unique:
        out["identifier"] = unique
    exts: list[JSON] = []
    maiden = pid.value(6)
    if maiden is not None and maiden[1]:
        exts.append({"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                     "valueString": maiden[1]})
    race = _race(pid.reps(10), US_CORE + "us-core-race", _OMB_RACE, b)
    if race:
        exts.append(race)
    ethnicity = _race(pid.reps(22), US_CORE + "us-core-ethnicity", _OMB_ETHNICITY, b)
    if ethnicity:
        exts.append(ethnicity)
    religion = codeable(pid.value(17), ctx, "0006")
    if religion:
        exts.append({"url": "http://hl7.org/fhir/StructureDefinition/patient-religion",
                     "valueCodeableConcept": religion})
    birth_place = pid.string(23)
    if birth_place:
        exts.append({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                     "valueAddress": {"text": birth_place}})
    # PID-26 citizenship, PID-39 tribal citizenship, PID-28 nationality (PID[Patient]: a 'code' each)
    for field, name, table in ((26, "citizenship", "0171"), (39, "citizenship", "0171"), (28, "nationality", "0212")):
        for v in pid.reps(field):
            found = codeable(v, ctx, table)
            if found:
                exts.append({"url": f"http://hl7.org/fhir/StructureDefinition/patient-{name}",
                             "extension": [{"url": "code", "valueCodeableConcept": found}]})
    if pd1 is not None:
        exts.extend(_pd1_extensions(pd1, ctx))
    if exts:
        out["extension"] = exts
    names = [n for f in (5, 9) for n in (human_name(v, ctx) for v in pid.reps(f)) if n]
    if names:
        out["name"] = names
    telecom = [t for f, use in ((13, "home"), (14, "work"), (40, "")) for t in
               (contact_point(v, ctx, default_use=use) for v in pid.reps(f)) if t]
    if telecom:
        out["telecom"] = telecom
    gender = GENDER.get(pid.text(8).upper())
    if gender:
        out["gender"] = gender
    born = pid.text(7)
    if born and not is_null_date(born):
        out["birthDate"] = date(born, pid.where(7))
        if has_time(born):
            out["_birthDate"] = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                                "valueDateTime": datetime_(born, pid.where(7), ctx)}]}
    died = pid.text(29)
    if died and not is_null_date(died):
        out["deceasedDateTime"] = datetime_(died, pid.where(29), ctx)
    elif pid.text(30).upper() in YES_NO:
        out["deceasedBoolean"] = YES_NO[pid.text(30).upper()]
    addresses = [a for a in (address(v, ctx) for v in pid.reps(11)) if a]
    county = pid.text(12)
    if county and len(addresses) <= 1:
        if not addresses:
            addresses.append({"district": county})
        else:
            addresses[0].setdefault("district", county)
    if addresses:
        out["address"] = addresses
    marital = pid.value(16)
    if marital is not None:
        mapped = MARITAL_STATUS.get(marital[1].upper())
        if mapped:
            out["maritalStatus"] = {"coding": [{"system": THO + mapped[2], "code": mapped[0], "display": mapped[1]}]}
        else:
            found = codeable(marital, ctx, "0002")
            if found:
                out["maritalStatus"] = found
    order = pid.text(25)
    if order.isdigit() and int(order) > 0:
        out["multipleBirthInteger"] = int(order)
    elif pid.text(24).upper() in YES_NO:
        out["multipleBirthBoolean"] = YES_NO[pid.text(24).upper()]
    language = _language(pid.value(15), ctx)
    if language:
        out["communication"] = [{"language": language, "preferred": True}]
    if pd1 is not None:
        carers = [r for r in (organization(b, v) for v in pd1.reps(3)) if r]
        carers += [r for r in (practitioner(b, v) for v in pd1.reps(4)) if r]
        if carers:
            out["generalPractitioner"] = carers
    return out


def patient(b: Builder, pid: Seg, pd1: Seg | None = None, *, update: bool | None = None,
            extra: JSON | None = None) -> PatientRef:
    """PID (+ PD1) → the Patient entry. ``update`` defaults to the channel's ``patient_updates``."""
    key = _key_identifier(pid, b)
    if update is None:
        update = b.message_type.split("^")[0] in b.options.patient_updates
    resource = _patient_resource(pid, pd1, b)
    if extra:
        resource.update(extra)
    if key is None:
        b.warnings.append(f"{pid.where(3)}: no patient identifier; the Patient is keyed by this message alone, "
                          "so later messages cannot find it")
        fallback = f"unidentified|{b.message_key}|{pid.seq}"
        return PatientRef(b.keyed("Patient", resource, fallback), fallback)
    url = b.upsert("Patient", resource, key) if update else b.ensure("Patient", resource, key)
    return PatientRef(url, f"{key.get('system', '')}|{key['value']}")


def related_person(b: Builder, nk1: Seg, who: PatientRef) -> str | None:
    """NK1 → RelatedPerson (NK1[RelatedPerson]), keyed by the patient, the relation and the name."""
    ctx = b.ctx
    out: JSON = {"patient": who.ref()}
    idents = [i for f in (12, 33) for i in (identifier(v, ctx) for v in nk1.reps(f)) if i]
    ssn = nk1.text(37)
    if ssn:
        idents.append({"type": {"coding": [{"system": V2_0203, "code": "SS"}]},
                       "system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn})
    if idents:
        out["identifier"] = idents
    relations: list[JSON] = []
    rel = nk1.value(3)
    if rel is not None and rel[1]:
        mapped = RELATIONSHIP.get(rel[1].upper())
        relations.append({"coding": [{"system": THO + mapped[0], "code": mapped[1]}], "text": rel[2] or rel[1]}
                         if mapped else codeable(rel, ctx, "0063") or {})
    role = nk1.value(7)
    if role is not None and role[1]:
        code = role[1].upper()
        relations.append({"coding": [{"system": THO + "v2-0131", "code": code}]} if code in CONTACT_ROLE
                         else codeable(role, ctx, "0131") or {})
    relations = [r for r in relations if r]
    if relations:
        out["relationship"] = relations
    names = [n for f in (2, 30) for n in (human_name(v, ctx) for v in nk1.reps(f)) if n]
    if names:
        out["name"] = names
    telecom = [t for f, use in ((5, ""), (6, "work"), (31, ""), (40, ""), (41, "")) for t in
               (contact_point(v, ctx, default_use=use) for v in nk1.reps(f)) if t]
    if telecom:
        out["telecom"] = telecom
    gender = GENDER.get(nk1.text(15).upper())
    if gender:
        out["gender"] = gender
    if nk1.text(16) and not is_null_date(nk1.text(16)):
        out["birthDate"] = date(nk1.text(16), nk1.where(16))
    addresses = [a for f in (4, 32) for a in (address(v, ctx) for v in nk1.reps(f)) if a]
    if addresses:
        out["address"] = addresses
    start, end = nk1.text(8), nk1.text(9)
    if start or end:
        out["period"] = {k: date(t, nk1.where(f)) for k, t, f in (("start", start, 8), ("end", end, 9)) if t}
    language = _language(nk1.value(20), ctx)
    if language:
        out["communication"] = [{"language": language}]
    if len(out) == 1:
        return None
    label = person_display(names[0]) if names else nk1.text(1)
    relation = rel[1] if rel is not None else ""
    return b.keyed("RelatedPerson", out, f"{who.key}|nk1|{relation}|{label}")


def patient_link(url: str, kind: str) -> JSON:
    return {"other": ref(url), "type": kind}

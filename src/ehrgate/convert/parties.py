"""People, places and organisations a message mentions: XCN → Practitioner, PL → Location,
XON/HD/CWE → Organization (IG datatype maps XCN[Practitioner], PL[Location], XON[Organization]).

They are reference data: a message links to them and creates them when they are new (``ensure``),
never overwriting what a master-file feed or the REST API holds. Only a party with an identifier
becomes a resource; a name alone becomes ``Reference.display`` (judgement call: a name is not an
identity, and creating one Practitioner per spelling pollutes the store).
"""

from __future__ import annotations

from typing import Any

from .bundle import Builder, ref
from .datatypes import V2_0203, codeable, ei_identifier, hd_system, human_name
from .values import Seg, Value

__all__ = ["event", "facility", "location", "organization", "organization_from_cwe", "person_display",
           "practitioner"]

JSON = dict[str, Any]
LOCATION_SYSTEM = "urn:ehrgate:location"
_PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"
_DEGREE = "http://terminology.hl7.org/CodeSystem/v2-0360"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#: EventReason.csv (table 0062 → v3-ActReason; O and U stay v2-0062 codes)
_EVENT_REASON = {"01": (_ACT_REASON, "PATRQT", "patient requested"), "02": (_ACT_REASON, "TREAT", "treatment"),
                 "03": (_ACT_REASON, "HOPERAT", "healthcare operations"),
                 "O": ("http://terminology.hl7.org/CodeSystem/v2-0062", "O", "Other")}


def person_display(name: JSON | None) -> str:
    if not name:
        return ""
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", ""), *name.get("suffix", [])]
    return " ".join(p for p in parts if p)


def practitioner(b: Builder, v: Value | None) -> JSON | None:
    """XCN → a Reference to a Practitioner (created when new) or a display-only Reference."""
    if v is None:
        return None
    name = human_name(v, b.ctx, offset=1)
    display = person_display(name)
    pid = v[1]
    if not pid:
        return {"display": display} if display else None
    ident: JSON = {}
    kind = v[13]
    if kind:
        ident["type"] = {"coding": [{"system": V2_0203, "code": kind}]}
    system = hd_system(v.part(9), b.ctx) or b.ctx.default_authority
    if system:
        ident["system"] = system
    ident["value"] = pid
    resource: JSON = {"identifier": [ident]}
    if name:
        resource["name"] = [name]
    degree = v[7]  # XCN[Practitioner]: XCN.7 → qualification.code (DegreeLicenseCertificate, table 0360)
    if degree:
        resource["qualification"] = [{"code": {"coding": [{"system": _DEGREE, "code": degree}]}}]
    return ref(b.ensure("Practitioner", resource, ident), display)


def organization(b: Builder, v: Value | None) -> JSON | None:
    """XON → a Reference to an Organization (identifier XON.10, else XON.3) or a display-only one."""
    if v is None:
        return None
    name = v[1]
    oid = v[10] or v[3]
    if not oid:
        return {"display": name} if name else None
    ident: JSON = {}
    if v[7]:
        ident["type"] = {"coding": [{"system": V2_0203, "code": v[7]}]}
    system = hd_system(v.part(6), b.ctx) or b.ctx.default_authority
    if system:
        ident["system"] = system
    ident["value"] = oid
    resource: JSON = {"identifier": [ident]}
    if name:
        resource["name"] = name
    return ref(b.ensure("Organization", resource, ident), name)


def organization_from_cwe(b: Builder, v: Value | None) -> JSON | None:
    """CWE → Organization (CWE-to-Organization): identifier CWE.1 in system CWE.3, name CWE.2."""
    if v is None or not v[1]:
        return None
    from .codesystems import code_system_uri

    ident: JSON = {"value": v[1]}
    system = code_system_uri(v[3], b.ctx.code_systems)
    if system:
        ident = {"system": system, "value": v[1]}
    resource: JSON = {"identifier": [ident]}
    if v[2]:
        resource["name"] = v[2]
    return ref(b.ensure("Organization", resource, ident), v[2])


# PL components from the top of the hierarchy down: (component, physical type, display)
_LEVELS = ((4, "si", "Site"), (7, "bu", "Building"), (8, "lvl", "Level"), (1, "wa", "Ward"),
           (2, "ro", "Room"), (3, "bd", "Bed"))


def location(b: Builder, v: Value | None) -> JSON | None:
    """PL → the most specific Location of facility ▸ building ▸ floor ▸ point of care ▸ room ▸ bed,
    each ``partOf`` the level above (PL-to-Location). A level's identifier is its path from the top
    (the facility defaulting to the sending facility), so 'Bed 1' of two rooms are two Locations."""
    if v is None:
        return None
    parent: JSON | None = None
    path: list[str] = []
    facility = v.part(4)[1]
    if not facility and b.sender:
        path.append(b.sender)
    last: JSON | None = None
    levels = [(name, kind, label) for comp, kind, label in _LEVELS
              if (name := v.part(comp)[1] if comp in (1, 4) else v[comp])]
    # PL.10 comprehensive location identifier → the most specific Location's identifier[2]
    # (PL-to-Location, EI[Identifier]); it identifies that Location wherever it was made, so it is
    # the key (an Appointment sent out by siu and read back finds the Location it names).
    comprehensive = ei_identifier(v.part(10), b.ctx) if len(v.comps) >= 10 else None
    for n, (name, kind, label) in enumerate(levels, 1):
        path.append(name)
        ident = {"system": LOCATION_SYSTEM, "value": "/".join(path)}
        resource: JSON = {"identifier": [ident], "name": name, "mode": "instance",
                          "physicalType": {"coding": [{"system": _PHYSICAL, "code": kind, "display": label}]}}
        key = ident
        if comprehensive is not None and n == len(levels):
            key = comprehensive
            if comprehensive != ident:
                resource["identifier"].append(comprehensive)
        if parent is not None:
            resource["partOf"] = parent
        last = ref(b.ensure("Location", resource, key), name)
        parent = {"reference": last["reference"]}
    if last is None:
        return {"display": v[9]} if v[9] else None
    if v[9]:
        b.resource(last["reference"]).setdefault("description", v[9])
    return last


def facility(b: Builder, v: Value | None) -> JSON | None:
    """HD → a site Location (HD-to-Location: HD.1 name, physical type 'si'), the same Location a PL
    naming that facility makes (its identifier is the facility's place in the PL path)."""
    if v is None:
        return None
    name = v[1] or v[2]
    if not name:
        return None
    ident = {"system": LOCATION_SYSTEM, "value": name}
    resource: JSON = {"identifier": [ident], "name": name, "mode": "instance",
                      "physicalType": {"coding": [{"system": _PHYSICAL, "code": "si", "display": "Site"}]}}
    return ref(b.ensure("Location", resource, ident), name)


def event(b: Builder, evn: Seg) -> None:
    """EVN[Provenance]: EVN-4 event reason → ``reason`` (EventReason; 'U' a data-absent-reason),
    EVN-5 operator → an ``enterer`` agent each (XCN[Practitioner]), EVN-7 event facility → ``location``
    (HD[Location]). They go into the message's Provenance (``Builder.provenance``)."""
    extra = b.event_details
    reason = evn.value(4)
    if reason is not None and reason[1].upper() == "U":
        extra["reason"] = [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                           "valueCode": "unknown"}]}]
    elif reason is not None:
        mapped = _EVENT_REASON.get(reason[1].upper())
        found = {"coding": [{"system": mapped[0], "code": mapped[1], "display": mapped[2]}]} if mapped else (
            codeable(reason, b.ctx, "0062"))
        if found:
            extra["reason"] = [found]
    agents = [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                    "code": "enterer"}]}, "who": who}
              for who in (practitioner(b, v) for v in evn.reps(5)) if who]
    if agents:
        extra["agent"] = agents
    where = facility(b, evn.value(7))
    if where:
        extra["location"] = where

"""The demo health system: organizations, locations, clinicians and their roles.

These are the resources every patient chart points at (general practitioner, encounter locations,
the lab that performs results), so they go in their own transaction, loaded first, and patient
bundles refer to them as ``Type/id``. Names are invented; NPIs are Luhn-valid per the CMS NPI check
digit rule so validators accept them, but they are drawn at random and are not looked up in NPPES.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import NamedTuple

from .datatypes import JSON, coding, concept, new_id, ref, urn
from .vocab import (
    DEGREE,
    NPI,
    NUCC,
    ORG_TYPE,
    PHYSICAL_TYPE,
    ROLE_CODE,
    Code,
    profile,
)

CITY, STATE, ZIP = "Springfield", "IL", "62704"


class OrgDef(NamedTuple):
    key: str
    name: str
    line: str
    phone: str
    part_of: str | None


class LocationDef(NamedTuple):
    key: str
    name: str
    org: str
    role: Code
    physical: Code | None
    part_of: str | None
    phone: str


class StaffDef(NamedTuple):
    given: str
    family: str
    gender: str
    degree: Code
    specialty: Code
    kind: str
    org: str
    location: str


ORGANIZATIONS: tuple[OrgDef, ...] = (
    OrgDef("hospital", "Prairie Ridge Regional Hospital", "1200 Prairie Ridge Parkway", "(217) 555-0100", None),
    OrgDef("clinic", "Prairie Ridge Family Medicine", "415 Meadowlark Drive", "(217) 555-0110", "hospital"),
    OrgDef("heart", "Prairie Ridge Heart & Vascular", "1250 Prairie Ridge Parkway", "(217) 555-0120", "hospital"),
    OrgDef("lab", "Prairie Ridge Laboratory Services", "1200 Prairie Ridge Parkway", "(217) 555-0130", "hospital"),
)

LOCATIONS: tuple[LocationDef, ...] = (
    LocationDef("campus", "Prairie Ridge Regional Hospital – Main Campus", "hospital",
                Code(ROLE_CODE, "HOSP", "Hospital"), Code(PHYSICAL_TYPE, "bu", "Building"), None, "(217) 555-0100"),
    LocationDef("ed", "Emergency Department", "hospital", Code(ROLE_CODE, "ER", "Emergency room"),
                Code(PHYSICAL_TYPE, "wi", "Wing"), "campus", "(217) 555-0101"),
    LocationDef("ward", "Inpatient Unit 4 East", "hospital", Code(ROLE_CODE, "HU", "Hospital unit"),
                Code(PHYSICAL_TYPE, "wa", "Ward"), "campus", "(217) 555-0102"),
    LocationDef("clinic", "Prairie Ridge Family Medicine – Meadowlark", "clinic",
                Code(ROLE_CODE, "PC", "primary care clinic"), Code(PHYSICAL_TYPE, "bu", "Building"), None,
                "(217) 555-0110"),
    LocationDef("heart", "Heart & Vascular Clinic", "heart", Code(ROLE_CODE, "OF", "Outpatient facility"),
                Code(PHYSICAL_TYPE, "bu", "Building"), None, "(217) 555-0120"),
    LocationDef("lab", "Core Laboratory", "lab", Code(ROLE_CODE, "HLAB", "hospital laboratory"), None, "campus",
                "(217) 555-0130"),
)

_MD = Code(DEGREE, "MD", "Doctor of Medicine")
_DO = Code(DEGREE, "DO", "Doctor of Osteopathy")
_NP = Code(DEGREE, "NP", "Nurse Practitioner")
_PA = Code(DEGREE, "PA", "Physician Assistant")
_RN = Code(DEGREE, "RN", "Registered Nurse")
_FAMILY = Code(NUCC, "207Q00000X", "Family Medicine Physician")

STAFF: tuple[StaffDef, ...] = (
    StaffDef("Renée", "Dubois", "female", _MD, _FAMILY, "pcp", "clinic", "clinic"),
    StaffDef("Marcus", "Whitfield", "male", _DO, _FAMILY, "pcp", "clinic", "clinic"),
    StaffDef("Aisha", "Rahman", "female", _MD, Code(NUCC, "207R00000X", "Internal Medicine Physician"), "pcp",
             "clinic", "clinic"),
    StaffDef("Hannah", "Kowalczyk", "female", _NP, Code(NUCC, "363LF0000X", "Family Nurse Practitioner"), "pcp",
             "clinic", "clinic"),
    StaffDef("Tomás", "Ibáñez", "male", _MD, Code(NUCC, "208000000X", "Pediatrics Physician"), "pediatrics",
             "clinic", "clinic"),
    StaffDef("Daniel", "Okonkwo", "male", _MD, Code(NUCC, "207RC0000X", "Cardiovascular Disease Physician"),
             "cardiology", "heart", "heart"),
    StaffDef("Mei", "Chen", "female", _MD,
             Code(NUCC, "207RE0101X", "Endocrinology, Diabetes & Metabolism Physician"), "endocrinology", "clinic",
             "clinic"),
    StaffDef("Samuel", "Brooks", "male", _MD, Code(NUCC, "207P00000X", "Emergency Medicine Physician"),
             "emergency", "hospital", "ed"),
    StaffDef("Zoë", "Castellanos", "female", _PA, Code(NUCC, "363A00000X", "Physician Assistant"), "emergency",
             "hospital", "ed"),
    StaffDef("Raj", "Venkataraman", "male", _MD, Code(NUCC, "208M00000X", "Hospitalist Physician"), "hospitalist",
             "hospital", "ward"),
    StaffDef("Grace", "Nakamura-Hill", "female", _RN, Code(NUCC, "163W00000X", "Registered Nurse"), "nurse",
             "clinic", "clinic"),
)


@dataclass(frozen=True)
class Clinician:
    """A practitioner as patient charts need them: ids to refer to and what they do."""

    id: str
    role_id: str
    display: str
    kind: str
    specialty: Code
    org: str
    location: str

    def ref(self) -> JSON:
        return ref("Practitioner", self.id, self.display)


@dataclass
class Practice:
    """Ids of the shared resources, plus the resources themselves for the first bundle."""

    org_ids: dict[str, str] = field(default_factory=dict)
    location_ids: dict[str, str] = field(default_factory=dict)
    clinicians: list[Clinician] = field(default_factory=list)
    resources: list[JSON] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Clinician]:
        return [c for c in self.clinicians if c.kind == kind]

    def org_ref(self, key: str) -> JSON:
        name = next(o.name for o in ORGANIZATIONS if o.key == key)
        return ref("Organization", self.org_ids[key], name)

    def location_ref(self, key: str) -> JSON:
        name = next(loc.name for loc in LOCATIONS if loc.key == key)
        return ref("Location", self.location_ids[key], name)


def npi(rng: random.Random) -> str:
    """A 10-digit NPI whose last digit is the Luhn check over ``80840`` + the first nine digits."""
    body = str(rng.choice("12")) + "".join(str(rng.randrange(10)) for _ in range(8))
    return body + luhn_check_digit("80840" + body)


def luhn_check_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # doubled: the digit that will sit next to the check digit, then every other
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _address(line: str) -> JSON:
    return {"use": "work", "line": [line], "city": CITY, "state": STATE, "postalCode": ZIP, "country": "US"}


def _phone(number: str) -> list[JSON]:
    return [{"system": "phone", "value": number, "use": "work"}]


def build_practice(rng: random.Random) -> Practice:
    """Build the shared resources; internal references use ``urn:uuid:`` like the patient bundles."""
    practice = Practice()
    for org in ORGANIZATIONS:
        practice.org_ids[org.key] = new_id(rng)
    for loc in LOCATIONS:
        practice.location_ids[loc.key] = new_id(rng)
    for org in ORGANIZATIONS:
        resource: JSON = {
            "resourceType": "Organization",
            "id": practice.org_ids[org.key],
            "meta": profile("us-core-organization"),
            "identifier": [{"system": NPI, "value": npi(rng)}],
            "active": True,
            "type": [concept(Code(ORG_TYPE, "prov", "Healthcare Provider"))],
            "name": org.name,
            "telecom": _phone(org.phone),
            "address": [_address(org.line)],
        }
        if org.part_of:
            resource["partOf"] = urn(practice.org_ids[org.part_of])
        practice.resources.append(resource)
    org_lines = {o.key: o.line for o in ORGANIZATIONS}
    for loc in LOCATIONS:
        resource = {
            "resourceType": "Location",
            "id": practice.location_ids[loc.key],
            "meta": profile("us-core-location"),
            "status": "active",
            "name": loc.name,
            "mode": "instance",
            "type": [concept(loc.role)],
            "telecom": _phone(loc.phone),
            "address": _address(org_lines[loc.org]),
            "managingOrganization": urn(practice.org_ids[loc.org]),
        }
        if loc.physical:
            resource["physicalType"] = concept(loc.physical)
        if loc.part_of:
            resource["partOf"] = urn(practice.location_ids[loc.part_of])
        practice.resources.append(resource)
    for i, staff in enumerate(STAFF):
        practice.resources.extend(_clinician(rng, practice, staff, i))
    return practice


def _clinician(rng: random.Random, practice: Practice, staff: StaffDef, index: int) -> list[JSON]:
    practitioner_id, role_id = new_id(rng), new_id(rng)
    doctor = staff.degree.code in ("MD", "DO")
    display = f"{'Dr. ' if doctor else ''}{staff.given} {staff.family}, {staff.degree.code}"
    practice.clinicians.append(
        Clinician(practitioner_id, role_id, display, staff.kind, staff.specialty, staff.org, staff.location)
    )
    phone = f"(217) 555-01{40 + index:02d}"
    name: JSON = {"use": "official", "family": staff.family, "given": [staff.given], "suffix": [staff.degree.code]}
    if doctor:
        name["prefix"] = ["Dr."]
    practitioner: JSON = {
        "resourceType": "Practitioner",
        "id": practitioner_id,
        "meta": profile("us-core-practitioner"),
        "identifier": [{"system": NPI, "value": npi(rng)}],
        "active": True,
        "name": [name],
        "telecom": [{"system": "phone", "value": phone, "use": "work"}],
        "address": [_address(next(o.line for o in ORGANIZATIONS if o.key == staff.org))],
        "gender": staff.gender,
        "qualification": [{"code": concept(staff.degree)}],
    }
    role: JSON = {
        "resourceType": "PractitionerRole",
        "id": role_id,
        "meta": profile("us-core-practitionerrole"),
        "active": True,
        "practitioner": urn(practitioner_id) | {"display": display},
        "organization": urn(practice.org_ids[staff.org]),
        "code": [concept(staff.specialty)],
        "specialty": [{"coding": [coding(staff.specialty)]}],
        "location": [urn(practice.location_ids[staff.location])],
        "telecom": [{"system": "phone", "value": phone, "use": "work"}],
    }
    return [practitioner, role]

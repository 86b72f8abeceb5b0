"""Synthetic people: demographics and the US Core Patient resource.

Names are drawn from small pools written for this project, deliberately including diacritics
(Núñez, Zoë, Nguyễn), apostrophes and hyphens, because those are what break naive string search,
HL7 v2 escaping and sorting. Phone numbers use the 555-01xx block reserved for fiction; streets and
e-mail domains are invented or example.com, so no generated contact detail reaches a real person.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NamedTuple

from .datatypes import JSON, coding, concept
from .practice import Clinician, Practice
from .vocab import (
    BCP47,
    EMERGENCY_CONTACT,
    ETHNICITIES,
    LANGUAGES,
    MARITAL_STATUSES,
    MRN_SYSTEM,
    MRN_TYPE,
    PARENT,
    RACES,
    US_CORE,
    profile,
)


class NamePool(NamedTuple):
    female: tuple[str, ...]
    male: tuple[str, ...]
    family: tuple[str, ...]
    language: str  # preferred language when the person does not prefer English
    races: tuple[tuple[str, float], ...]
    hispanic: float
    weight: float


POOLS: tuple[NamePool, ...] = (
    NamePool(("Emma", "Olivia", "Zoë", "Abigail", "Claire", "Margaret", "Hannah", "Renée"),
             ("James", "William", "Henry", "Noah", "Thomas", "Benjamin", "Owen", "Caleb"),
             ("Smith", "O'Brien", "Walker", "Bennett", "Hughes", "Fitzgerald", "Sørensen", "Müller", "Lefèvre"),
             "fr", (("white", 0.9), ("aian", 0.05), ("black", 0.05)), 0.03, 0.38),
    NamePool(("María José", "Sofía", "Lucía", "Ximena", "Valentina", "Inés", "Guadalupe"),
             ("José", "Mateo", "Andrés", "Tomás", "Joaquín", "Iván", "Rubén"),
             ("Núñez", "García", "Rodríguez", "Peña", "Ibáñez", "Muñoz", "López", "García-Márquez"),
             "es", (("white", 0.75), ("black", 0.1), ("aian", 0.15)), 0.97, 0.22),
    NamePool(("Aaliyah", "Imani", "Keisha", "Naomi", "Jasmine", "Danielle"),
             ("Darnell", "Malik", "André", "Jerome", "Isaiah", "Terrence"),
             ("Washington", "Jackson", "Robinson", "Okafor", "Coleman", "Harris"),
             "fr", (("black", 0.95), ("white", 0.05)), 0.04, 0.18),
    NamePool(("Lan", "Thảo", "Ngọc", "Mai", "Priya", "Ananya", "Yuki"),
             ("Minh", "Dũng", "Huy", "Quang", "Arjun", "Rohan", "Kenji"),
             ("Nguyễn", "Trần", "Lê", "Phạm", "Patel", "Iyer", "Tanaka"),
             "vi", (("asian", 0.95), ("nhpi", 0.05)), 0.01, 0.12),
    NamePool(("Zofia", "Agnieszka", "Małgorzata", "Ewa"),
             ("Łukasz", "Paweł", "Wojciech", "Jakub"),
             ("Nowak", "Wójcik", "Mazur", "Krawczyk"),
             "pl", (("white", 1.0),), 0.0, 0.10),
)

# Illinois places, with the area code that serves them; house numbers and streets are invented.
PLACES: tuple[tuple[str, str, str], ...] = (
    ("Springfield", "62701", "217"), ("Springfield", "62702", "217"), ("Springfield", "62704", "217"),
    ("Champaign", "61820", "217"), ("Urbana", "61801", "217"), ("Decatur", "62521", "217"),
    ("Bloomington", "61701", "309"), ("Peoria", "61602", "309"),
)
STREETS = ("Maple Avenue", "Oak Street", "Prairie Lane", "Cedar Court", "Lincoln Boulevard", "Willow Way",
           "Sangamon Road", "Elm Street", "Harvest Drive", "Birch Circle")


@dataclass
class Person:
    """Everything the clinical generator needs to know about a patient, fixed at creation."""

    patient_id: str
    mrn: str
    gender: str
    birth_date: date
    given: str
    family: str
    pcp: Clinician
    height_cm: float
    bmi: float
    smoking: str = ""
    conditions: set[str] = field(default_factory=set)

    def age_on(self, day: date) -> int:
        years = day.year - self.birth_date.year
        return years - ((day.month, day.day) < (self.birth_date.month, self.birth_date.day))

    @property
    def display(self) -> str:
        return f"{self.given} {self.family}"


def draw_age(rng: random.Random) -> int:
    """Roughly a primary-care panel: 15% children, 60% adults under 65, 25% older adults."""
    band = rng.random()
    if band < 0.15:
        return rng.randint(1, 17)
    if band < 0.75:
        return rng.randint(18, 64)
    return rng.randint(65, 92)


def _weighted(rng: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _height(rng: random.Random, gender: str) -> float:
    mean, sd = (176.0, 7.0) if gender == "male" else (162.5, 6.5)
    return round(min(max(rng.gauss(mean, sd), mean - 18), mean + 18), 1)


def draw_person(rng: random.Random, practice: Practice, patient_id: str, mrn: str, anchor: date) -> tuple[
    Person, JSON
]:
    """Draw one person and build their Patient resource (US Core Patient 6.1 shape)."""
    pool = rng.choices(POOLS, weights=[p.weight for p in POOLS])[0]
    gender = rng.choice(("female", "male"))
    given = rng.choice(pool.female if gender == "female" else pool.male)
    family = rng.choice(pool.family)
    age = draw_age(rng)
    birth = anchor - timedelta(days=age * 365 + rng.randrange(365) + age // 4)
    pcp = rng.choice(practice.of_kind("pediatrics") if age < 18 else practice.of_kind("pcp"))
    person = Person(patient_id, mrn, gender, birth, given, family, pcp, _height(rng, gender), 0.0)

    race = RACES[_weighted(rng, pool.races)]
    hispanic = rng.random() < pool.hispanic
    language = pool.language if rng.random() < 0.35 else "en-US"
    city, postal, area = rng.choice(PLACES)
    phone = f"({area}) 555-01{rng.randrange(100):02d}"
    email = f"{_ascii(given)}.{_ascii(family)}{rng.randrange(10, 99)}@example.com"
    moved_in = anchor - timedelta(days=rng.randrange(200, 4000))
    if age >= 65:
        marital = rng.choice("MMMWWD")
    elif age >= 25:
        marital = rng.choice("MMMSSD")
    else:
        marital = "S"

    name: JSON = {"use": "official", "family": family, "given": given.split(" ")}
    patient: JSON = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": profile("us-core-patient"),
        "extension": [
            _omb_extension("us-core-race", race.code, race.display),
            _omb_extension("us-core-ethnicity", ETHNICITIES[hispanic].code, ETHNICITIES[hispanic].display),
            {"url": US_CORE + "us-core-birthsex", "valueCode": "F" if gender == "female" else "M"},
        ],
        "identifier": [
            {"use": "usual", "type": concept(MRN_TYPE, text="MRN"), "system": MRN_SYSTEM, "value": mrn}
        ],
        "active": True,
        "name": [name],
        "telecom": [
            {"system": "phone", "value": phone, "use": "mobile" if age >= 14 else "home", "rank": 1},
            {"system": "email", "value": email, "use": "home"},
        ],
        "gender": gender,
        "birthDate": birth.isoformat(),
        "address": [
            {
                "use": "home",
                "type": "physical",
                "line": [f"{rng.randrange(100, 9800)} {rng.choice(STREETS)}"],
                "city": city,
                "state": "IL",
                "postalCode": postal,
                "country": "US",
                "period": {"start": moved_in.isoformat()},
            }
        ],
        "maritalStatus": concept(MARITAL_STATUSES[marital]),
        "contact": [_contact(rng, pool, family, area)],
        "communication": [
            {
                "language": {"coding": [{"system": BCP47, "code": language, "display": LANGUAGES[language]}],
                             "text": LANGUAGES[language]},
                "preferred": True,
            }
        ],
        "generalPractitioner": [pcp.ref()],
        "managingOrganization": practice.org_ref("clinic"),
    }
    if age < 18:
        patient["contact"][0]["relationship"].append({"coding": [coding(PARENT)]})
    return person, patient


def _omb_extension(name: str, code: str, display: str) -> JSON:
    """US Core race/ethnicity: an OMB category Coding plus the required free-text ``text`` part."""
    return {
        "url": US_CORE + name,
        "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": code,
                                                   "display": display}},
            {"url": "text", "valueString": display},
        ],
    }


def _contact(rng: random.Random, pool: NamePool, family: str, area: str) -> JSON:
    given = rng.choice(pool.female + pool.male)
    return {
        "relationship": [{"coding": [coding(EMERGENCY_CONTACT)]}],
        "name": {"use": "official", "family": family, "given": given.split(" ")},
        "telecom": [{"system": "phone", "value": f"({area}) 555-01{rng.randrange(100):02d}", "use": "mobile"}],
    }

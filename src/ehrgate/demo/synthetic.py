"""Deterministic synthetic patients for demos and tests, as FHIR R4 transaction Bundles.

``generate_demo_bundles(patients, seed, anchor)`` yields:

1. one Bundle of shared resources: a hospital, a family-medicine clinic, a heart clinic and a
   laboratory (Organization, with NPIs), six Locations, eleven Practitioners with NPIs and their
   PractitionerRoles (NUCC specialties);
2. one Bundle per patient: Patient (MRN, US Core race/ethnicity/birth-sex extensions, language,
   marital status, general practitioner), 2-6 Encounters over the three years before ``anchor``
   (ambulatory, emergency, inpatient), problem-list and encounter-diagnosis Conditions (SNOMED CT +
   ICD-10-CM), vital-sign Observations at every visit, lab panels (basic metabolic, CBC, lipid,
   HbA1c) with reference ranges and flags grouped by DiagnosticReports, smoking status,
   MedicationRequests (RxNorm), AllergyIntolerances, Immunizations (CVX), Procedures, and for
   chronic patients a CareTeam, Goals and a CarePlan, and for many a booked future Appointment.

Values are correlated with the patient's problems (diabetics have high HbA1c, CKD raises
creatinine, BMI is computed from the weight and height taken at the same visit) and every resource
claims its US Core 6.1 profile.

Determinism and idempotence: all randomness comes from ``random.Random`` seeded per bundle with a
string derived from ``seed`` (the shared bundle and each patient index have their own stream), and
all dates are offsets from ``anchor``. The same arguments therefore produce byte-identical JSON,
and asking for more patients leaves the first ones unchanged. Every entry is a ``PUT Type/<id>``
with an id drawn from that stream, so loading the same seed twice updates the same resources
instead of creating duplicates. Within a bundle, references use the entries' ``urn:uuid:<id>``
fullUrls (the id and the uuid are the same string); patient bundles refer to shared resources as
``Type/id``, so the shared bundle must be loaded first — it is yielded first.

MRNs are ``MRN`` + two digits of the seed + a four-digit patient number (``MRN070001`` for seed 7),
so demo worlds built from different seeds can share one store without MRN collisions (for seeds
that differ modulo 100). Nothing here is real: names are from our own pools, contact details use
reserved fictional ranges, and no data was copied from other generators.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import date

from .chart import Chart, add_encounter_diagnoses, add_problems, draw_risk, plan_visits
from .datatypes import JSON, new_id
from .observations import add_labs, add_smoking_status, add_vitals
from .orders import add_allergies, add_immunizations, add_medications, add_procedures
from .people import draw_person
from .plans import add_appointment, add_care_plan
from .practice import Practice, build_practice

__all__ = ["DEFAULT_ANCHOR", "generate_demo_bundles", "mrn_for", "transaction"]

DEFAULT_ANCHOR = date(2026, 1, 1)


def generate_demo_bundles(patients: int = 40, seed: int = 7, anchor: date = DEFAULT_ANCHOR) -> Iterator[JSON]:
    """Yield the shared-resources transaction, then one transaction per patient (see module doc)."""
    if patients < 0:
        raise ValueError(f"patients: {patients} is negative; expected 0 or more")
    practice = build_practice(random.Random(f"ehrgate-demo:{seed}:shared"))
    yield transaction(practice.resources)
    for index in range(patients):
        yield transaction(patient_resources(practice, seed, index, anchor))


def mrn_for(seed: int, index: int) -> str:
    return f"MRN{seed % 100:02d}{index + 1:04d}"


def patient_resources(practice: Practice, seed: int, index: int, anchor: date) -> list[JSON]:
    """One patient's chart, built in story order: person, risks, visits, then what happened at them."""
    rng = random.Random(f"ehrgate-demo:{seed}:patient:{index}")
    person, patient = draw_person(rng, practice, new_id(rng), mrn_for(seed, index), anchor)
    chart = Chart(rng, practice, person, anchor, resources=[patient])
    draw_risk(chart)
    plan_visits(chart)
    add_problems(chart)
    add_encounter_diagnoses(chart)
    for visit in chart.visits:
        add_vitals(chart, visit)
        if visit.kind == "checkup" and chart.age_at(visit) >= 13:
            add_smoking_status(chart, visit)
        add_labs(chart, visit)
    add_medications(chart)
    add_allergies(chart)
    add_immunizations(chart)
    add_procedures(chart)
    add_care_plan(chart)
    add_appointment(chart)
    return chart.resources


def transaction(resources: Iterable[JSON]) -> JSON:
    """A transaction Bundle that PUTs each resource at ``Type/id`` (idempotent on re-load)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }

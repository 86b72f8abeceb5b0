"""One patient's chart under construction: the visit timeline, encounters and conditions.

A chart is built in story order — who the person is, which chronic problems they carry, when they
came in and why — and the other modules (observations, orders, plans) read that story so values
agree with it: a diabetic's HbA1c is high, a pneumonia admission has a fever and a chest X-ray.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from .datatypes import JSON, coding, concept, fhir_datetime, new_id, period, urn
from .people import Person
from .practice import Clinician, Practice
from .vocab import (
    ACUTE,
    ACUTE_BY_SETTING,
    CHRONIC,
    COND_CATEGORY,
    COND_CLINICAL,
    COND_VERIFICATION,
    CURRENT_SMOKER_CODES,
    DISCHARGE_DIAGNOSIS,
    DISCHARGED_HOME,
    ENCOUNTER_CLASSES,
    ENCOUNTER_TYPES,
    ICD10CM,
    PRIMARY_PERFORMER,
    SMOKING_VALUES,
    SNOMED,
    VISIT_SYSTEM,
    Code,
    ConditionDef,
    profile,
)

HISTORY_YEARS = 3
SETTING = {"checkup": "AMB", "followup": "AMB", "acute": "AMB", "emergency": "EMER", "inpatient": "IMP"}
FEBRILE = frozenset({"pneumonia", "strep", "otitis", "cellulitis"})
INFECTIONS = frozenset({"pneumonia", "cellulitis"})


@dataclass
class Visit:
    """An encounter and the facts later steps need about it."""

    id: str
    index: int
    kind: str
    start: datetime
    end: datetime
    clinician: Clinician
    location: str
    org: str
    resource: JSON
    acute: str | None = None
    focus: str | None = None  # chronic condition a follow-up is about

    @property
    def setting(self) -> str:
        return SETTING[self.kind]

    @property
    def febrile(self) -> bool:
        return self.acute in FEBRILE


@dataclass
class Chart:
    rng: random.Random
    practice: Practice
    person: Person
    anchor: date
    resources: list[JSON] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    condition_ids: dict[str, str] = field(default_factory=dict)
    diagnosed_at: dict[str, int] = field(default_factory=dict)  # chronic key -> visit index
    med_ids: dict[str, str] = field(default_factory=dict)

    def add(self, resource_type: str, profile_name: str | None, body: JSON) -> str:
        """Append a resource with a fresh seeded id; ``resourceType``/``id``/``meta`` come first."""
        rid = new_id(self.rng)
        resource: JSON = {"resourceType": resource_type, "id": rid}
        if profile_name:
            resource["meta"] = profile(profile_name)
        resource.update(body)
        self.resources.append(resource)
        return rid

    @property
    def subject(self) -> JSON:
        return urn(self.person.patient_id) | {"display": self.person.display}

    def treated(self, key: str, visit: Visit) -> bool:
        """Whether ``key`` was already diagnosed (and so treated) before this visit."""
        return key in self.diagnosed_at and self.diagnosed_at[key] < visit.index

    def age_at(self, visit: Visit) -> int:
        return self.person.age_on(visit.start.date())


def plain(display: str) -> str:
    """SNOMED display without its semantic tag, for human-facing ``text``."""
    return display.rsplit(" (", 1)[0] if display.endswith(")") else display


def _band(age: int) -> int:
    return 0 if age < 18 else 1 if age < 45 else 2 if age < 65 else 3


def draw_risk(chart: Chart) -> None:
    """Smoking status, chronic problems and body size, correlated the way primary care sees them."""
    rng, person = chart.rng, chart.person
    age = person.age_on(chart.anchor)
    smoking = rng.choices([c for c, _ in SMOKING_VALUES], weights=[w for _, w in SMOKING_VALUES])[0]
    person.smoking = "266919005" if age < 15 else smoking.code
    smoker = person.smoking in CURRENT_SMOKER_CODES or person.smoking == "8517006"
    for key, cond in CHRONIC.items():
        p = cond.prevalence[_band(age)]
        if key in ("hypertension", "cad") and smoker:
            p *= 1.5
        if key == "ckd3" and {"diabetes", "hypertension"} & person.conditions:
            p *= 2.5
        if key == "prediabetes" and "diabetes" in person.conditions:
            continue
        if rng.random() < p:
            person.conditions.add(key)
    if "obesity" in person.conditions:
        person.bmi = round(rng.uniform(30.5, 39.5), 1) if age >= 18 else round(rng.uniform(23.0, 28.0), 1)
    elif age >= 18:
        person.bmi = round(rng.uniform(19.5, 29.4) + (2.0 if "diabetes" in person.conditions else 0.0), 1)
    else:
        person.bmi = round(rng.uniform(14.8, 19.5), 1)


def plan_visits(chart: Chart) -> None:
    """2-6 encounters in the last three years: first an annual check-up, then a mix of visit kinds.

    Visits sit in distinct fortnights so an inpatient stay (at most five days) never overlaps the
    next visit; clinic visits fall on weekdays in office hours.
    """
    rng, person, anchor = chart.rng, chart.person, chart.anchor
    earliest = max(anchor - timedelta(days=365 * HISTORY_YEARS), person.birth_date + timedelta(days=30))
    slots = ((anchor - earliest).days - 8) // 14
    count = rng.randint(2, 6)
    chosen = sorted(rng.sample(range(slots), min(count, slots)))
    kinds = ["checkup"]
    for _ in chosen[1:]:
        options = {"followup": 0.35 if person.conditions else 0.0, "acute": 0.3, "checkup": 0.15,
                   "emergency": 0.12, "inpatient": 0.08}
        kinds.append(rng.choices(list(options), weights=list(options.values()))[0])
    if not person.conditions and not {"acute", "emergency", "inpatient"} & set(kinds):
        kinds[-1] = "acute"  # every demo chart shows at least one problem and one prescription
    for index, (slot, kind) in enumerate(zip(chosen, kinds, strict=True)):
        day = earliest + timedelta(days=slot * 14 + rng.randrange(5))
        chart.visits.append(_visit(chart, index, kind, day))


def _visit(chart: Chart, index: int, kind: str, day: date) -> Visit:
    rng, practice, person = chart.rng, chart.practice, chart.person
    focus = acute = None
    setting = SETTING[kind]
    if setting == "AMB":
        while day.weekday() >= 5:
            day += timedelta(days=1)
        start = datetime.combine(day, time(8)) + timedelta(minutes=20 * rng.randrange(26))
        end = start + timedelta(minutes=rng.choice((20, 30, 40)))
    elif setting == "EMER":
        start = datetime.combine(day, time(0)) + timedelta(minutes=rng.randrange(24 * 60))
        end = start + timedelta(minutes=rng.randrange(120, 360))
    else:
        start = datetime.combine(day, time(0)) + timedelta(minutes=rng.randrange(24 * 60))
        end = datetime.combine(day + timedelta(days=rng.randint(2, 5)), time(10)) + timedelta(
            minutes=rng.randrange(300))
    clinician = person.pcp
    if kind == "followup":
        focus = rng.choice(sorted(person.conditions))
        if focus == "cad":
            clinician = practice.of_kind("cardiology")[0]
        elif focus == "diabetes" and rng.random() < 0.4:
            clinician = practice.of_kind("endocrinology")[0]
    elif kind == "emergency":
        clinician = rng.choice(practice.of_kind("emergency"))
    elif kind == "inpatient":
        clinician = practice.of_kind("hospitalist")[0]
    if kind in ("acute", "emergency", "inpatient"):
        acute = _draw_acute(rng, setting, person.age_on(day))
    location = {"EMER": "ed", "IMP": "ward"}.get(setting, clinician.location)
    org = "hospital" if setting != "AMB" else clinician.org
    vid = new_id(rng)
    type_key = {"checkup": "well_child" if person.age_on(day) < 18 else "checkup"}.get(kind, kind)
    when = period(start, end)
    resource: JSON = {
        "resourceType": "Encounter",
        "id": vid,
        "meta": profile("us-core-encounter"),
        "identifier": [{"use": "official", "system": VISIT_SYSTEM, "value": f"{person.mrn}-{index + 1:02d}"}],
        "status": "finished",
        "class": coding(ENCOUNTER_CLASSES[setting]),
        "type": [concept(ENCOUNTER_TYPES[type_key])],
        "subject": urn(person.patient_id) | {"display": person.display},
        "participant": [{"type": [concept(PRIMARY_PERFORMER)], "period": when, "individual": clinician.ref()}],
        "period": when,
    }
    if setting != "AMB":
        resource["hospitalization"] = {"dischargeDisposition": concept(DISCHARGED_HOME)}
    resource["location"] = [{"location": practice.location_ref(location), "status": "completed", "period": when}]
    resource["serviceProvider"] = practice.org_ref(org)
    chart.resources.append(resource)
    return Visit(vid, index, kind, start, end, clinician, location, org, resource, acute, focus)


def _draw_acute(rng: random.Random, setting: str, age: int) -> str:
    keys = ACUTE_BY_SETTING[setting]
    weights = [ACUTE[k].prevalence[_band(age)] for k in keys]
    return rng.choices(keys, weights=weights)[0]


def _codes(cond: ConditionDef) -> JSON:
    return concept(Code(SNOMED, cond.snomed, cond.snomed_display), Code(ICD10CM, cond.icd, cond.icd_display),
                   text=plain(cond.snomed_display))


def _status(system: str, code: str) -> JSON:
    return concept(Code(system, code, code.replace("-", " ").capitalize()))


def add_problems(chart: Chart) -> None:
    """Problem-list Conditions, recorded at the first visit; most started years before it."""
    rng, person = chart.rng, chart.person
    first = chart.visits[0]
    age = chart.age_at(first)
    for key in sorted(person.conditions):
        cond = CHRONIC[key]
        earliest_age = 2 if key in ("asthma", "rhinitis", "anemia", "obesity") or age < 18 else 18
        if rng.random() < 0.25 or age <= earliest_age:
            onset = first.start.date()
            chart.diagnosed_at[key] = 0
        else:
            years = rng.uniform(0.2, min(12.0, age - earliest_age))
            onset = first.start.date() - timedelta(days=int(years * 365))
            chart.diagnosed_at[key] = -1
        chart.condition_ids[key] = chart.add("Condition", "us-core-condition-problems-health-concerns", {
            "clinicalStatus": _status(COND_CLINICAL, "active"),
            "verificationStatus": _status(COND_VERIFICATION, "confirmed"),
            "category": [concept(Code(COND_CATEGORY, "problem-list-item", "Problem List Item"))],
            "code": _codes(cond),
            "subject": chart.subject,
            "encounter": urn(first.id),
            "onsetDateTime": onset.isoformat(),
            "recordedDate": fhir_datetime(first.start + timedelta(minutes=10)),
            "recorder": person.pcp.ref(),
            "asserter": person.pcp.ref(),
        })
    for visit in chart.visits:
        if visit.focus:
            visit.resource["reasonReference"] = [urn(chart.condition_ids[visit.focus])]


def add_encounter_diagnoses(chart: Chart) -> None:
    """Acute problems as encounter diagnoses; resolved once their course ends before the anchor."""
    rng = chart.rng
    for visit in chart.visits:
        if not visit.acute:
            continue
        cond = ACUTE[visit.acute]
        onset = visit.start.date() - timedelta(days=rng.randint(0, 3))
        abated = visit.end.date() + timedelta(days=rng.randint(3, 21))
        body: JSON = {
            "clinicalStatus": _status(COND_CLINICAL, "resolved" if abated < chart.anchor else "active"),
            "verificationStatus": _status(COND_VERIFICATION, "confirmed"),
            "category": [concept(Code(COND_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis"))],
            "code": _codes(cond),
            "subject": chart.subject,
            "encounter": urn(visit.id),
            "onsetDateTime": onset.isoformat(),
        }
        if abated < chart.anchor:
            body["abatementDateTime"] = abated.isoformat()
        body["recordedDate"] = fhir_datetime(visit.start + timedelta(minutes=15))
        body["recorder"] = visit.clinician.ref()
        cid = chart.add("Condition", "us-core-condition-encounter-diagnosis", body)
        chart.condition_ids[f"{visit.acute}@{visit.index}"] = cid
        visit.resource["reasonReference"] = [urn(cid)]
        diagnosis: JSON = {"condition": urn(cid), "rank": 1}
        if visit.setting == "IMP":
            diagnosis["use"] = concept(DISCHARGE_DIAGNOSIS)
        visit.resource["diagnosis"] = [diagnosis]

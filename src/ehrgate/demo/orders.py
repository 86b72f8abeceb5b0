"""Medication orders, allergies, immunizations and procedures.

Chronic problems get a standing prescription written at the visit where they were recorded;
acute problems get a short course that is ``completed`` once it ends before the anchor date. Each
order points back at the Condition it treats (``reasonReference``) so the chart reads as a story.
"""

from __future__ import annotations

import string
from datetime import date, timedelta

from .chart import Chart, Visit, plain
from .datatypes import JSON, concept, fhir_datetime, quantity, urn
from .vocab import (
    ACUTE,
    ALLERGIES,
    ALLERGY_CLINICAL,
    ALLERGY_VERIFICATION,
    ALTERNATIVE_MEDS,
    CHRONIC,
    CVX,
    DOSE_RATE,
    FLU,
    IMM_FUNCTION,
    INJECTION_SITES,
    INTRAMUSCULAR,
    MANIFESTATIONS,
    MED_REQUEST_CATEGORY,
    MEDS,
    NO_KNOWN_ALLERGY,
    PROCEDURE_FOR_ACUTE,
    PROCEDURES,
    ROUTES,
    RXNORM,
    SNOMED,
    SUBCUTANEOUS,
    SUBCUTANEOUS_VACCINES,
    UCUM,
    VACCINES,
    Code,
    VaccineDef,
)


def _prescribe(chart: Chart, visit: Visit, med_key: str, reason_id: str | None) -> str:
    med = MEDS[med_key]
    authored = visit.start + timedelta(minutes=25)
    repeat: JSON = {"frequency": med.frequency, "period": med.period, "periodUnit": med.period_unit}
    if med.course_days:
        repeat["boundsDuration"] = {"value": med.course_days, "unit": "days", "system": UCUM, "code": "d"}
    dosage: JSON = {"sequence": 1, "text": med.sig, "timing": {"repeat": repeat}}
    if med.as_needed:
        dosage["asNeededBoolean"] = True
    dosage["route"] = concept(ROUTES[med.route])
    dosage["doseAndRate"] = [{"type": concept(Code(DOSE_RATE, "ordered", "Ordered")),
                              "doseQuantity": quantity(med.dose, med.dose_unit, med.dose_ucum)}]
    done = med.course_days is not None and authored.date() + timedelta(days=med.course_days) < chart.anchor
    category = ("outpatient", "Outpatient") if visit.setting == "AMB" else ("discharge", "Discharge")
    body: JSON = {
        "status": "completed" if done else "active",
        "intent": "order",
        "category": [concept(Code(MED_REQUEST_CATEGORY, *category))],
        "reportedBoolean": False,
        "medicationCodeableConcept": concept(Code(RXNORM, med.rxnorm, med.display)),
        "subject": chart.subject,
        "encounter": urn(visit.id),
        "authoredOn": fhir_datetime(authored),
        "requester": visit.clinician.ref(),
    }
    if reason_id:
        body["reasonReference"] = [urn(reason_id)]
    body["dosageInstruction"] = [dosage]
    supply = med.course_days or 90
    body["dispenseRequest"] = {
        "numberOfRepeatsAllowed": 0 if med.course_days else 3,
        "expectedSupplyDuration": {"value": supply, "unit": "days", "system": UCUM, "code": "d"},
    }
    return chart.add("MedicationRequest", "us-core-medicationrequest", body)


def add_medications(chart: Chart) -> None:
    rng = chart.rng
    for key in sorted(chart.person.conditions):
        meds = list(CHRONIC[key].meds)
        if not meds:
            continue
        if meds[0] in ALTERNATIVE_MEDS and rng.random() < 0.35:
            meds[0] = ALTERNATIVE_MEDS[meds[0]]
        if key == "asthma" and rng.random() < 0.5:
            meds = meds[:1]
        visit = chart.visits[max(chart.diagnosed_at[key], 0)]
        for med_key in meds:
            chart.med_ids[med_key] = _prescribe(chart, visit, med_key, chart.condition_ids[key])
    for visit in chart.visits:
        if visit.acute:
            for med_key in ACUTE[visit.acute].meds:
                _prescribe(chart, visit, med_key, chart.condition_ids[f"{visit.acute}@{visit.index}"])


def add_allergies(chart: Chart) -> None:
    """0-2 allergies; half of the rest get an explicit "no known allergy" entry, as EHRs record."""
    rng, person = chart.rng, chart.person
    first = chart.visits[0]
    recorded = fhir_datetime(first.start + timedelta(minutes=8))
    count = rng.choices((0, 1, 2), weights=(0.55, 0.33, 0.12))[0]
    if count == 0:
        if rng.random() < 0.5:
            chart.add("AllergyIntolerance", "us-core-allergyintolerance", {
                "clinicalStatus": concept(Code(ALLERGY_CLINICAL, "active", "Active")),
                "verificationStatus": concept(Code(ALLERGY_VERIFICATION, "confirmed", "Confirmed")),
                "code": concept(NO_KNOWN_ALLERGY, text="No known allergies"),
                "patient": chart.subject,
                "encounter": urn(first.id),
                "recordedDate": recorded,
                "recorder": person.pcp.ref(),
            })
        return
    for allergy in rng.sample(ALLERGIES, count):
        reactions = rng.sample(allergy.reactions, rng.randint(1, len(allergy.reactions)))
        worst = max((MANIFESTATIONS[r][1] for r in reactions), key=("mild", "moderate", "severe").index)
        if allergy.high_risk or worst == "severe":
            criticality = "high"
        else:
            criticality = rng.choice(("low", "low", "unable-to-assess"))
        confirmed = rng.random() < 0.85
        onset = person.birth_date + timedelta(days=rng.randrange(max((first.start.date() - person.birth_date).days, 1)))
        chart.add("AllergyIntolerance", "us-core-allergyintolerance", {
            "clinicalStatus": concept(Code(ALLERGY_CLINICAL, "active", "Active")),
            "verificationStatus": concept(Code(ALLERGY_VERIFICATION, *(
                ("confirmed", "Confirmed") if confirmed else ("unconfirmed", "Unconfirmed")))),
            "type": allergy.kind,
            "category": [allergy.category],
            "criticality": criticality,
            "code": concept(Code(allergy.system, allergy.code, allergy.display), text=plain(allergy.display)),
            "patient": chart.subject,
            "encounter": urn(first.id),
            "onsetDateTime": onset.isoformat(),
            "recordedDate": recorded,
            "recorder": person.pcp.ref(),
            "reaction": [{
                "manifestation": [concept(MANIFESTATIONS[r][0], text=plain(MANIFESTATIONS[r][0].display))
                                  for r in reactions],
                "severity": worst,
            }],
        })
        if allergy.high_risk and "epinephrine" not in chart.med_ids:
            chart.med_ids["epinephrine"] = _prescribe(chart, first, "epinephrine", None)


def _lot(chart: Chart) -> str:
    letters = "".join(chart.rng.choices(string.ascii_uppercase, k=2))
    return f"{letters}{chart.rng.randrange(1000, 99999)}"


def _immunize(chart: Chart, visit: Visit, vaccine: VaccineDef) -> None:
    rng = chart.rng
    given = visit.start + timedelta(minutes=rng.randint(20, 35))
    chart.add("Immunization", "us-core-immunization", {
        "status": "completed",
        "vaccineCode": concept(Code(CVX, vaccine.cvx, vaccine.display)),
        "patient": chart.subject,
        "encounter": urn(visit.id),
        "occurrenceDateTime": fhir_datetime(given),
        "recorded": fhir_datetime(given),
        "primarySource": True,
        "location": chart.practice.location_ref(visit.location),
        "lotNumber": _lot(chart),
        "expirationDate": (given.date() + timedelta(days=rng.randint(120, 540))).isoformat(),
        "site": concept(rng.choice(INJECTION_SITES)),
        "route": concept(SUBCUTANEOUS if vaccine.cvx in SUBCUTANEOUS_VACCINES else INTRAMUSCULAR),
        "doseQuantity": quantity(0.5, "mL", "mL"),
        "performer": [{"function": concept(Code(IMM_FUNCTION, "AP", "Administering Provider")),
                       "actor": visit.clinician.ref()}],
    })


def _flu_season(day: date) -> int | None:
    """The northern-hemisphere season a date falls in (Sep-Mar), named by its starting year."""
    if day.month >= 9:
        return day.year
    return day.year - 1 if day.month <= 3 else None


def add_immunizations(chart: Chart) -> None:
    """Seasonal flu shots at autumn/winter clinic visits plus one age-due vaccine at the check-up."""
    rng = chart.rng
    seasons: set[int] = set()
    count = 0
    for visit in chart.visits:
        season = _flu_season(visit.start.date())
        if visit.setting == "AMB" and season is not None and season not in seasons and chart.age_at(visit) >= 3:
            if rng.random() < 0.7:
                seasons.add(season)
                _immunize(chart, visit, FLU)
                count += 1
    first = chart.visits[0]
    due = [v for v in VACCINES if v.min_age <= chart.age_at(first) <= v.max_age]
    if count == 0 or rng.random() < 0.7:
        _immunize(chart, first, rng.choice(due))


def _perform(chart: Chart, visit: Visit, key: str, reason_id: str | None) -> None:
    proc = PROCEDURES[key]
    start = visit.start + timedelta(minutes=chart.rng.randint(15, 30))
    body: JSON = {
        "status": "completed",
        "code": concept(Code(SNOMED, proc.snomed, proc.display), text=plain(proc.display)),
        "subject": chart.subject,
        "encounter": urn(visit.id),
        "performedPeriod": {"start": fhir_datetime(start),
                            "end": fhir_datetime(start + timedelta(minutes=proc.minutes))},
        "performer": [{"actor": visit.clinician.ref()}],
        "location": chart.practice.location_ref(visit.location),
    }
    if reason_id:
        body["reasonReference"] = [urn(reason_id)]
    chart.add("Procedure", "us-core-procedure", body)


def add_procedures(chart: Chart) -> None:
    rng, done = chart.rng, 0
    for visit in chart.visits:
        if visit.acute in PROCEDURE_FOR_ACUTE:
            _perform(chart, visit, PROCEDURE_FOR_ACUTE[visit.acute],
                     chart.condition_ids[f"{visit.acute}@{visit.index}"])
            done += 1
        elif visit.kind == "followup" and visit.focus == "asthma":
            _perform(chart, visit, "spirometry", chart.condition_ids["asthma"])
            done += 1
        elif visit.kind == "checkup" and chart.age_at(visit) >= 12 and rng.random() < 0.5:
            _perform(chart, visit, "depression_screening", None)
            done += 1
        elif visit.kind == "followup" and rng.random() < 0.6:
            _perform(chart, visit, "med_reconciliation", chart.condition_ids.get(visit.focus or ""))
            done += 1
    if done == 0:
        _perform(chart, chart.visits[0], "med_reconciliation", None)

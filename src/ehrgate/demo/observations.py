"""Vital signs, laboratory results (grouped by DiagnosticReport) and smoking status.

Values follow the patient's story rather than independent noise: BMI is computed from the weight
and height recorded at the same visit, LDL is the Friedewald calculation from the lipid panel it
belongs to, and chronic problems shift the analytes they are diagnosed by (HbA1c for diabetes,
creatinine for CKD, haemoglobin for anaemia), improving once treatment has started. Flags
(``interpretation``) are derived from the reference range actually attached to each result.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .chart import INFECTIONS, Chart, Visit
from .datatypes import JSON, concept, fhir_datetime, quantity, urn
from .vocab import (
    DIAG_SERVICE,
    INTERPRETATION,
    INTERPRETATIONS,
    LABS,
    LOINC,
    OBS_CATEGORY,
    PANELS,
    SEX_SPECIFIC_RANGES,
    SMOKING_STATUS,
    SMOKING_VALUES,
    SPO2_ARTERIAL,
    VITALS,
    Code,
)

AMENDED_RATE = 0.04
# Fraction of adult height reached by age (years), interpolated between points.
_GROWTH = ((1, 0.44), (2, 0.5), (4, 0.59), (6, 0.67), (8, 0.74), (10, 0.8), (12, 0.87), (14, 0.94),
           (16, 0.98), (18, 1.0))


def _category(code: str, display: str) -> list[JSON]:
    return [concept(Code(OBS_CATEGORY, code, display))]


def _observation(chart: Chart, visit: Visit, profile_name: str, category: list[JSON], code: JSON,
                 when: datetime, value: JSON) -> str:
    body: JSON = {"status": "final", "category": category, "code": code, "subject": chart.subject,
                  "encounter": urn(visit.id), "effectiveDateTime": fhir_datetime(when)}
    if chart.rng.random() < AMENDED_RATE:
        body["status"] = "amended"
        body["note"] = [{"text": "Amended after review: the value was re-entered from the source record."}]
    body.update(value)
    return chart.add("Observation", profile_name, body)


def _loinc(code: str, display: str) -> JSON:
    return concept(Code(LOINC, code, display))


def _growth_fraction(age: float) -> float:
    if age >= 18:
        return 1.0
    for (a0, f0), (a1, f1) in zip(_GROWTH, _GROWTH[1:], strict=False):
        if a0 <= age <= a1:
            return f0 + (f1 - f0) * (age - a0) / (a1 - a0)
    return _GROWTH[0][1]


def add_vitals(chart: Chart, visit: Visit) -> None:
    """The US Core vital-signs set taken at intake, ten minutes into the visit."""
    rng, person = chart.rng, chart.person
    when = visit.start + timedelta(minutes=10)
    age = (visit.start.date() - person.birth_date).days / 365.25
    child = age < 18
    cond = person.conditions
    height = round(person.height_cm * _growth_fraction(age), 1)
    weight = round(person.bmi * (height / 100) ** 2 * rng.uniform(0.98, 1.02), 1)
    bmi = round(weight / (height / 100) ** 2, 1)
    temp = round(rng.uniform(38.0, 39.4), 1) if visit.febrile else round(rng.uniform(36.3, 37.2), 1)
    heart = rng.randint(80, 115) if child else rng.randint(58, 90)
    heart += 12 if visit.febrile else 0
    resp = rng.randint(18, 26) if child else rng.randint(12, 18)
    spo2 = rng.randint(95, 100)
    if visit.acute == "pneumonia":
        resp, spo2 = rng.randint(20, 28), rng.randint(88, 93)
    elif "asthma" in cond:
        spo2 = rng.randint(94, 98)
    if child:
        systolic, diastolic = rng.randint(92, 112), rng.randint(55, 72)
    elif "hypertension" in cond:
        treated = chart.treated("hypertension", visit)
        systolic = rng.randint(126, 142) if treated else rng.randint(140, 166)
        diastolic = rng.randint(78, 90) if treated else rng.randint(88, 100)
    else:
        systolic, diastolic = rng.randint(105, 128), rng.randint(64, 82)
    if not child and age >= 65:
        systolic += 5

    vital = _category("vital-signs", "Vital Signs")

    def one(key: str, value: float) -> None:
        loinc, display, ucum, unit, profile_name = VITALS[key]
        _observation(chart, visit, profile_name, vital, _loinc(loinc, display), when,
                     {"valueQuantity": quantity(value, unit, ucum)})

    components = []
    for key, value in (("systolic", systolic), ("diastolic", diastolic)):
        loinc, display, ucum, unit, _ = VITALS[key]
        components.append({"code": _loinc(loinc, display), "valueQuantity": quantity(value, unit, ucum)})
    loinc, display, _, _, profile_name = VITALS["bp"]
    _observation(chart, visit, profile_name, vital, _loinc(loinc, display), when, {"component": components})
    one("heart_rate", heart)
    one("resp_rate", resp)
    one("temperature", temp)
    one("height", height)
    one("weight", weight)
    one("bmi", bmi)
    loinc, display, ucum, unit, profile_name = VITALS["spo2"]
    code = concept(Code(LOINC, loinc, display), SPO2_ARTERIAL)
    _observation(chart, visit, profile_name, vital, code, when, {"valueQuantity": quantity(spo2, unit, ucum)})


def add_smoking_status(chart: Chart, visit: Visit) -> None:
    code = next(c for c, _ in SMOKING_VALUES if c.code == chart.person.smoking)
    when = visit.start + timedelta(minutes=12)
    _observation(chart, visit, "us-core-smokingstatus", _category("social-history", "Social History"),
                 concept(SMOKING_STATUS), when, {"issued": fhir_datetime(when), "valueCodeableConcept": concept(code)})


def panels_for(chart: Chart, visit: Visit) -> list[str]:
    """Which lab panels a visit orders, the way a primary-care or hospital workflow would."""
    cond, age = chart.person.conditions, chart.age_at(visit)
    if visit.setting != "AMB":
        return ["cbc", "bmp"] if visit.setting == "IMP" or visit.acute == "chest_pain" else []
    if visit.kind == "checkup":
        if age < 18:
            return ["cbc"] if "anemia" in cond else []
        panels = ["bmp", "cbc", "lipid"]
        if {"diabetes", "prediabetes"} & cond or age >= 45:
            panels.append("a1c")
        return panels
    if visit.kind == "followup":
        return {"diabetes": ["a1c", "bmp"], "ckd3": ["bmp"], "hyperlipidemia": ["lipid"], "anemia": ["cbc"],
                "hypertension": ["bmp"]}.get(visit.focus or "", [])
    return []


def _lab_values(chart: Chart, visit: Visit, panel: str) -> dict[str, float]:
    rng, person = chart.rng, chart.person
    cond, male, child = person.conditions, person.gender == "male", chart.age_at(visit) < 18
    u = rng.uniform
    if panel == "a1c":
        if "diabetes" in cond:
            base = u(6.6, 8.0) - 0.25 * visit.index if chart.treated("diabetes", visit) else u(7.4, 9.8)
            return {"hba1c": max(base, 6.3)}
        return {"hba1c": u(5.7, 6.4) if "prediabetes" in cond else u(4.6, 5.5)}
    if panel == "bmp":
        if "diabetes" in cond:
            glucose = u(120, 175) if chart.treated("diabetes", visit) else u(150, 240)
        else:
            glucose = u(100, 125) if "prediabetes" in cond else u(72, 98)
        if "ckd3" in cond:
            creatinine = u(1.5, 2.4)
        else:
            creatinine = u(0.3, 0.7) if child else u(0.75, 1.25) if male else u(0.55, 1.0)
        potassium = u(4.6, 5.4) if "ckd3" in cond else u(3.6, 4.9)
        return {"glucose": glucose, "sodium": u(136, 144), "potassium": potassium, "creatinine": creatinine}
    if panel == "cbc":
        if "anemia" in cond:
            hgb = u(10.0, 12.5) if male else u(9.0, 11.3)
        else:
            hgb = u(11.6, 14.0) if child else u(13.6, 17.0) if male else u(12.2, 15.2)
        wbc = u(12.0, 17.5) if visit.acute in INFECTIONS else u(4.5, 10.0)
        return {"hemoglobin": hgb, "wbc": wbc, "platelets": u(170, 380)}
    if "hyperlipidemia" in cond:
        total = u(180, 225) if chart.treated("hyperlipidemia", visit) else u(225, 290)
    else:
        total = u(140, 198)
    hdl = (u(45, 80) if not male else u(38, 65)) - (5 if "diabetes" in cond else 0)
    high_tg = {"hyperlipidemia", "diabetes", "obesity"} & cond
    tg = u(150, 320) if high_tg else u(60, 148)
    return {"cholesterol": total, "hdl": hdl, "triglycerides": tg, "ldl": max(total - hdl - tg / 5, 30.0)}


def _reference(key: str, gender: str, child: bool) -> tuple[float | None, float | None]:
    lab = LABS[key]
    if key in SEX_SPECIFIC_RANGES and not child:
        return SEX_SPECIFIC_RANGES[key][gender]
    if key == "hemoglobin" and child:
        return 11.5, 15.5
    if key == "creatinine" and child:
        return 0.2, 0.8
    return lab.low, lab.high


def add_labs(chart: Chart, visit: Visit) -> None:
    """Each panel becomes lab Observations plus one DiagnosticReport listing them as ``result``."""
    rng, person = chart.rng, chart.person
    child = chart.age_at(visit) < 18
    collected = visit.start + timedelta(minutes=rng.randint(15, 40) if visit.setting == "AMB" else 60)
    issued = collected + timedelta(minutes=rng.randint(90, 480))
    lab_category = _category("laboratory", "Laboratory")
    for panel_key in panels_for(chart, visit):
        panel = PANELS[panel_key]
        result_ids, amended = [], False
        for key, raw in _lab_values(chart, visit, panel_key).items():
            lab = LABS[key]
            value = round(raw, lab.decimals) if lab.decimals else int(round(raw))
            low, high = _reference(key, person.gender, child)
            flag = "H" if high is not None and value > high else "L" if low is not None and value < low else "N"
            ref_range: JSON = {}
            if low is not None:
                ref_range["low"] = quantity(low, lab.unit, lab.ucum)
            if high is not None:
                ref_range["high"] = quantity(high, lab.unit, lab.ucum)
            oid = _observation(chart, visit, "us-core-observation-lab", lab_category,
                               _loinc(lab.loinc, lab.display), collected, {
                                   "issued": fhir_datetime(issued),
                                   "performer": [chart.practice.org_ref("lab")],
                                   "valueQuantity": quantity(value, lab.unit, lab.ucum),
                                   "interpretation": [concept(Code(INTERPRETATION, flag, INTERPRETATIONS[flag]))],
                                   "referenceRange": [ref_range],
                               })
            amended = amended or chart.resources[-1]["status"] == "amended"
            result_ids.append(oid)
        chart.add("DiagnosticReport", "us-core-diagnosticreport-lab", {
            "status": "amended" if amended else "final",
            "category": [concept(Code(DIAG_SERVICE, "LAB", "Laboratory"))],
            "code": _loinc(panel.loinc, panel.display),
            "subject": chart.subject,
            "encounter": urn(visit.id),
            "effectiveDateTime": fhir_datetime(collected),
            "issued": fhir_datetime(issued),
            "performer": [chart.practice.org_ref("lab")],
            "result": [urn(oid) for oid in result_ids],
        })

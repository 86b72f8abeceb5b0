"""Care coordination: CareTeam, Goals and a CarePlan for chronic patients, and a future Appointment.

These give the console and SMART apps something forward-looking to show (what is planned, who is
on the team, when the patient is next due) and exercise references between resources that are
not encounters. The Appointment is the only resource dated after the anchor.
"""

from __future__ import annotations

import html
from datetime import datetime, time, timedelta

from .chart import Chart, plain
from .datatypes import JSON, concept, fhir_datetime, quantity, urn, xhtml
from .vocab import (
    APPOINTMENT_TYPE,
    ATTENDER,
    CAREPLAN_CATEGORY,
    CHRONIC,
    GOAL_ACHIEVEMENT,
    LOINC,
    PATIENT_ROLE,
    Code,
)

# Conditions that get a managed care plan, with the goal written for each.
# value: (goal text, [(LOINC, display, comparator value, unit, UCUM)], plan activities)
MANAGED: dict[str, tuple[str, list[tuple[str, str, float, str, str]], tuple[str, ...]]] = {
    "diabetes": ("Hemoglobin A1c below 7.0%",
                 [("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", 7.0, "%", "%")],
                 ("Check blood glucose each morning and bring the log to visits",
                  "Dilated eye exam once a year", "Diabetes self-management education classes")),
    "hypertension": ("Blood pressure below 130/80 mmHg",
                     [("8480-6", "Systolic blood pressure", 130, "mmHg", "mm[Hg]"),
                      ("8462-4", "Diastolic blood pressure", 80, "mmHg", "mm[Hg]")],
                     ("Measure blood pressure at home twice a week", "Keep sodium under 2 g a day")),
    "asthma": ("Rescue inhaler needed on two or fewer days a week", [],
               ("Follow the written asthma action plan", "Review inhaler technique at every visit")),
    "cad": ("No chest pain needing emergency care", [],
            ("Walk 30 minutes on five days a week", "Take clopidogrel daily; do not stop it without cardiology")),
}


def add_care_plan(chart: Chart) -> None:
    """A CareTeam, one Goal per managed condition and a CarePlan tying them together."""
    rng, person, practice = chart.rng, chart.person, chart.practice
    managed = [k for k in MANAGED if k in person.conditions]
    if not managed:
        return
    first = chart.visits[0]
    start = first.start.date()
    members = [person.pcp]
    if "diabetes" in managed:
        members += practice.of_kind("endocrinology")
    if "cad" in managed:
        members += practice.of_kind("cardiology")
    members += practice.of_kind("nurse")
    participants = [{"role": [concept(m.specialty)], "member": m.ref()} for m in members]
    participants.append({"role": [concept(PATIENT_ROLE)], "member": chart.subject})
    team_id = chart.add("CareTeam", "us-core-careteam", {
        "status": "active",
        "category": [concept(Code(LOINC, "LA28865-6", "Longitudinal care-coordination focused care team"))],
        "name": f"Care team for {person.display}",
        "subject": chart.subject,
        "period": {"start": start.isoformat()},
        "participant": participants,
        "managingOrganization": [practice.org_ref("clinic")],
    })
    goal_ids: list[str] = []
    activities: list[str] = []
    for key in managed:
        text, measures, steps = MANAGED[key]
        target: list[JSON] = [
            {"measure": concept(Code(LOINC, loinc, display)),
             "detailQuantity": quantity(value, unit, ucum) | {"comparator": "<"},
             "dueDate": (start + timedelta(days=180)).isoformat()}
            for loinc, display, value, unit, ucum in measures
        ] or [{"dueDate": (start + timedelta(days=365)).isoformat()}]
        achievement = rng.choice((("in-progress", "In Progress"), ("improving", "Improving")))
        goal_ids.append(chart.add("Goal", "us-core-goal", {
            "lifecycleStatus": "active",
            "achievementStatus": concept(Code(GOAL_ACHIEVEMENT, *achievement)),
            "description": {"text": text},
            "subject": chart.subject,
            "startDate": start.isoformat(),
            "target": target,
            "expressedBy": person.pcp.ref(),
            "addresses": [urn(chart.condition_ids[key])],
        }))
        activities.extend(steps)
    names = ", ".join(plain(CHRONIC[k].snomed_display).lower() for k in managed)
    narrative = [f"<b>Care plan for {html.escape(person.display)}</b>: {html.escape(names)}."]
    narrative += [html.escape(step) for step in activities]
    chart.add("CarePlan", "us-core-careplan", {
        "text": xhtml(*narrative),
        "status": "active",
        "intent": "plan",
        "category": [concept(Code(CAREPLAN_CATEGORY, "assess-plan", "Assessment and Plan of Treatment"))],
        "title": "Chronic condition management plan",
        "description": f"Plan of care for {names}.",
        "subject": chart.subject,
        "period": {"start": start.isoformat()},
        "created": fhir_datetime(first.end),
        "author": person.pcp.ref(),
        "careTeam": [urn(team_id)],
        "addresses": [urn(chart.condition_ids[k]) for k in managed],
        "goal": [urn(g) for g in goal_ids],
        "activity": [{"detail": {"status": "in-progress", "description": step}} for step in activities],
    })


def add_appointment(chart: Chart) -> None:
    """A booked visit 3-60 days after the anchor: a follow-up if there is something to follow."""
    rng, person = chart.rng, chart.person
    if rng.random() > (0.8 if person.conditions else 0.35):
        return
    day = chart.anchor + timedelta(days=rng.randint(3, 60))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    start = datetime.combine(day, time(8)) + timedelta(minutes=20 * rng.randrange(24))
    minutes = rng.choice((20, 30, 40))
    focus = rng.choice(sorted(person.conditions)) if person.conditions else None
    kind = ("FOLLOWUP", "A follow up visit from a previous appointment") if focus else (
        "CHECKUP", "A routine check-up, such as an annual physical")
    body: JSON = {
        "status": "booked",
        "appointmentType": concept(Code(APPOINTMENT_TYPE, *kind)),
        "specialty": [concept(person.pcp.specialty)],
    }
    if focus:
        body["reasonReference"] = [urn(chart.condition_ids[focus])]
    body.update({
        "description": f"{plain(CHRONIC[focus].snomed_display)} follow-up" if focus else "Annual check-up",
        "start": fhir_datetime(start),
        "end": fhir_datetime(start + timedelta(minutes=minutes)),
        "minutesDuration": minutes,
        "created": fhir_datetime(datetime.combine(chart.anchor - timedelta(days=rng.randint(1, 30)), time(10, 15))),
        "patientInstruction": "Please arrive 15 minutes early and bring a list of your medicines.",
        "participant": [
            {"actor": chart.subject, "required": "required", "status": "accepted"},
            {"type": [concept(ATTENDER)], "actor": person.pcp.ref(), "required": "required", "status": "accepted"},
            {"actor": chart.practice.location_ref(person.pcp.location), "required": "required",
             "status": "accepted"},
        ],
    })
    chart.add("Appointment", None, body)

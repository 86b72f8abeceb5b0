"""The access policy: token context → Access (compartment, interactions, v2 filters)."""

from __future__ import annotations

import pytest

from ehrgate.fhir.errors import Forbidden
from ehrgate.smart.policy import TokenContext, access_for

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
SOC = "http://terminology.hl7.org/CodeSystem/observation-category|social-history"


def test_patient_scopes_confine_to_the_patient() -> None:
    access = access_for(TokenContext("app", "launch/patient patient/Observation.read patient/Patient.rs", patient="p1", role="clinician"))
    assert access.patient == "p1"
    assert access.allowed("r", "Observation") and access.allowed("s", "Observation")
    assert not access.allowed("c", "Observation")
    assert not access.allowed("r", "Condition")
    with pytest.raises(Forbidden, match="patient/Condition.r"):
        access.require("read", "Condition")


def test_patient_scopes_without_a_patient_grant_nothing() -> None:
    access = access_for(TokenContext("app", "patient/*.rs", patient=None, role="clinician"))
    assert not access.allowed("r", "Observation")


def test_user_scopes_follow_the_user() -> None:
    clinician = access_for(TokenContext("app", "user/*.cruds", role="clinician", fhir_user="http://x/fhir/Practitioner/d1"))
    assert clinician.patient is None and clinician.allowed("d", "Observation")
    assert clinician.subject == "http://x/fhir/Practitioner/d1"
    patient = access_for(TokenContext("app", "user/*.rs", role="patient", fhir_user="http://x/fhir/Patient/p9"))
    assert patient.patient == "p9"
    orphan = access_for(TokenContext("app", "user/*.rs", role="patient", fhir_user=""))
    assert orphan.patient == "-"


def test_system_scopes_only_for_backend_clients() -> None:
    backend = access_for(TokenContext("svc", "system/Observation.rs"))
    assert backend.allowed("s", "Observation") and backend.patient is None and backend.client_id == "svc"
    assert backend.subject == "svc"
    with_user = access_for(TokenContext("svc", "system/Observation.rs", role="clinician"))
    assert not with_user.allowed("s", "Observation")


def test_v2_query_scopes_become_filters() -> None:
    access = access_for(TokenContext("app", f"patient/Observation.rs?category={LAB} patient/Observation.rs?category={SOC} patient/Condition.rs", patient="p1", role="patient"))
    assert access.filters == {"Observation": (f"category={LAB}", f"category={SOC}")}
    assert access.allowed("s", "Observation") and access.allowed("s", "Condition")
    widened = access_for(TokenContext("app", f"patient/Observation.rs?category={LAB} patient/Observation.read", patient="p1"))
    assert widened.filters == {}

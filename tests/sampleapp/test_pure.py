"""The sample app's pure parts: scope → section access, errors → clinician sentences, FHIR → rows."""

from __future__ import annotations

from datetime import date

import pytest

from ehrgate.client import AuthorizationError, StateMismatch, TokenRequestError, TransportError
from ehrgate.sampleapp import explain, section_access
from ehrgate.sampleapp.explain import MESSAGES
from ehrgate.sampleapp.summary import conditions, demographics, labs

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


@pytest.mark.parametrize(("granted", "status"), [
    ("patient/Observation.rs", "full"),
    ("patient/Observation.read", "full"),
    ("patient/*.read", "full"),
    ("user/Observation.rs", "full"),
    (f"patient/Observation.rs?category={LAB}", "full"),
    ("patient/Observation.rs?category=laboratory", "full"),
    ("patient/Observation.r", "none"),  # read by id, no search
    ("patient/Observation.write", "none"),
    ("patient/Condition.rs", "none"),
    ("patient/Observation.rs?category=social-history", "none"),
    ("", "none"),
])
def test_lab_section_access(granted: str, status: str) -> None:
    assert section_access(granted, "Observation", "laboratory results", category="laboratory").status == status


def test_partial_and_reasons() -> None:
    partial = section_access("patient/Condition.rs?category=x|health-concern", "Condition", "conditions")
    assert partial.status == "partial" and "Only health concern conditions" in partial.reason
    none = section_access("openid", "Condition", "conditions")
    assert not none.allowed and "patient/Condition.rs" in none.reason and "consent page" in none.reason
    assert section_access("patient/Patient.r", "Patient", "demographics", need="r").allowed


def test_every_oauth_error_code_has_clinician_text() -> None:
    for code in ("access_denied", "invalid_scope", "invalid_request", "unauthorized_client", "invalid_client",
                 "invalid_grant", "unsupported_response_type", "unsupported_grant_type", "server_error",
                 "temporarily_unavailable"):  # RFC 6749 §4.1.2.1 and §5.2
        title, advice = MESSAGES[code]
        assert title and advice.endswith(".") and "_" not in title
    assert explain(AuthorizationError("access_denied", "The user denied access.")).title == "The app was not given access"
    assert explain(StateMismatch()).code == "state_mismatch"
    assert explain(TokenRequestError(400, "invalid_grant", "expired")).advice.startswith("A sign-in can be used only once")
    assert explain(TransportError("Cannot reach x")).title == "The app cannot reach the EHR"
    assert explain(AuthorizationError("invalid_request", "The launch came from a, not the configured server b.")).code == "wrong_ehr"
    unknown = explain("made_up_code", "detail")
    assert unknown.code == "made_up_code" and "Start the app again" in unknown.advice and "Sign in with EHRGate" in unknown.advice


def test_rows_from_fhir() -> None:
    p = demographics({"resourceType": "Patient", "id": "p1", "birthDate": "1980-02-03", "gender": "female",
                      "name": [{"use": "official", "given": ["Ada", "B"], "family": "Nunez"}],
                      "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "M1"}],
                      "address": [{"line": ["1 Main St"], "city": "Springfield"}],
                      "telecom": [{"system": "phone", "value": "555"}]}, today=date(2024, 2, 2))
    assert p == {"id": "p1", "name": "Ada B Nunez", "birthDate": "1980-02-03", "age": "43 y", "gender": "female",
                 "mrn": "M1", "address": "1 Main St, Springfield", "phone": "555"}
    assert demographics({"id": "x"})["name"] == "Patient x"
    bundle = {"entry": [
        {"resource": {"resourceType": "Condition", "code": {"coding": [{"display": "Asthma"}]}, "onsetDateTime": "2001-01-01"}},
        {"resource": {"resourceType": "Condition", "code": {"text": "Diabetes"}, "onsetDateTime": "2010-05-05T10:00:00Z",
                      "clinicalStatus": {"coding": [{"code": "active"}]}}},
        {"resource": {"resourceType": "OperationOutcome"}},
    ]}
    assert [(c["name"], c["onset"], c["status"]) for c in conditions(bundle)] == [
        ("Diabetes", "2010-05-05", "active"), ("Asthma", "2001-01-01", "")]
    obs = {"entry": [{"resource": {"resourceType": "Observation", "code": {"text": "Hb"}, "effectiveDateTime": "2024-01-01",
                                   "valueQuantity": {"value": 13.5, "unit": "g/dL"},
                                   "interpretation": [{"coding": [{"display": "Low"}]}]}},
                     {"resource": {"resourceType": "Observation", "code": {"text": "BP"},
                                   "component": [{"code": {"text": "sys"}, "valueQuantity": {"value": 120}}]}}]}
    assert labs(obs) == [{"name": "Hb", "value": "13.5 g/dL", "flag": "Low", "date": "2024-01-01"},
                         {"name": "BP", "value": "sys: 120", "flag": "", "date": ""}]

"""``fhirContext`` (SMART App Launch 2.2 §fhirContext): a clinician launches an app *for* a report,
order or prescription from the chart; the token response carries it as an array of objects with
``reference`` and ``type`` beside ``patient``/``encounter``, and refreshes keep it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from .conftest import (
    World,
    authorize_params,
    consent,
    csrf_of,
    exchange,
    follow_to_consent,
    remember,
    sign_in,
)


def _report(store: Any, patient: str, text: str = "CBC panel") -> str:
    body = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": text},
            "subject": {"reference": f"Patient/{patient}"}}
    return str(store.create("DiagnosticReport", body).stored.res_id)


def _launch(world: World, **form: Any) -> Any:
    sign_in(world.client, "doctor", next_="/ehr")
    chart = world.client.get(f"/ehr/patient/{world.patient}")
    return chart, world.client.post("/ehr/launch", data={"csrf": csrf_of(chart.text), "client_id": "public-app",
                                                         "patient": world.patient, **form})


def _tokens(world: World, launch_location: str, scope: str = "launch openid fhirUser offline_access patient/*.rs") -> Any:
    handle = parse_qs(urlsplit(launch_location).query)["launch"][0]
    remember(handle)
    auth, verifier = authorize_params(scope=scope, launch=handle)
    page = follow_to_consent(world.client, world.client.get("/auth/authorize", params=auth), user="doctor")
    location = consent(world.client, page).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    remember(code)
    response = exchange(world.client, code, verifier)
    assert response.status_code == 200, response.text
    return response.json()


def test_launch_for_a_report_carries_fhir_context(world: World, store: Any) -> None:
    report = _report(store, world.patient)
    chart, launched = _launch(world, context=f"DiagnosticReport/{report}", encounter=world.encounter)
    assert f'value="DiagnosticReport/{report}"' in chart.text and "Report: CBC panel" in chart.text
    assert launched.status_code == 303
    body = _tokens(world, launched.headers["location"])
    assert body["patient"] == world.patient and body["encounter"] == world.encounter
    assert body["fhirContext"] == [{"reference": f"DiagnosticReport/{report}", "type": "DiagnosticReport"}]
    item = body["fhirContext"][0]
    read = world.client.get(f"/fhir/{item['reference']}", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert read.status_code == 200 and read.json()["code"]["text"] == "CBC panel"
    refreshed = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                                       "client_id": "public-app"})
    assert refreshed.status_code == 200
    remember(refreshed.json()["access_token"], refreshed.json().get("refresh_token"))
    assert refreshed.json()["fhirContext"] == body["fhirContext"]


def test_no_context_chosen_means_no_fhir_context(world: World) -> None:
    _chart, launched = _launch(world, context="")
    body = _tokens(world, launched.headers["location"])
    assert "fhirContext" not in body and body["patient"] == world.patient


def test_context_from_another_patient_is_refused(world: World, store: Any) -> None:
    foreign = _report(store, world.other_patient)
    _chart, launched = _launch(world, context=f"DiagnosticReport/{foreign}")
    assert launched.status_code == 400 and "cannot be opened with the app" in launched.text
    _chart, launched = _launch(world, context=f"Patient/{world.patient}")  # Patient travels as `patient`, never here
    assert launched.status_code == 400


def test_standalone_launch_has_no_fhir_context(world: World) -> None:
    from .conftest import standalone_tokens

    assert "fhirContext" not in standalone_tokens(world, user="ada")

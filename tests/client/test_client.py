"""ehrgate.client against a live EHRGate over real HTTP: discovery, standalone and EHR launch,
refresh, backend services, typed errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import ehrgate.client as client_pkg
from ehrgate.client import (
    AuthorizationError,
    DiscoveryError,
    SmartClient,
    StateMismatch,
    TokenRequestError,
    TransportError,
)

from .conftest import Browser, remember

CALLBACK = "http://127.0.0.1:9999/callback"


def test_public_surface_is_pinned() -> None:
    assert client_pkg.__all__ == sorted(client_pkg.__all__)
    assert set(client_pkg.__all__) == {
        "AuthorizationError", "AuthorizationRequest", "DiscoveryError", "HttpResponse", "SmartClient", "SmartClientError",
        "SmartConfiguration", "StateMismatch", "TokenRequestError", "TokenSet", "Transport", "TransportError",
        "UrllibTransport", "pkce_pair"}


def test_standalone_launch_and_refresh(live_server: str, seeded: dict[str, Any], browser: Browser) -> None:
    app = SmartClient(live_server, "public-app", redirect_uri=CALLBACK)
    config = app.discover()
    assert "launch-standalone" in config.capabilities
    request = app.authorization_request("launch/patient openid fhirUser offline_access patient/*.rs", nonce="n1")
    callback = browser.authorize(request.url, user="ada")
    tokens = app.complete(request, callback)
    remember(tokens.access_token, tokens.refresh_token, tokens.id_token)
    assert tokens.patient == seeded["patient"] and "access_token" not in repr(tokens) and tokens.access_token not in repr(tokens)
    patient = app.get(f"Patient/{tokens.patient}", tokens)
    assert patient.status == 200 and patient.json()["id"] == seeded["patient"]
    fresh = app.refresh(tokens, scope="patient/Patient.rs")
    remember(fresh.access_token, fresh.refresh_token)
    assert fresh.scope == "patient/Patient.rs" and fresh.patient == seeded["patient"]
    assert app.get(f"Observation?patient={tokens.patient}", fresh).status == 403
    with pytest.raises(TokenRequestError) as err:
        app.refresh(tokens)  # rotated: the old refresh token is dead (and the grant with it)
    assert err.value.error == "invalid_grant" and err.value.status == 400


def test_ehr_launch(live_server: str, seeded: dict[str, Any], browser: Browser) -> None:
    launch_url = browser.ehr_launch(seeded["patient"])
    app = SmartClient(live_server, "public-app", redirect_uri=CALLBACK)
    request = app.ehr_launch(launch_url, "openid fhirUser patient/*.rs")
    assert "launch=" in request.url and "scope=launch+" in request.url
    tokens = app.complete(request, browser.authorize(request.url, user="doctor"))
    remember(tokens.access_token, tokens.id_token)
    assert tokens.patient == seeded["patient"] and tokens.raw["need_patient_banner"] is True
    with pytest.raises(AuthorizationError):
        app.ehr_launch("http://127.0.0.1:9999/launch?iss=http://evil.example/fhir&launch=x", "openid")


def test_backend_services(live_server: str, seeded: dict[str, Any]) -> None:
    for alg in ("RS384", "ES384"):
        svc = SmartClient(live_server, "backend", private_key=seeded["keys"][alg])
        assert svc.assertion_alg == alg
        tokens = svc.backend_token("system/Observation.rs")
        remember(tokens.access_token)
        assert svc.get("Observation", tokens).json()["total"] >= 4


def test_typed_errors(live_server: str, seeded: dict[str, Any], browser: Browser) -> None:
    app = SmartClient(live_server, "public-app", redirect_uri=CALLBACK)
    request = app.authorization_request("launch/patient patient/*.rs")
    denied = browser.authorize(request.url, user="ada", decision="deny")
    with pytest.raises(AuthorizationError) as err:
        app.complete(request, denied)
    assert err.value.error == "access_denied"
    with pytest.raises(StateMismatch):
        app.complete(request, CALLBACK + "?code=x&state=forged")
    with pytest.raises(TokenRequestError) as terr:
        SmartClient(live_server, "nobody", redirect_uri=CALLBACK).complete(request, CALLBACK + f"?code=x&state={request.state}")
    assert terr.value.status == 401 and terr.value.error == "invalid_client"
    with pytest.raises(DiscoveryError):
        SmartClient(live_server + "/nothing-here", "x").discover()
    with pytest.raises(TransportError):
        SmartClient("http://127.0.0.1:9", "x").discover()


def test_callback_query_parsing() -> None:
    assert parse_qs(urlsplit(CALLBACK + "?a=1").query) == {"a": ["1"]}


def test_fhir_context_of_a_token_set() -> None:
    from ehrgate.client import TokenSet

    tokens = TokenSet.from_json({"access_token": "a", "fhirContext": ["Observation/1", {"reference": "DiagnosticReport/2",
                                                                                        "type": "DiagnosticReport"}]})
    assert tokens.fhir_context == [{"reference": "Observation/1"}, {"reference": "DiagnosticReport/2", "type": "DiagnosticReport"}]
    assert TokenSet.from_json({"access_token": "a"}).fhir_context == []

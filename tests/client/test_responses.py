"""``SmartClient`` against token and discovery responses that other servers send and EHRGate does not:
a scripted ``Transport`` plays the server (the client's one I/O interface; no network needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ehrgate.client import DiscoveryError, HttpResponse, SmartClient, TokenRequestError, TokenSet

BASE = "https://ehr.example/fhir"
CONFIG = {"authorization_endpoint": "https://ehr.example/authorize", "token_endpoint": "https://ehr.example/token",
          "code_challenge_methods_supported": ["S256"]}


class Scripted:
    """Answers each URL with the next of its scripted (status, body) pairs; records the requests."""

    def __init__(self, answers: dict[str, list[tuple[int, Any]]]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, str, bytes | None]] = []

    def request(self, method: str, url: str, *, headers: dict[str, str], body: bytes | None = None) -> HttpResponse:
        self.sent.append((method, url, body))
        status, payload = self.answers[url].pop(0)
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return HttpResponse(status, raw, {"content-type": "application/json"})


def client(token_answers: list[tuple[int, Any]], config: Any = CONFIG) -> SmartClient:
    transport = Scripted({f"{BASE}/.well-known/smart-configuration": [(200, config)],
                          "https://ehr.example/token": token_answers})
    return SmartClient(BASE, "app", redirect_uri="https://app.example/cb", client_secret="s", transport=transport)


def test_refresh_keeps_the_scope_when_the_response_omits_it() -> None:
    """RFC 6749 §5.1: ``scope`` may be left out when it is the scope asked for; after a refresh
    (§6) that is the original grant's scope, or the narrower one the refresh asked for."""
    old = TokenSet("a1", "Bearer", 300, "launch/patient patient/*.rs offline_access", "r1", patient="p1")
    app = client([(200, {"access_token": "a2", "token_type": "Bearer", "expires_in": 300}),
                  (200, {"access_token": "a3", "token_type": "Bearer", "expires_in": 300})])
    fresh = app.refresh(old)
    assert fresh.access_token == "a2" and fresh.refresh_token == "r1" and fresh.patient == "p1"
    assert fresh.scopes == old.scopes
    assert app.refresh(old, scope="patient/Observation.rs").scopes == {"patient/Observation.rs"}


def test_a_backend_token_without_scope_has_the_scope_asked_for() -> None:
    from joserfc.jwk import ECKey

    app = client([(200, {"access_token": "a", "token_type": "Bearer", "expires_in": 300})])
    app.private_key, app.assertion_alg = ECKey.generate_key("P-384", auto_kid=True), "ES384"
    assert app.backend_token("system/*.rs").scopes == {"system/*.rs"}


@pytest.mark.parametrize("answer", [
    (200, {"access_token": "a", "expires_in": "soon"}),
    (200, {"access_token": {"not": "a string"}}),
    (200, ["access_token"]),
    (400, ["invalid_grant"]),
    (502, b"<html>Bad Gateway</html>"),
])
def test_odd_token_responses_are_token_request_errors(answer: tuple[int, Any]) -> None:
    old = TokenSet("a1", "Bearer", 300, "patient/*.rs", "r1")
    with pytest.raises(TokenRequestError) as err:
        client([answer]).refresh(old)
    assert err.value.status == answer[0]


@pytest.mark.parametrize("config", [["not", "an", "object"], "text", {**CONFIG, "token_endpoint": 5}])
def test_a_discovery_document_that_is_not_an_object_is_a_discovery_error(config: Any) -> None:
    with pytest.raises(DiscoveryError):
        client([], config).discover()

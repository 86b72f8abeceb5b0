"""SMART tests: a real app (create_app) on a real store with the API closed (auth_required=true),
seeded with a patient, a practitioner, users and one app of each client type; helpers that walk the
browser side of a launch; and the log watch: every test's logs (all loggers, DEBUG) are searched for
every token, code, secret and password the test saw (issue 3: none may reach a log line)."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.testclient import TestClient

from ehrgate.app import MIGRATION_DIRS
from ehrgate.smart import MIGRATIONS

if MIGRATIONS not in MIGRATION_DIRS:
    MIGRATION_DIRS.append(MIGRATIONS)

FHIR = "http://testserver/fhir"
TOKEN_URL = "http://testserver/auth/token"
CALLBACK = "http://127.0.0.1:9999/callback"
PASSWORD = "correct-horse-battery"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
SOCIAL = "http://terminology.hl7.org/CodeSystem/observation-category|social-history"
ENC_DX = "http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis"
HEALTH_CONCERN = "http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern"

# -- the log watch --------------------------------------------------------------------------------

SECRETS: list[str] = []
"""Values issued during the current test; the log watch searches every log record for each."""


def remember(*values: Any) -> None:
    for value in values:
        if isinstance(value, str) and len(value) >= 8:
            SECRETS.append(value)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in ("httpx", "httpcore", "urllib3", "fhirclient"):  # the test's own clients
            return
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id, with light parameters so the suite does not spend seconds per sign-in."""
    from argon2 import PasswordHasher

    from ehrgate.smart import hashing

    monkeypatch.setattr(hashing, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(autouse=True)
def log_watch() -> Iterator[None]:
    SECRETS.clear()
    remember(PASSWORD)
    handler = _Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    leaks = [(value[:12] + "…", line[:200]) for value in SECRETS for line in handler.lines if value in line]
    assert not leaks, f"issued secrets reached log lines: {leaks}"


# -- world ---------------------------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    app: Any
    patient: str
    other_patient: str
    practitioner: str
    encounter: str
    keys: dict[str, Any] = field(default_factory=dict)
    secret: str = ""


def _resource(store: Any, res_type: str, body: dict[str, Any]) -> str:
    return store.create(res_type, {"resourceType": res_type, **body}).stored.res_id


def seed_clinical(store: Any) -> dict[str, str]:
    p1 = _resource(store, "Patient", {"name": [{"family": "Nunez", "given": ["Ada"]}], "birthDate": "1980-02-03", "gender": "female"})
    p2 = _resource(store, "Patient", {"name": [{"family": "Okafor", "given": ["Ben"]}], "birthDate": "1975-06-07", "gender": "male"})
    pr = _resource(store, "Practitioner", {"name": [{"family": "House", "given": ["Greg"]}]})
    enc = _resource(store, "Encounter", {"status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                          "subject": {"reference": f"Patient/{p1}"}, "period": {"start": "2024-01-02"}})
    for pid in (p1, p2):
        for cat in (LAB, SOCIAL):
            system, code = cat.split("|")
            _resource(store, "Observation", {"status": "final", "code": {"text": code},
                                             "category": [{"coding": [{"system": system, "code": code}]}],
                                             "subject": {"reference": f"Patient/{pid}"}})
        for cat in (ENC_DX, HEALTH_CONCERN):
            system, code = cat.split("|")
            _resource(store, "Condition", {"code": {"text": code}, "category": [{"coding": [{"system": system, "code": code}]}],
                                           "subject": {"reference": f"Patient/{pid}"}})
    return {"patient": p1, "other_patient": p2, "practitioner": pr, "encounter": enc}


def seed_people_and_apps(store: Any, ids: dict[str, str]) -> dict[str, Any]:
    from ehrgate.smart import apps as A
    from ehrgate.smart import users as U

    rsa = RSAKey.generate_key(2048, auto_kid=True)
    ec = ECKey.generate_key("P-384", auto_kid=True)
    now = int(time.time())
    with store.writer() as w:
        U.add_user(w.conn, username="doctor", password=PASSWORD, role="clinician", fhir_user=f"Practitioner/{ids['practitioner']}",
                   display_name="Dr Greg House", now=now)
        U.add_user(w.conn, username="ada", password=PASSWORD, role="patient", fhir_user=f"Patient/{ids['patient']}",
                   display_name="Ada Nunez", now=now)
        U.add_user(w.conn, username="admin", password=PASSWORD, role="admin", now=now)
        A.add_app(w.conn, A.App("public-app", "Public App", "public", (CALLBACK,), launch_url="http://127.0.0.1:9999/launch",
                                description="A test app"), now=now)
        _app, secret = A.add_app(w.conn, A.App("conf-app", "Confidential App", "confidential-symmetric", (CALLBACK,),
                                               launch_url="http://127.0.0.1:9999/launch?x=1"), now=now)
        A.add_app(w.conn, A.App("narrow-app", "Narrow App", "public", (CALLBACK,), scopes="openid fhirUser launch/patient patient/Observation.rs"), now=now)
        jwks = {"keys": [rsa.as_dict(private=False), ec.as_dict(private=False)]}
        A.add_app(w.conn, A.App("backend", "Backend Service", "confidential-asymmetric", jwks=jwks,
                                scopes="system/*.rs system/Observation.cruds"), now=now)
    remember(secret)
    return {"secret": secret, "keys": {"RS384": rsa, "ES384": ec}}


@pytest.fixture
def smart_settings(settings: Any) -> Any:
    return settings.replace(auth_required=True)


@pytest.fixture
def world(store: Any, smart_settings: Any) -> Iterator[World]:
    from ehrgate.app import create_app

    ids = seed_clinical(store)
    extra = seed_people_and_apps(store, ids)
    app = create_app(smart_settings, store)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield World(c, app, ids["patient"], ids["other_patient"], ids["practitioner"], ids["encounter"],
                    keys=extra["keys"], secret=extra["secret"])


# -- browser and app helpers -------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def req_of(url_or_html: str) -> str:
    m = re.search(r"req=([A-Za-z0-9_\-]+)", url_or_html) or re.search(r'name="req" value="([^"]+)"', url_or_html)
    assert m, url_or_html[:300]
    return m.group(1)


def sign_in(client: TestClient, username: str = "doctor", password: str = PASSWORD, req: str = "", next_: str = "") -> Any:
    page = client.get("/auth/login", params={"req": req, "next": next_})
    return client.post("/auth/login", data={"csrf": csrf_of(page.text), "username": username, "password": password,
                                            "req": req, "next": next_})


def authorize_params(client_id: str = "public-app", scope: str = "launch/patient openid fhirUser offline_access patient/*.rs",
                     **over: Any) -> tuple[dict[str, str], str]:
    verifier, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "scope": scope,
              "state": secrets.token_urlsafe(8), "aud": FHIR, "code_challenge": challenge, "code_challenge_method": "S256",
              "nonce": "nonce-123"}
    params.update({k: v for k, v in over.items() if v is not None})
    for k in [k for k, v in over.items() if v is None]:
        params.pop(k, None)
    return params, verifier


def callback_params(response: Any) -> dict[str, str]:
    assert response.status_code in (302, 303), (response.status_code, response.text[:500])
    location = response.headers["location"]
    assert location.startswith(CALLBACK), location
    values = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    remember(values.get("code"))
    return values


def follow_to_consent(client: TestClient, response: Any, *, user: str = "doctor", patient: str | None = None) -> Any:
    """From the authorize response, go through sign-in and the picker; returns the consent page."""
    for _ in range(6):
        if response.status_code == 200:
            return response
        location = response.headers.get("location", "")
        if location.startswith(CALLBACK):
            return response
        if location.startswith("/auth/login"):
            response = sign_in(client, user, req=req_of(location))
            continue
        if location.startswith("/auth/patient"):
            picker = client.get(location)
            assert picker.status_code == 200, picker.text
            response = client.post("/auth/patient", data={"csrf": csrf_of(picker.text), "req": req_of(location), "patient": patient})
            continue
        response = client.get(location)
    raise AssertionError("authorization did not reach the consent page")


def consent(client: TestClient, page: Any, *, scopes: list[str] | None = None, decision: str = "allow") -> Any:
    html = page.text
    if scopes is None:
        scopes = re.findall(r'name="scope" value="([^"]+)" checked', html)
    import html as h

    data = {"csrf": csrf_of(html), "req": req_of(html), "decision": decision, "scope": [h.unescape(s) for s in scopes]}
    return client.post("/auth/consent", data=data)


def authorize_code(world: World, *, user: str = "doctor", patient: str | None = None, scopes: list[str] | None = None,
                   **params: Any) -> tuple[dict[str, str], str, dict[str, str]]:
    """Authorize until the callback; returns (callback params, verifier, authorize params)."""
    auth, verifier = authorize_params(**params)
    first = world.client.get("/auth/authorize", params=auth)
    page = follow_to_consent(world.client, first, user=user, patient=patient or world.patient)
    if page.status_code != 200:
        return callback_params(page), verifier, auth
    return callback_params(consent(world.client, page, scopes=scopes)), verifier, auth


def exchange(client: TestClient, code: str, verifier: str, *, client_id: str = "public-app", auth: Any = None,
             **extra: str) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier}
    if auth is None:
        data["client_id"] = client_id
    data.update(extra)
    response = client.post("/auth/token", data=data, auth=auth)
    if response.status_code == 200:
        body = response.json()
        remember(body.get("access_token"), body.get("refresh_token"), body.get("id_token"))
    return response


def standalone_tokens(world: World, **params: Any) -> dict[str, Any]:
    got, verifier, _ = authorize_code(world, **params)
    assert "code" in got, got
    response = exchange(world.client, got["code"], verifier, client_id=params.get("client_id", "public-app"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_assertion(key: Any, alg: str, *, client_id: str = "backend", aud: str = TOKEN_URL, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240, "iat": now, "jti": secrets.token_hex(12)}
    claims.update(over)
    token = jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, {k: v for k, v in claims.items() if v is not None}, key,
                       algorithms=[alg])
    remember(token)
    return token


def backend_token(client: TestClient, key: Any, alg: str = "RS384", scope: str = "system/*.rs", **over: Any) -> Any:
    data = {"grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(key, alg, **over)}
    response = client.post("/auth/token", data=data)
    if response.status_code == 200:
        remember(response.json().get("access_token"))
    return response


def ehr_launch_handle(world: World, client_id: str = "public-app", encounter: str | None = None) -> str:
    """Sign in as the clinician, open the chart and press Launch; returns the launch handle."""
    sign_in(world.client, "doctor", next_="/ehr")
    chart = world.client.get(f"/ehr/patient/{world.patient}")
    assert chart.status_code == 200, chart.text
    response = world.client.post("/ehr/launch", data={"csrf": csrf_of(chart.text), "client_id": client_id,
                                                      "patient": world.patient, "encounter": encounter or ""})
    assert response.status_code == 303, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["iss"] == [FHIR]
    handle = query["launch"][0]
    remember(handle)
    return handle


__all__ = ["urlencode"]

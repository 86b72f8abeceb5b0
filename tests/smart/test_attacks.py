"""The attack cases of issue 3, each a test (plus the g10 negative checks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from ehrgate.app import create_app

from .conftest import (
    CALLBACK,
    FHIR,
    World,
    authorize_code,
    authorize_params,
    bearer,
    callback_params,
    consent,
    csrf_of,
    ehr_launch_handle,
    exchange,
    follow_to_consent,
    remember,
    sign_in,
    standalone_tokens,
)

# -- PKCE --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "blank", "wrong", "equals-challenge"])
def test_token_exchange_fails_on_bad_verifier(world: World, case: str) -> None:
    got, verifier, auth = authorize_code(world, user="ada")
    bad = {"missing": None, "blank": "", "wrong": "w" * 50, "equals-challenge": auth["code_challenge"]}[case]
    data = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": CALLBACK, "client_id": "public-app"}
    if bad is not None:
        data["code_verifier"] = bad
    r = world.client.post("/auth/token", data=data)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_grant"
    # the code is burnt: even the right verifier fails now
    assert exchange(world.client, got["code"], verifier).status_code == 400


@pytest.mark.parametrize(("over", "message"), [
    ({"code_challenge": None}, "code_challenge"),
    ({"code_challenge_method": "plain"}, "plain"),
    ({"code_challenge_method": None}, "code_challenge_method"),
])
def test_authorize_requires_s256(world: World, over: dict[str, Any], message: str) -> None:
    auth, _ = authorize_params(**over)
    got = callback_params(world.client.get("/auth/authorize", params=auth))
    assert got["error"] == "invalid_request" and message in got["error_description"] and "code" not in got
    assert got["state"] == auth["state"]


# -- codes ---------------------------------------------------------------------------------------


def test_code_replay_fails_and_revokes_the_first_tokens(world: World) -> None:
    got, verifier, _ = authorize_code(world, user="ada")
    first = exchange(world.client, got["code"], verifier).json()
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(first["access_token"])).status_code == 200
    again = exchange(world.client, got["code"], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(first["access_token"])).status_code == 401
    refresh = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refresh.status_code == 400


def test_code_expires(world: World, store: Any, smart_settings: Any) -> None:
    quick = create_app(smart_settings.replace(auth_code_lifetime=0), store)
    with TestClient(quick, follow_redirects=False) as c:
        w = World(c, quick, world.patient, world.other_patient, world.practitioner, world.encounter)
        got, verifier, _ = authorize_code(w, user="ada")
        r = exchange(c, got["code"], verifier)
        assert r.status_code == 400 and "expired" in r.json()["error_description"]


def test_bad_code_and_bad_client(world: World) -> None:
    got, verifier, _ = authorize_code(world, user="ada")
    assert exchange(world.client, "not-a-code", verifier).status_code == 400
    assert exchange(world.client, got["code"], verifier, client_id="no-such-client").status_code in (400, 401)
    stolen = exchange(world.client, got["code"], verifier, client_id="narrow-app")  # another client's code
    assert stolen.status_code == 400


def test_redirect_uri_must_match_at_token(world: World) -> None:
    got, verifier, _ = authorize_code(world, user="ada")
    r = exchange(world.client, got["code"], verifier, redirect_uri=CALLBACK + "/other")
    assert r.status_code == 400 and "redirect_uri" in r.json()["error_description"]


# -- authorize request ---------------------------------------------------------------------------


@pytest.mark.parametrize("over", [{"redirect_uri": "http://evil.example/cb"}, {"redirect_uri": CALLBACK + "/x"},
                                  {"redirect_uri": CALLBACK + "?a=1"}, {"client_id": "nobody"}])
def test_unknown_client_or_redirect_mismatch_never_redirects(world: World, over: dict[str, str]) -> None:
    auth, _ = authorize_params(**over)
    r = world.client.get("/auth/authorize", params=auth)
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html") and "<h1>" in r.text


def test_wrong_aud_issues_no_code(world: World) -> None:
    auth, _ = authorize_params(aud="http://evil.example/fhir")
    got = callback_params(world.client.get("/auth/authorize", params=auth))
    assert "code" not in got and got["error"] == "invalid_request" and "aud" in got["error_description"]


def test_missing_state_and_bad_response_type(world: World) -> None:
    got = callback_params(world.client.get("/auth/authorize", params=authorize_params(state=None)[0]))
    assert got["error"] == "invalid_request" and "state" not in got
    got = callback_params(world.client.get("/auth/authorize", params=authorize_params(response_type="token")[0]))
    assert got["error"] == "unsupported_response_type"
    # RFC 6749 §4.1.2.1: a missing required parameter is invalid_request, and the message names it
    got = callback_params(world.client.get("/auth/authorize", params=authorize_params(response_type=None)[0]))
    assert got["error"] == "invalid_request" and got["error_description"].startswith("Missing 'response_type'")


def test_unregistered_scopes_are_not_granted(world: World) -> None:
    body = standalone_tokens(world, user="ada", client_id="narrow-app",
                             scope="openid fhirUser launch/patient patient/Observation.rs patient/Condition.rs")
    assert "patient/Condition.rs" not in body["scope"].split()
    r = world.client.get(f"/fhir/Condition?patient={world.patient}", headers=bearer(body["access_token"]))
    assert r.status_code == 403
    # RFC 6750 §3.1: a token without the scope a request needs is told so in the challenge
    assert r.headers["www-authenticate"] == f'Bearer realm="{FHIR}", error="insufficient_scope"'


def test_system_scopes_are_refused_in_user_authorization(world: World) -> None:
    got = callback_params(world.client.get("/auth/authorize", params=authorize_params(scope="system/*.rs")[0]))
    assert got["error"] == "invalid_scope"


# -- launch handles --------------------------------------------------------------------------


def _launch_page(world: World, handle: str, client_id: str = "public-app") -> Any:
    auth, _ = authorize_params(client_id=client_id, scope="launch openid fhirUser patient/*.rs", launch=handle)
    return world.client.get("/auth/authorize", params=auth)


def test_launch_reused(world: World) -> None:
    handle = ehr_launch_handle(world)
    assert _launch_page(world, handle).status_code == 200  # consent page
    again = _launch_page(world, handle)
    assert again.status_code == 400 and "already been used" in again.text and "Launch the app again" in again.text


def test_launch_used_by_another_client(world: World) -> None:
    handle = ehr_launch_handle(world, client_id="public-app")
    r = _launch_page(world, handle, client_id="narrow-app")
    assert r.status_code == 400 and "another app" in r.text


def test_launch_expired(world: World, store: Any, smart_settings: Any) -> None:
    quick = create_app(smart_settings.replace(launch_lifetime=0), store)
    with TestClient(quick, follow_redirects=False) as c:
        w = World(c, quick, world.patient, world.other_patient, world.practitioner, world.encounter)
        handle = ehr_launch_handle(w)
        r = _launch_page(w, handle)
        assert r.status_code == 400 and "expired" in r.text and "patient&#39;s chart" in r.text


def test_launch_from_another_browser_session(world: World, store: Any, smart_settings: Any) -> None:
    handle = ehr_launch_handle(world)
    with TestClient(world.app, follow_redirects=False) as other:
        sign_in(other, "doctor")
        auth, _ = authorize_params(scope="launch openid fhirUser patient/*.rs", launch=handle)
        r = other.get("/auth/authorize", params=auth)
        assert r.status_code == 400 and "another sign-in session" in r.text


# -- refresh ---------------------------------------------------------------------------------


def test_scope_escalation_at_refresh(world: World) -> None:
    body = standalone_tokens(world, user="ada", scope="launch/patient openid fhirUser offline_access patient/Observation.rs")
    r = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                               "scope": "patient/Observation.rs patient/Condition.rs"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope" and "patient/Condition.rs" in r.json()["error_description"]
    r = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                               "scope": "patient/*.rs"})
    assert r.status_code == 400
    narrowed = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                                      "scope": "patient/Observation.r"})
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "patient/Observation.r"
    remember(narrowed.json()["access_token"], narrowed.json()["refresh_token"])


def test_refresh_token_reuse_after_rotation(world: World) -> None:
    body = standalone_tokens(world, user="ada")
    first = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert first.status_code == 200
    new = first.json()
    remember(new["access_token"], new["refresh_token"])
    reuse = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert reuse.status_code == 400 and "already used" in reuse.json()["error_description"]
    # theft detected: the rotated token and its access token die too
    assert world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]}).status_code == 400
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(new["access_token"])).status_code == 401


def test_refresh_by_another_client_or_garbage(world: World) -> None:
    body = standalone_tokens(world, user="ada")
    r = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                               "client_id": "narrow-app"})
    assert r.status_code == 400
    assert world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": "garbage"}).status_code == 400


def test_confidential_client_must_authenticate_to_refresh(world: World) -> None:
    got, verifier, _ = authorize_code(world, client_id="conf-app", user="ada")
    body = exchange(world.client, got["code"], verifier, client_id="conf-app", auth=("conf-app", world.secret)).json()
    r = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert r.status_code == 401
    ok = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                           auth=("conf-app", world.secret))
    assert ok.status_code == 200
    remember(ok.json()["access_token"], ok.json()["refresh_token"])


# -- access tokens at the FHIR API ----------------------------------------------------------------


def _b64(raw: bytes | dict[str, Any]) -> str:
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_forged_access_tokens(world: World) -> None:
    body = standalone_tokens(world, user="ada")
    claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    claims["scope"] = "user/*.cruds"
    url = f"/fhir/Patient/{world.other_patient}"
    none = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    assert world.client.get(url, headers=bearer(none)).status_code == 401
    pem = world.app.state.smart.keys.active.key.as_pem(private=False)
    signing_input = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(claims)
    hs = signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    assert world.client.get(url, headers=bearer(hs)).status_code == 401
    from ehrgate.smart.policy import TokenContext
    from ehrgate.smart.tokens import TokenIssuer

    keys = world.app.state.smart.keys
    other_iss, _ = TokenIssuer(keys, "http://elsewhere/fhir").access_token(TokenContext("public-app", "user/*.rs", role="clinician"), 60)
    expired, _ = TokenIssuer(keys, FHIR, clock=lambda: time.time() - 7200).access_token(TokenContext("public-app", "user/*.rs", role="clinician"), 60)
    remember(other_iss, expired)
    for token in (other_iss, expired):
        r = world.client.get(url, headers=bearer(token))
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


# -- forms and cookies --------------------------------------------------------------------------


def test_csrf_on_sign_in(world: World) -> None:
    r = world.client.post("/auth/login", data={"username": "ada", "password": "correct-horse-battery"})
    assert r.status_code == 403 and "ehrgate_session" not in r.cookies
    page = world.client.get("/auth/login")
    with TestClient(world.app, follow_redirects=False) as attacker:  # has no CSRF cookie
        r = attacker.post("/auth/login", data={"csrf": csrf_of(page.text), "username": "ada", "password": "correct-horse-battery"})
        assert r.status_code == 403


def test_csrf_on_consent(world: World) -> None:
    auth, _ = authorize_params()
    page = follow_to_consent(world.client, world.client.get("/auth/authorize", params=auth), user="ada")
    from .conftest import req_of

    r = world.client.post("/auth/consent", data={"req": req_of(page.text), "decision": "allow", "scope": "patient/*.rs",
                                                 "csrf": "forged-value-forged-value"})
    assert r.status_code == 403 and "location" not in r.headers
    # the legitimate form still works afterwards
    assert "code" in callback_params(consent(world.client, page))


def test_consent_cannot_widen_scopes(world: World) -> None:
    auth, _ = authorize_params(scope="launch/patient openid patient/Observation.rs")
    page = follow_to_consent(world.client, world.client.get("/auth/authorize", params=auth), user="ada")
    r = consent(world.client, page, scopes=["patient/*.cruds"])
    assert r.status_code == 400 and "location" not in r.headers


def test_session_cookie_flags(world: World) -> None:
    r = sign_in(world.client, "ada")
    cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("ehrgate_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    page = world.client.get("/auth/login")
    assert "x-frame-options" in page.headers


def test_cookies_are_secure_under_tls(store: Any, smart_settings: Any, world: World) -> None:
    tls = create_app(smart_settings.replace(base_url="https://testserver"), store)
    with TestClient(tls, base_url="https://testserver", follow_redirects=False) as c:
        page = c.get("/auth/login")
        csrf_cookie = page.headers["set-cookie"]
        assert "Secure" in csrf_cookie and "HttpOnly" in csrf_cookie
        r = c.post("/auth/login", data={"csrf": csrf_of(page.text), "username": "ada", "password": "correct-horse-battery"})
        cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("ehrgate_session=")][0]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_sign_out_ends_online_access_but_not_offline(world: World) -> None:
    online = standalone_tokens(world, user="ada", scope="launch/patient openid fhirUser online_access patient/*.rs")
    offline = standalone_tokens(world, user="ada", scope="launch/patient openid fhirUser offline_access patient/*.rs")
    page = world.client.get("/auth/login")
    r = world.client.post("/auth/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    url = f"/fhir/Patient/{world.patient}"
    assert world.client.get(url, headers=bearer(online["access_token"])).status_code == 401
    assert world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": online["refresh_token"]}).status_code == 400
    assert world.client.get(url, headers=bearer(offline["access_token"])).status_code == 200


# -- rate limit ----------------------------------------------------------------------------------


def _bad_code(c: TestClient, client_id: str = "public-app", auth: Any = None, **extra: str) -> Any:
    data = {"grant_type": "authorization_code", "code": "x", "redirect_uri": CALLBACK, "code_verifier": "v" * 43, **extra}
    if client_id:
        data["client_id"] = client_id
    return c.post("/auth/token", data=data, auth=auth)


def test_failed_token_requests_are_limited_per_address(store: Any, smart_settings: Any, world: World) -> None:
    """Requests that neither authenticate their client nor present a valid grant count per client
    address (token_rate_limit a minute), so a stranger cannot spend a client's own budget."""
    limited = create_app(smart_settings.replace(token_rate_limit=3), store)
    with TestClient(limited, client=("203.0.113.9", 4000)) as attacker, \
            TestClient(limited, client=("198.51.100.7", 4000)) as app_host:
        codes = [_bad_code(attacker).status_code for _ in range(4)]
        assert codes == [400, 400, 400, 429]
        r = _bad_code(attacker, "narrow-app")  # any client, from that address
        assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable"
        assert int(r.headers["retry-after"]) >= 1 and "from this address" in r.json()["error_description"]
        assert _bad_code(app_host).status_code == 400  # another address is not affected
        got, verifier, _ = authorize_code(world, user="ada")
        ok = exchange(app_host, got["code"], verifier)
        assert ok.status_code == 200, ok.text


def test_a_claimed_client_id_does_not_spend_the_clients_budget(store: Any, smart_settings: Any, world: World) -> None:
    """The denial of service: a stranger sending a confidential client's client_id (without its
    secret) used to spend that client's per-client budget. Only authenticated requests count there;
    the stranger's failures count against its address, and an authenticated client is not held back
    by its address."""
    limited = create_app(smart_settings.replace(token_rate_limit=3), store)
    with TestClient(limited, client=("203.0.113.9", 4000)) as attacker:
        tries = [_bad_code(attacker, "conf-app").status_code,
                 _bad_code(attacker, "", auth=("conf-app", "wrong-secret")).status_code,
                 _bad_code(attacker, "conf-app", client_secret="wrong").status_code]
        assert tries == [401, 401, 401]
        assert _bad_code(attacker, "", auth=("conf-app", "wrong-secret")).status_code == 429
        # the real client, even from the stranger's address: its own budget, untouched so far
        codes = [_bad_code(attacker, "", auth=("conf-app", world.secret)).status_code for _ in range(4)]
        assert codes == [400, 400, 400, 429]
        r = _bad_code(attacker, "", auth=("conf-app", world.secret))
        assert "for this client" in r.json()["error_description"] and int(r.headers["retry-after"]) >= 1


def test_a_public_clients_budget_counts_valid_grants(store: Any, smart_settings: Any, world: World) -> None:
    """A public client cannot authenticate: its budget counts the requests that presented a valid
    grant (here: codes exchanged); once spent, the next request is refused before the code is used."""
    limited = create_app(smart_settings.replace(token_rate_limit=2), store)
    with TestClient(limited, client=("198.51.100.7", 4000)) as c:
        for _ in range(2):
            got, verifier, _ = authorize_code(world, user="ada")
            assert exchange(c, got["code"], verifier).status_code == 200
        got, verifier, _ = authorize_code(world, user="ada")
        r = exchange(c, got["code"], verifier)
        assert r.status_code == 429 and "for this client" in r.json()["error_description"]
    assert exchange(world.client, got["code"], verifier).status_code == 200  # the refused request left the code unused


def test_parse_qs_helper() -> None:
    assert parse_qs(urlsplit("http://x/?a=1").query) == {"a": ["1"]}


def test_odd_access_token_header_is_a_401_not_a_500(world: World) -> None:
    """RFC 6750 §3: a token whose header names an algorithm with a quote and a non-Latin-1
    character is still just an invalid token; error_description is a quoted-string of printable
    ASCII without '"' or '\\' (it used to be copied in as it was: a 500)."""
    token = _b64({"alg": 'x"\u20ac\\', "typ": "JWT"}) + "." + _b64({"sub": "x"}) + ".c2ln"
    r = world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(token))
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="') and 'error="invalid_token"' in challenge
    description = challenge.split('error_description="', 1)[1]
    assert description.endswith('"') and all(0x20 <= ord(ch) <= 0x7E and ch not in '"\\' for ch in description[:-1])


@pytest.mark.parametrize("name", ["scope", "state", "code_challenge"])
def test_a_repeated_authorize_parameter_goes_back_to_the_app(world: World, name: str) -> None:
    """RFC 6749 §3.1 and §4.1.2.1: a repeated parameter is an invalid_request; with a good client_id
    and redirect_uri it is told to the app (with the state, unless the state is what was repeated)."""
    auth, _ = authorize_params()
    items = [*auth.items(), (name, auth[name])]
    got = callback_params(world.client.get("/auth/authorize", params=items))
    assert got["error"] == "invalid_request" and name in got["error_description"] and "code" not in got
    assert got.get("state") == (None if name == "state" else auth["state"])


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
def test_a_repeated_client_id_or_redirect_uri_never_redirects(world: World, name: str) -> None:
    auth, _ = authorize_params()
    r = world.client.get("/auth/authorize", params=[*auth.items(), (name, auth[name])])
    assert r.status_code == 400 and "location" not in r.headers and "more than once" in r.text


def test_two_client_authentication_methods_are_refused(world: World) -> None:
    """RFC 6749 §2.3: the client MUST NOT use more than one authentication method in a request; a
    client_id beside HTTP Basic must name the same client."""
    got, verifier, _ = authorize_code(world, client_id="conf-app", user="ada")
    r = exchange(world.client, got["code"], verifier, client_id="conf-app", auth=("conf-app", world.secret),
                 client_secret=world.secret)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert "one" in r.json()["error_description"]
    r = world.client.post("/auth/token", auth=("conf-app", world.secret), data={
        "grant_type": "authorization_code", "code": got["code"], "redirect_uri": CALLBACK, "code_verifier": verifier,
        "client_id": "public-app"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client" and "client_id" in r.json()["error_description"]
    assert r.headers["www-authenticate"].startswith("Basic ")  # Basic was used: RFC 6749 §5.2
    ok = exchange(world.client, got["code"], verifier, client_id="conf-app", auth=("conf-app", world.secret))
    assert ok.status_code == 200, ok.text  # the refused requests did not use the code up


def test_missing_client_id_or_redirect_uri_page_says_which(world: World, store: Any) -> None:
    """The error page names the missing parameter instead of "client_id ''" (RFC 6749 §4.1.2.1:
    the user is told, the browser is not redirected)."""
    from ehrgate.smart import apps as A

    r = world.client.get("/auth/authorize", params=authorize_params(client_id=None)[0])
    assert r.status_code == 400 and "location" not in r.headers and "did not send its client_id" in r.text
    with store.writer() as w:
        A.add_app(w.conn, A.App("two-uris", "Two URIs", "public", (CALLBACK, CALLBACK + "2")), now=0)
    r = world.client.get("/auth/authorize", params=authorize_params(client_id="two-uris", redirect_uri=None)[0])
    assert r.status_code == 400 and "location" not in r.headers and "did not send a redirect_uri" in r.text


@pytest.mark.parametrize("endpoint", ["/auth/token", "/auth/introspect", "/auth/revoke"])
def test_non_ascii_basic_credentials_are_invalid_client_not_a_500(world: World, endpoint: str) -> None:
    """RFC 6749 §5.2 / RFC 7617: a Basic header that is not base64 (here: non-ASCII) is a failed
    client authentication - 401 invalid_client with WWW-Authenticate - never a 500."""
    r = world.client.post(endpoint, data={"grant_type": "client_credentials", "token": "x"},
                          headers={"Authorization": "Basic é€".encode()})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic ")

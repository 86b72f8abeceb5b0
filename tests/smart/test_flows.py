"""Inferno-derived checks (../shared/conformance/smart.md): discovery, standalone and EHR launch,
OpenID Connect, refresh, introspection, revocation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import (
    CALLBACK,
    FHIR,
    PASSWORD,
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
    standalone_tokens,
)

# -- Discovery -------------------------------------------------------------------------------------


def test_smart_configuration(world: World) -> None:
    r = world.client.get("/fhir/.well-known/smart-configuration", headers={"Accept": "application/json", "Origin": "http://app.example"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers["access-control-allow-origin"] == "http://app.example"
    doc = r.json()
    for key in ("authorization_endpoint", "token_endpoint", "issuer", "jwks_uri", "introspection_endpoint", "revocation_endpoint"):
        assert isinstance(doc[key], str)
    assert {"authorization_code", "client_credentials", "refresh_token"} <= set(doc["grant_types_supported"])
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert set(doc["capabilities"]) >= {
        "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
        "sso-openid-connect", "context-banner", "context-style", "context-ehr-patient", "context-ehr-encounter",
        "context-standalone-patient", "permission-offline", "permission-online", "permission-patient", "permission-user",
        "permission-v1", "permission-v2", "authorize-post"}
    assert all(isinstance(c, str) for c in doc["capabilities"])


def test_metadata_is_public_and_carries_oauth_uris(world: World) -> None:
    r = world.client.get("/fhir/metadata")
    assert r.status_code == 200
    security = r.json()["rest"][0]["security"]
    ext = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert ext["authorize"] == "http://testserver/auth/authorize" and ext["token"] == "http://testserver/auth/token"


def test_openid_configuration_and_jwks(world: World) -> None:
    doc = world.client.get("/fhir/.well-known/openid-configuration").json()
    assert doc == world.client.get("/.well-known/openid-configuration").json()
    assert doc["issuer"] == FHIR and "RS256" in doc["id_token_signing_alg_values_supported"]
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported", "subject_types_supported"):
        assert doc[key]
    jwks = world.client.get(doc["jwks_uri"].replace("http://testserver", "")).json()
    assert sorted((k["kty"], k["alg"]) for k in jwks["keys"]) == [("EC", "ES256"), ("RSA", "RS256")]
    assert all(k["kid"] and k["use"] == "sig" and "d" not in k for k in jwks["keys"])


def test_preflight_on_token_endpoint(world: World) -> None:
    r = world.client.options("/auth/token", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "http://app.example"


# -- Standalone launch + OpenID Connect --------------------------------------------------------------


def test_standalone_launch_patient_user(world: World) -> None:
    got, verifier, auth = authorize_code(world, user="ada")
    assert got["state"] == auth["state"] and got["code"]
    r = exchange(world.client, got["code"], verifier)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"].lower() == "bearer" and isinstance(body["expires_in"], int)
    assert isinstance(body["scope"], str) and isinstance(body["refresh_token"], str)
    assert body["patient"] == world.patient and body["need_patient_banner"] is True
    style = world.client.get(body["smart_style_url"].replace("http://testserver", ""))
    assert style.status_code == 200 and "color_background" in style.json()
    # the id_token
    jwks = KeySet.import_key_set(world.client.get("/auth/jwks").json())
    token = jwt.decode(body["id_token"], jwks, algorithms=["RS256"])
    assert token.header["alg"] == "RS256" and token.header["kid"]
    c = token.claims
    assert c["iss"] == FHIR and c["aud"] == "public-app" and c["exp"] > time.time() and 0 < len(c["sub"]) < 256
    assert c["nonce"] == "nonce-123" and c["fhirUser"] == f"{FHIR}/Patient/{world.patient}"
    # fhirUser is readable with the access token
    me = world.client.get(c["fhirUser"].replace("http://testserver", ""), headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["resourceType"] == "Patient"


def test_standalone_launch_clinician_picks_patient(world: World) -> None:
    body = standalone_tokens(world, user="doctor", patient=world.other_patient)
    assert body["patient"] == world.other_patient
    r = world.client.get(f"/fhir/Patient/{world.other_patient}", headers=bearer(body["access_token"]))
    assert r.status_code == 200


def test_authorize_post(world: World) -> None:
    auth, verifier = authorize_params()
    first = world.client.post("/auth/authorize", data=auth)
    page = follow_to_consent(world.client, first, user="ada")

    got = callback_params(consent(world.client, page))
    assert exchange(world.client, got["code"], verifier).status_code == 200


def test_confidential_symmetric_basic_and_body(world: World) -> None:
    got, verifier, _ = authorize_code(world, client_id="conf-app", user="ada")
    r = exchange(world.client, got["code"], verifier, client_id="conf-app", auth=("conf-app", world.secret))
    assert r.status_code == 200, r.text
    got, verifier, _ = authorize_code(world, client_id="conf-app", user="ada")
    r = exchange(world.client, got["code"], verifier, client_id="conf-app", client_secret=world.secret)
    assert r.status_code == 200, r.text
    got, verifier, _ = authorize_code(world, client_id="conf-app", user="ada")
    r = exchange(world.client, got["code"], verifier, client_id="conf-app")  # no secret
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = exchange(world.client, got["code"], verifier, client_id="conf-app", auth=("conf-app", "wrong-secret"))
    assert r.status_code == 401 and "www-authenticate" in r.headers


# -- EHR launch ---------------------------------------------------------------------------------


def test_ehr_launch(world: World) -> None:
    handle = ehr_launch_handle(world, encounter=world.encounter)
    got, verifier, _ = authorize_code(world, scope="launch openid fhirUser offline_access patient/*.rs", launch=handle)
    body = exchange(world.client, got["code"], verifier).json()
    assert body["patient"] == world.patient and body["encounter"] == world.encounter
    # the chart opens the app in a tab of its own (no chart banner beside it): the app shows one
    assert body["need_patient_banner"] is True and body["smart_style_url"].endswith("/auth/style.json")
    assert world.client.get(f"/fhir/Encounter/{world.encounter}", headers=bearer(body["access_token"])).status_code == 200


def test_chart_lists_launchable_apps(world: World) -> None:
    from .conftest import sign_in

    assert world.client.get("/ehr").status_code == 303  # sign in first
    sign_in(world.client, "doctor")
    home = world.client.get("/ehr")
    assert home.status_code == 200 and "Nunez" in home.text
    chart = world.client.get(f"/ehr/patient/{world.patient}")
    assert "Public App" in chart.text and 'target="_blank"' in chart.text and "Ada Nunez" in chart.text
    assert "Narrow App" not in chart.text  # no launch_url
    r = world.client.post("/ehr/launch", data={"csrf": csrf_of(chart.text), "client_id": "conf-app", "patient": world.patient})
    assert r.headers["location"].startswith("http://127.0.0.1:9999/launch?x=1&iss=")


def test_patient_search_takes_a_full_name_in_either_order(world: World) -> None:
    from .conftest import sign_in

    sign_in(world.client, "doctor")
    for typed in ("Ada Nunez", "Nunez, Ada", "nunez ada", "Ada"):
        page = world.client.get("/ehr", params={"q": typed})
        assert "Ada Nunez" in page.text and "Okafor" not in page.text, typed
    assert "Ada Nunez" not in world.client.get("/ehr", params={"q": "Ben Nunez"}).text  # every word must match


def test_signing_in_again_from_a_launch_returns_to_the_chart(world: World) -> None:
    """Pressing Launch after the session ended: sign-in, then back to the chart (before: the browser
    came back to the launch form's target with GET - a 405)."""
    from .conftest import sign_in

    sign_in(world.client, "doctor")
    chart = world.client.get(f"/ehr/patient/{world.patient}")
    world.client.cookies.clear()
    world.client.cookies.set("ehrgate_csrf", csrf_of(chart.text))
    r = world.client.post("/ehr/launch", data={"csrf": csrf_of(chart.text), "client_id": "conf-app",
                                               "patient": world.patient})
    assert r.status_code == 303 and "next=%2Fehr%2Fpatient%2F" in r.headers["location"], r.headers["location"]


def test_patient_users_cannot_open_charts(world: World) -> None:
    from .conftest import sign_in

    sign_in(world.client, "ada")
    page = world.client.get("/ehr")
    assert page.status_code == 403
    assert 'action="/auth/logout"' in page.text and 'href="/sample-app"' in page.text  # not a dead end


# -- Refresh, introspection, revocation ------------------------------------------------------------


@pytest.mark.parametrize("with_scope", [False, True])
def test_refresh(world: World, with_scope: bool) -> None:
    body = standalone_tokens(world, user="ada")
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    if with_scope:
        data["scope"] = body["scope"]
    r = world.client.post("/auth/token", data=data)  # no client_id: the npm fhirclient's way (public client)
    assert r.status_code == 200, r.text
    new = r.json()
    remember(new["access_token"], new.get("refresh_token"))
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    assert new["token_type"] == "Bearer" and isinstance(new["expires_in"], int)
    assert set(new["scope"].split()) <= set(body["scope"].split())
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(new["access_token"])).status_code == 200


@pytest.mark.parametrize("extra", [{"scope": "patient/*.rs user/*.cruds"}, {"scope": "patient/Nope.xyz"},
                                   {"client_id": "narrow-app"}])
def test_a_replayed_refresh_token_revokes_the_grant_whatever_the_request_says(world: World, extra: dict[str, str]) -> None:
    """RFC 6749 §10.4, OAuth 2.0 Security BCP §4.14: presenting a rotated refresh token again revokes
    the grant; a wider or malformed scope, or another client, must not turn that into a mere error."""
    body = standalone_tokens(world, user="ada")
    first = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert first.status_code == 200, first.text
    new = first.json()
    remember(new["access_token"], new["refresh_token"])
    replay = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"], **extra})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    assert "already used" in replay.json()["error_description"]
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(new["access_token"])).status_code == 401
    again = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert again.status_code == 400


def test_introspection(world: World) -> None:
    body = standalone_tokens(world, user="ada")
    r = world.client.post("/auth/introspect", data={"token": body["access_token"], "client_id": "public-app"})
    info = r.json()
    assert r.status_code == 200 and info["active"] is True and info["client_id"] == "public-app"
    assert set(info["scope"].split()) == set(body["scope"].split()) and info["exp"] > time.time()
    assert info["patient"] == world.patient and info["iss"] == FHIR
    id_claims = jwt.decode(body["id_token"], KeySet.import_key_set(world.client.get("/auth/jwks").json()), algorithms=["RS256"]).claims
    assert info["sub"] == id_claims["sub"] and info["fhirUser"] == id_claims["fhirUser"]
    r = world.client.post("/auth/introspect", data={"token": "invalid_token_value", "client_id": "public-app"})
    assert r.status_code == 200 and r.json() == {"active": False}
    refresh = world.client.post("/auth/introspect", data={"token": body["refresh_token"], "client_id": "public-app"}).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"


def test_introspection_needs_authorization(world: World) -> None:
    """RFC 7662 §2.1: the endpoint MUST require authorization (against token scanning). A caller
    that sends nothing is refused; a bearer token must be a valid one with a system/ scope."""
    body = standalone_tokens(world, user="ada")
    for token in (body["access_token"], body["refresh_token"], "invalid_token_value"):
        r = world.client.post("/auth/introspect", data={"token": token})
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
        assert r.headers["www-authenticate"].startswith("Basic ") and "active" not in r.json()
    r = world.client.post("/auth/introspect", data={"token": body["access_token"]}, headers=bearer(body["access_token"]))
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert r.headers["www-authenticate"].startswith(f'Bearer realm="{FHIR}"')
    r = world.client.post("/auth/introspect", data={"token": body["access_token"]}, headers=bearer("not-a-token"))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    r = world.client.post("/auth/introspect", data={"token": body["access_token"], "client_id": "nobody"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    for name in ("smart-configuration", "openid-configuration"):
        doc = world.client.get(f"/.well-known/{name}").json()
        assert doc["introspection_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
        assert "ES384" in doc["introspection_endpoint_auth_signing_alg_values_supported"]
        assert doc["revocation_endpoint_auth_methods_supported"] == [  # RFC 8414 §2, as RFC 7009 §2.1 checks them
            "client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
        assert "ES384" in doc["revocation_endpoint_auth_signing_alg_values_supported"]


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_introspection_answers_by_who_may_see_the_token(world: World, which: str) -> None:
    """RFC 7662 §2.2: an authorized caller that may not see a token gets active=false, as for an
    unknown one. A client sees its own tokens (a public one naming its client_id, a confidential one
    authenticated); a caller with a system/ scope (a resource server) sees every token; access and
    refresh tokens follow the same rule."""
    from .conftest import backend_token

    public = standalone_tokens(world, user="ada")
    got, verifier, _ = authorize_code(world, client_id="conf-app", user="ada")
    confidential = exchange(world.client, got["code"], verifier, auth=("conf-app", world.secret)).json()
    remember(confidential["access_token"], confidential["refresh_token"])
    system = backend_token(world.client, world.keys["ES384"], "ES384").json()["access_token"]

    def ask(token: str, data: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
        r = world.client.post("/auth/introspect", data={"token": token, **(data or {})}, **kw)
        assert r.status_code == 200, r.text
        return dict(r.json())

    conf = ("conf-app", world.secret)
    assert ask(public[which], data={"client_id": "public-app"})["client_id"] == "public-app"
    assert ask(confidential[which], auth=conf)["client_id"] == "conf-app"
    assert ask(confidential[which], data={"client_id": "conf-app", "client_secret": world.secret})["active"] is True
    assert ask(public[which], auth=conf) == {"active": False}  # another client's token
    assert ask(confidential[which], data={"client_id": "public-app"}) == {"active": False}
    assert ask(public[which], data={"client_id": "narrow-app"}) == {"active": False}
    for token, client in ((public[which], "public-app"), (confidential[which], "conf-app")):
        info = ask(token, headers=bearer(system))
        assert info["active"] is True and info["client_id"] == client


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revocation_ends_the_grant(world: World, which: str) -> None:
    body = standalone_tokens(world, user="ada")
    r = world.client.post("/auth/revoke", data={"token": body[which], "client_id": "public-app"})
    assert r.status_code == 200
    read = world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(body["access_token"]))
    assert read.status_code in (401, 403, 404)
    assert read.headers.get("www-authenticate", "").startswith("Bearer")
    refresh = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert refresh.status_code in (400, 401)
    assert world.client.post("/auth/introspect", data={"token": body["access_token"], "client_id": "public-app"}).json() == {"active": False}
    assert world.client.post("/auth/revoke", data={"token": "unknown-token-value"}).status_code == 200


def test_denied_consent_returns_access_denied(world: World) -> None:
    auth, _ = authorize_params()
    page = follow_to_consent(world.client, world.client.get("/auth/authorize", params=auth), user="ada")

    got = callback_params(consent(world.client, page, decision="deny"))
    assert got == {"error": "access_denied", "error_description": "The user denied access to the app.", "state": auth["state"]}


def test_sign_in_failure_is_a_sentence(world: World) -> None:
    from .conftest import sign_in

    r = sign_in(world.client, "ada", "wrong-password")
    assert r.status_code == 401 and "not right" in r.text and PASSWORD not in r.text


def test_unauthenticated_fhir_read_is_401(world: World) -> None:
    r = world.client.get(f"/fhir/Patient/{world.patient}")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"
    r = world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer("not-a-token"))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_callback_constant() -> None:
    assert CALLBACK.startswith("http://127.0.0.1")


def test_openid_alone_gets_an_id_token(world: World) -> None:
    """OpenID Connect Core §3.1.3.3: an authentication request (scope openid) gets an id_token in the
    token response, with or without fhirUser/profile; fhirUser is a claim only when asked for."""
    body = standalone_tokens(world, user="ada", scope="openid launch/patient patient/*.rs")
    keys = KeySet.import_key_set(world.client.get("/auth/jwks").json())
    claims = jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["aud"] == "public-app" and claims["iss"] == FHIR and claims["sub"] and claims["nonce"] == "nonce-123"
    assert "fhirUser" not in claims
    with_user = standalone_tokens(world, user="ada", scope="openid fhirUser launch/patient patient/*.rs")
    assert "fhirUser" in jwt.decode(with_user["id_token"], keys, algorithms=["RS256"]).claims
    assert "id_token" not in standalone_tokens(world, user="ada", scope="launch/patient patient/*.rs")


def test_redirect_uri_left_out_of_both_requests(world: World) -> None:
    """RFC 6749 §3.1.2.3 and §4.1.3: with one registered redirect URI the authorization request may
    leave redirect_uri out, and then the token request need not send it (but may, the same)."""
    for sent in ({}, {"redirect_uri": CALLBACK}):
        got, verifier, _ = authorize_code(world, user="ada", redirect_uri=None)
        data = {"grant_type": "authorization_code", "code": got["code"], "code_verifier": verifier,
                "client_id": "public-app", **sent}
        r = world.client.post("/auth/token", data=data)
        assert r.status_code == 200, r.text
        remember(r.json()["access_token"], r.json()["refresh_token"], r.json()["id_token"])
    got, verifier, _ = authorize_code(world, user="ada", redirect_uri=None)
    r = world.client.post("/auth/token", data={"grant_type": "authorization_code", "code": got["code"], "code_verifier": verifier,
                                               "client_id": "public-app", "redirect_uri": CALLBACK + "/other"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"  # sent, it must be the registered one
    got, verifier, _ = authorize_code(world, user="ada")  # sent to the authorize endpoint: required
    r = world.client.post("/auth/token", data={"grant_type": "authorization_code", "code": got["code"],
                                               "code_verifier": verifier, "client_id": "public-app"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant" and "redirect_uri" in r.json()["error_description"]


def test_a_narrowed_refresh_keeps_the_refresh_token_lifetime(world: World, smart_settings: Any) -> None:
    """A refresh whose scope leaves out offline_access still gets a refresh token, and it expires
    like the grant's others (refresh_token_lifetime) instead of never."""
    body = standalone_tokens(world, user="ada")
    r = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                               "scope": "patient/*.rs"})
    assert r.status_code == 200, r.text
    new = r.json()
    remember(new["access_token"], new["refresh_token"])
    info = world.client.post("/auth/introspect", data={"token": new["refresh_token"], "client_id": "public-app"}).json()
    assert info["active"] is True
    assert abs(info["exp"] - (time.time() + smart_settings.refresh_token_lifetime)) < 60


def test_revocation_checks_whose_token_it_is(world: World) -> None:
    """RFC 7009 §2.1: a confidential client's token is revoked only with its credentials, and a
    client may revoke only its own tokens; both refusals say so instead of a 200 that did nothing."""
    got, verifier, _ = authorize_code(world, client_id="conf-app", user="ada")
    body = exchange(world.client, got["code"], verifier, auth=("conf-app", world.secret)).json()
    remember(body["access_token"], body["refresh_token"])
    read = f"/fhir/Patient/{world.patient}"
    anonymous = world.client.post("/auth/revoke", data={"token": body["refresh_token"]})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    other = world.client.post("/auth/revoke", data={"token": body["access_token"], "client_id": "public-app"})
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    assert "another client" in other.json()["error_description"]
    assert world.client.get(read, headers=bearer(body["access_token"])).status_code == 200  # nothing was revoked
    own = world.client.post("/auth/revoke", data={"token": body["refresh_token"]}, auth=("conf-app", world.secret))
    assert own.status_code == 200
    assert world.client.get(read, headers=bearer(body["access_token"])).status_code == 401


@pytest.mark.parametrize(("name", "error"), [("request", "request_not_supported"),
                                             ("request_uri", "request_uri_not_supported"),
                                             ("registration", "registration_not_supported")])
def test_request_objects_are_refused_not_ignored(world: World, name: str, error: str) -> None:
    """OpenID Connect Core §6.1, §6.2, §7.2.1: an OP that does not support request objects (or
    registration by parameter) MUST say so; ignoring one would act on parameters the app did not
    mean. Discovery says they are unsupported (request_uri_parameter_supported defaults to true)."""
    auth, _ = authorize_params(**{name: "eyJhbGciOiJub25lIn0.e30."})
    got = callback_params(world.client.get("/auth/authorize", params=auth))
    assert got["error"] == error and got["state"] == auth["state"] and "code" not in got
    doc = world.client.get("/.well-known/openid-configuration").json()
    assert doc["request_parameter_supported"] is False and doc["request_uri_parameter_supported"] is False

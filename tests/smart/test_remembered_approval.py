"""Remembered approvals: "Do not ask me again" on the consent page lets the same user's next
authorization of the same app skip the page while the app asks for no more than was approved;
`prompt=consent` asks anyway; the connected apps page lists them and forgets them."""

from __future__ import annotations

import html as h
import re
from typing import Any

from ehrgate.smart import grants as G

from .conftest import (
    World,
    authorize_params,
    backend_token,
    bearer,
    callback_params,
    csrf_of,
    ehr_launch_handle,
    exchange,
    follow_to_consent,
    req_of,
    sign_in,
)

SCOPE = "launch/patient openid fhirUser patient/*.rs"


def _approve(world: World, page: Any, *, remember: bool, scopes: list[str] | None = None) -> Any:
    html = page.text
    chosen = scopes if scopes is not None else re.findall(r'name="scope" value="([^"]+)" checked', html)
    data: dict[str, Any] = {"csrf": csrf_of(html), "req": req_of(html), "decision": "allow",
                            "scope": [h.unescape(s) for s in chosen]}
    if remember:
        data["remember"] = "yes"
    return world.client.post("/auth/consent", data=data)


def _authorize(world: World, user: str = "doctor", **params: Any) -> tuple[Any, str]:
    """Start an authorization and follow it through sign-in and the picker: the consent page (200)
    or the redirect to the app with a code (303)."""
    auth, verifier = authorize_params(scope=params.pop("scope", SCOPE), **params)
    first = world.client.get("/auth/authorize", params=auth)
    return follow_to_consent(world.client, first, user=user, patient=world.patient), verifier


def _audit(world: World) -> list[str]:
    token = backend_token(world.client, world.keys["RS384"]).json()["access_token"]
    r = world.client.get("/fhir/AuditEvent?_count=200", headers=bearer(token))
    return [e["resource"].get("outcomeDesc", "") for e in r.json().get("entry", [])]


def test_the_page_offers_it_and_nothing_is_remembered_without_it(world: World, store: Any) -> None:
    page, _ = _authorize(world)
    assert page.status_code == 200 and 'name="remember" value="yes"' in page.text
    assert "Do not ask me again" in page.text
    callback_params(_approve(world, page, remember=False))
    again, _ = _authorize(world)
    assert again.status_code == 200  # asked again


def test_remembered_approval_skips_the_page_and_the_code_works(world: World, store: Any) -> None:
    page, _ = _authorize(world)
    callback_params(_approve(world, page, remember=True))
    with store.reader() as conn:
        user_id = _user_id(conn, "doctor")
        assert G.remembered_consent(conn, user_id, "public-app") == SCOPE

    skipped, verifier = _authorize(world)
    got = callback_params(skipped)  # straight back to the app, with a code and the state
    token = exchange(world.client, got["code"], verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert set(body["scope"].split()) == set(SCOPE.split()) and body["patient"] == world.patient
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(body["access_token"])).status_code == 200
    assert any(d.startswith("The user's remembered approval granted:") for d in _audit(world))

    # fewer scopes: still covered
    fewer, _ = _authorize(world, scope="launch/patient openid patient/Observation.rs")
    assert fewer.status_code == 303 and "code=" in fewer.headers["location"]
    # more than approved: the page again
    more, _ = _authorize(world, scope=SCOPE + " offline_access")
    assert more.status_code == 200 and 'name="decision"' in more.text
    # OpenID Connect prompt=consent: the page again
    forced, _ = _authorize(world, prompt="consent")
    assert forced.status_code == 200 and 'name="decision"' in forced.text
    # another user of the same app is asked
    world.client.cookies.clear()
    other, _ = _authorize(world, user="admin")
    assert other.status_code == 200


def test_what_the_user_unticked_is_asked_again(world: World, store: Any) -> None:
    page, _ = _authorize(world)
    callback_params(_approve(world, page, remember=True, scopes=["launch/patient", "openid", "fhirUser"]))
    again, _ = _authorize(world)
    assert again.status_code == 200  # the app asks for patient/*.rs, which was not approved


def test_an_ehr_launch_with_a_remembered_approval_goes_straight_to_the_app(world: World, store: Any) -> None:
    handle = ehr_launch_handle(world)
    page, _ = _authorize(world, scope="launch openid fhirUser patient/*.rs", launch=handle)
    assert page.status_code == 200
    callback_params(_approve(world, page, remember=True))
    handle = ehr_launch_handle(world)
    direct, verifier = _authorize(world, scope="launch openid fhirUser patient/*.rs", launch=handle)
    got = callback_params(direct)
    body = exchange(world.client, got["code"], verifier).json()
    assert body["patient"] == world.patient and body["need_patient_banner"] is True


def test_connected_apps_lists_and_forgets_it(world: World, store: Any) -> None:
    page, _ = _authorize(world, user="ada")
    callback_params(_approve(world, page, remember=True))
    apps = world.client.get("/auth/apps")
    assert "Apps that do not ask again" in apps.text and 'aria-label="Ask me again: Public App"' in apps.text

    forged = world.client.post("/auth/apps/forget", data={"csrf": "forged-value-of-some-length", "client_id":
                                                          "public-app"})
    assert forged.status_code == 403
    assert _authorize(world, user="ada")[0].status_code == 303  # still remembered

    apps = world.client.get("/auth/apps")
    r = world.client.post("/auth/apps/forget", data={"csrf": csrf_of(apps.text), "client_id": "public-app"})
    assert r.status_code == 303 and r.headers["location"] == "/auth/apps?done=forgotten"
    after = world.client.get(r.headers["location"]).text
    assert "will ask for your approval again" in after and "Apps that do not ask again" not in after
    assert _authorize(world, user="ada")[0].status_code == 200

    # ending an app's access forgets the approval too
    callback_params(_approve(world, _authorize(world, user="ada")[0], remember=True))
    apps = world.client.get("/auth/apps").text
    grant = re.findall(r'name="grant" value="([^"]+)"', apps)[0]
    world.client.post("/auth/apps/revoke", data={"csrf": csrf_of(apps), "grant": grant})
    assert _authorize(world, user="ada")[0].status_code == 200


def test_removing_the_user_or_revoking_their_apps_forgets_it(world: World, store: Any) -> None:
    from ehrgate.smart import users as U

    callback_params(_approve(world, _authorize(world, user="ada")[0], remember=True))
    with store.writer() as w:
        U.set_password(w.conn, "ada", "another-password-1", now=0)
    with store.reader() as conn:
        assert G.remembered_consent(conn, _user_id(conn, "ada"), "public-app") is not None  # only sign-ins ended
    with store.writer() as w:
        U.set_password(w.conn, "ada", "another-password-2", now=0, revoke_apps=True)
    with store.reader() as conn:
        assert G.remembered_consent(conn, _user_id(conn, "ada"), "public-app") is None
    sign_in(world.client, "ada", password="another-password-2")


def _user_id(conn: Any, username: str) -> str:
    from ehrgate.smart import users as U

    return next(u.id for u in U.list_users(conn) if u.username == username)


def _error_of(response: Any) -> dict[str, str]:
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    from urllib.parse import parse_qs, urlsplit

    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def test_prompt_none_shows_no_page(world: World, store: Any) -> None:
    """OpenID Connect prompt=none: a code when nothing needs asking, else the reason, and no page."""
    auth, _ = authorize_params(scope=SCOPE, prompt="none")
    got = _error_of(world.client.get("/auth/authorize", params=auth))  # nobody signed in
    assert got["error"] == "login_required" and got["state"] == auth["state"] and "code" not in got

    sign_in(world.client, "doctor")
    auth, _ = authorize_params(scope=SCOPE, prompt="none")
    assert _error_of(world.client.get("/auth/authorize", params=auth))["error"] == "interaction_required"  # a patient
    auth, _ = authorize_params(scope="openid fhirUser user/Patient.rs", prompt="none")
    assert _error_of(world.client.get("/auth/authorize", params=auth))["error"] == "consent_required"

    callback_params(_approve(world, _authorize(world, scope="openid fhirUser user/Patient.rs")[0], remember=True))
    auth, verifier = authorize_params(scope="openid fhirUser user/Patient.rs", prompt="none")
    got = callback_params(world.client.get("/auth/authorize", params=auth))
    assert exchange(world.client, got["code"], verifier).status_code == 200

    auth, _ = authorize_params(scope=SCOPE, prompt="none login")
    assert _error_of(world.client.get("/auth/authorize", params=auth))["error"] == "invalid_request"


def test_prompt_login_asks_for_the_password_again(world: World, store: Any) -> None:
    callback_params(_approve(world, _authorize(world, scope="openid fhirUser user/Patient.rs")[0], remember=True))
    auth, verifier = authorize_params(scope="openid fhirUser user/Patient.rs", prompt="login")
    first = world.client.get("/auth/authorize", params=auth)  # signed in, approval remembered: still the sign-in
    assert first.status_code in (302, 303) and first.headers["location"].startswith("/auth/login?req=")
    signed = sign_in(world.client, "doctor", req=req_of(first.headers["location"]))
    again = world.client.get(signed.headers["location"])
    got = callback_params(again)  # signed in afresh: the remembered approval applies
    assert exchange(world.client, got["code"], verifier).status_code == 200


def test_removing_the_app_forgets_its_approvals(world: World, store: Any) -> None:
    from ehrgate.smart import apps as A

    callback_params(_approve(world, _authorize(world)[0], remember=True))
    with store.writer() as w:
        app = A.get_app(w.conn, "public-app")
        A.remove_app(w.conn, "public-app")
        A.add_app(w.conn, app, now=0)  # another app, registered later under the same client_id
    assert _authorize(world)[0].status_code == 200  # asked


def test_remembering_and_forgetting_are_audited(world: World, store: Any) -> None:
    callback_params(_approve(world, _authorize(world, user="ada")[0], remember=True))
    apps = world.client.get("/auth/apps")
    world.client.post("/auth/apps/forget", data={"csrf": csrf_of(apps.text), "client_id": "public-app"})
    said = _audit(world)
    assert any(d.startswith("The user asked not to be asked again while the app asks for no more than:")
               for d in said)
    assert any(d.startswith("The user's remembered approval was forgotten on the connected apps page") for d in said)


def test_prompt_login_on_an_ehr_launch_keeps_the_launch(world: World, store: Any) -> None:
    """The launch handle is bound to the sign-in session; signing in again for prompt=login moves it
    to the new session (same user), so the launch context survives."""
    handle = ehr_launch_handle(world)  # signs the clinician in
    auth, verifier = authorize_params(scope="launch openid fhirUser patient/*.rs", launch=handle, prompt="login")
    first = world.client.get("/auth/authorize", params=auth)
    assert first.status_code in (302, 303) and first.headers["location"].startswith("/auth/login?req=")
    signed = sign_in(world.client, "doctor", req=req_of(first.headers["location"]))
    page = world.client.get(signed.headers["location"])
    assert page.status_code == 200 and 'name="decision"' in page.text  # the consent page, not a refused launch
    got = callback_params(_approve(world, page, remember=False))
    body = exchange(world.client, got["code"], verifier).json()
    assert body["patient"] == world.patient


def test_prompt_select_account_asks_which_account(world: World, store: Any) -> None:
    """OpenID Connect Core §3.1.2.1 prompt=select_account: the user is asked which account to use -
    continue as the signed-in one or sign in as another - even when the approval is remembered."""
    scope = "openid fhirUser launch/patient patient/*.rs"
    callback_params(_approve(world, _authorize(world, scope=scope)[0], remember=True))  # the clinician
    auth, verifier = authorize_params(scope=scope, prompt="select_account")
    first = world.client.get("/auth/authorize", params=auth)
    assert first.status_code in (302, 303) and first.headers["location"].startswith("/auth/login?req=")
    chooser = world.client.get(first.headers["location"])
    assert "Continue as Dr Greg House" in chooser.text and 'name="password"' in chooser.text
    kept = world.client.post("/auth/login", data={"csrf": csrf_of(chooser.text), "req": req_of(first.headers["location"]),
                                                  "continue": "yes"})
    got = callback_params(follow_to_consent(world.client, kept, patient=world.patient))  # remembered: no page
    assert exchange(world.client, got["code"], verifier).json()["patient"] == world.patient

    auth, verifier = authorize_params(scope=scope, prompt="select_account")
    first = world.client.get("/auth/authorize", params=auth)
    assert first.headers["location"].startswith("/auth/login?req=")
    signed = sign_in(world.client, "ada", req=req_of(first.headers["location"]))
    page = world.client.get(signed.headers["location"])
    got = callback_params(_approve(world, page, remember=False))  # ada has approved nothing yet: asked
    body = exchange(world.client, got["code"], verifier).json()
    info = world.client.post("/auth/introspect", data={"token": body["access_token"], "client_id": "public-app"}).json()
    assert info["fhirUser"].endswith(f"/Patient/{world.patient}")  # ada's token, not the clinician's
    auth, _ = authorize_params(scope=scope, prompt="select_account none")
    got = callback_params(world.client.get("/auth/authorize", params=auth))
    assert got["error"] == "invalid_request"



def test_max_age_asks_for_a_fresh_sign_in(world: World, store: Any) -> None:
    """OpenID Connect Core §3.1.2.1 max_age: a sign-in older than max_age seconds is done again (the
    id_token's auth_time then says when); with prompt=none that is login_required."""
    import base64
    import json
    import time

    from ehrgate.smart.schema import sessions

    scope = "openid fhirUser user/Patient.rs"
    callback_params(_approve(world, _authorize(world, scope=scope)[0], remember=True))
    with store.writer() as w:  # the sign-in was an hour ago
        w.conn.execute(sessions.update().values(created=sessions.c.created - 3600))
    auth, _ = authorize_params(scope=scope, max_age="7200")
    assert callback_params(world.client.get("/auth/authorize", params=auth))["code"]  # recent enough
    auth, _ = authorize_params(scope=scope, max_age="60", prompt="none")
    got = callback_params(world.client.get("/auth/authorize", params=auth))
    assert got["error"] == "login_required" and got["state"] == auth["state"]
    auth, _ = authorize_params(scope=scope, max_age="soon")
    got = callback_params(world.client.get("/auth/authorize", params=auth))
    assert got["error"] == "invalid_request" and "max_age" in got["error_description"]

    auth, verifier = authorize_params(scope=scope, max_age="60")
    first = world.client.get("/auth/authorize", params=auth)
    assert first.status_code in (302, 303) and first.headers["location"].startswith("/auth/login?req=")
    signed = sign_in(world.client, "doctor", req=req_of(first.headers["location"]))
    got = callback_params(world.client.get(signed.headers["location"]))
    id_token = exchange(world.client, got["code"], verifier).json()["id_token"]
    claims = json.loads(base64.urlsafe_b64decode(id_token.split(".")[1] + "=="))
    assert abs(claims["auth_time"] - time.time()) < 60

    # max_age=0 is prompt=login (Core §3.1.2.1), even for a sign-in of this very second; the sign-in
    # made for the request satisfies it, however many seconds pass before the browser comes back
    auth, _ = authorize_params(scope=scope, max_age="0")
    first = world.client.get("/auth/authorize", params=auth)
    assert first.headers["location"].startswith("/auth/login?req=")
    signed = sign_in(world.client, "doctor", req=req_of(first.headers["location"]))
    with store.writer() as w:  # the user was slow to come back
        w.conn.execute(sessions.update().values(created=sessions.c.created - 5))
    assert callback_params(world.client.get(signed.headers["location"]))["code"]

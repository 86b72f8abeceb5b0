"""Connected apps (``management_endpoint``): a signed-in person sees the apps that hold access to
their data and ends it; the app's tokens stop working at once."""

from __future__ import annotations

import re

from ehrgate.fhir.jsonio import loads

from .conftest import World, backend_token, bearer, csrf_of, sign_in, standalone_tokens


def _page(world: World) -> str:
    r = world.client.get("/auth/apps")
    assert r.status_code == 200, r.text[:300]
    return r.text


def _audit(world: World, query: str) -> list[dict]:
    token = backend_token(world.client, world.keys["RS384"]).json()["access_token"]
    r = world.client.get("/fhir/AuditEvent?" + query, headers=bearer(token))
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _grant_ids(html: str) -> list[str]:
    return re.findall(r'name="grant" value="([^"]+)"', html)


def test_discovery_points_at_the_connected_apps_page(world: World) -> None:
    conf = world.client.get("/fhir/.well-known/smart-configuration").json()
    assert conf["management_endpoint"].endswith("/auth/apps")
    meta = world.client.get("/fhir/metadata").json()
    ext = meta["rest"][0]["security"]["extension"][0]["extension"]
    assert {"url": "manage", "valueUri": conf["management_endpoint"]} in ext


def test_the_page_needs_a_session(world: World) -> None:
    r = world.client.get("/auth/apps")
    assert r.status_code == 303 and r.headers["location"] == "/auth/login?next=%2Fauth%2Fapps"
    signed = sign_in(world.client, "ada", next_="/auth/apps")
    assert signed.headers["location"] == "/auth/apps"


def test_a_patient_sees_the_app_they_approved_and_ends_its_access(world: World) -> None:
    body = standalone_tokens(world, user="ada")  # signs ada in, approves public-app (offline_access)
    html = _page(world)
    assert "Public App" in html and "keeps access after you sign out" in html
    assert "Read and search all kinds of records" in html or "all kinds of records" in html
    assert "Ada Nunez" in html  # the patient the grant is for, by name
    [grant] = _grant_ids(html)
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(body["access_token"])).status_code == 200

    r = world.client.post("/auth/apps/revoke", data={"csrf": csrf_of(html), "grant": grant})
    assert r.status_code == 303 and r.headers["location"] == "/auth/apps?done=revoked"
    after = world.client.get(r.headers["location"])
    assert "Access ended" in after.text and _grant_ids(after.text) == []
    assert "No app has access to your data." in after.text
    # the access token stops at once, the refresh token too
    read = world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(body["access_token"]))
    assert read.status_code == 401
    refresh = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                                     "client_id": "public-app"})
    assert refresh.status_code in (400, 401)
    # and an AuditEvent says who ended it, for which app and grant
    [event] = [e for e in _audit(world, f"entity-name={grant}") if "connected apps page" in e.get("outcomeDesc", "")]
    agents = {a["who"].get("reference") or a["who"].get("identifier", {}).get("value") for a in event["agent"]}
    assert agents == {f"Patient/{world.patient}", "public-app"}


def test_nobody_ends_someone_elses_grant(world: World) -> None:
    body = standalone_tokens(world, user="ada")
    sign_in(world.client, "ada")
    [grant] = _grant_ids(_page(world))
    # the clinician signs in on the same browser and posts ada's grant id
    sign_in(world.client, "doctor")
    html = _page(world)
    assert _grant_ids(html) == []
    r = world.client.post("/auth/apps/revoke", data={"csrf": csrf_of(html), "grant": grant})
    assert r.headers["location"] == "/auth/apps?done=gone"
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(body["access_token"])).status_code == 200


def test_a_forged_form_changes_nothing(world: World) -> None:
    body = standalone_tokens(world, user="ada")
    [grant] = _grant_ids(_page(world))
    r = world.client.post("/auth/apps/revoke", data={"csrf": "not-the-cookie-value-at-all", "grant": grant})
    assert r.status_code == 403 and "expired" in r.text
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(body["access_token"])).status_code == 200


def test_revoked_and_signed_out_online_grants_are_not_listed(world: World) -> None:
    standalone_tokens(world, user="ada", scope="launch/patient openid fhirUser online_access patient/*.rs")
    html = _page(world)
    assert "access ends when you sign out" in html
    assert len(_grant_ids(html)) == 1
    world.client.post("/auth/logout", data={"csrf": csrf_of(html)})
    sign_in(world.client, "ada")
    assert _grant_ids(_page(world)) == []


def test_every_page_with_a_signed_in_user_links_to_connected_apps(world: World) -> None:
    sign_in(world.client, "doctor")
    assert 'href="/auth/apps"' in world.client.get("/ehr").text
    assert 'href="/auth/apps"' in _page(world)
    assert loads(world.client.get("/fhir/.well-known/smart-configuration").content)["management_endpoint"]

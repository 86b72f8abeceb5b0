"""The app registry page (``/ehr/apps``): admins list, register, rotate and remove apps in the
browser; a new secret is shown once; apps from ehrgate.yaml are left to the file; everyone else is
refused; forms need the page's CSRF value."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from ehrgate.smart import apps as A

from .conftest import CALLBACK, PASSWORD, World, csrf_of, remember, sign_in


def _page(world: World) -> str:
    r = world.client.get("/ehr/apps")
    assert r.status_code == 200, r.text[:300]
    return r.text


def _secret(html: str) -> str:
    m = re.search(r'<code id="client-secret">([^<]+)</code>', html)
    assert m, "no secret on the page"
    remember(m.group(1))
    return unescape(m.group(1))


def test_only_admins_get_the_registry(world: World) -> None:
    r = world.client.get("/ehr/apps")
    assert r.status_code == 303 and r.headers["location"] == "/auth/login?next=/ehr/apps"
    sign_in(world.client, "doctor")
    refused = world.client.get("/ehr/apps")
    assert refused.status_code == 403 and "needs the admin role" in refused.text
    assert "App registry" not in world.client.get("/ehr").text  # no link for clinicians
    sign_in(world.client, "admin")
    assert 'href="/ehr/apps"' in world.client.get("/ehr").text
    html = _page(world)
    assert "Public App" in html and "(public-app · public · registered with cli)" in html
    assert 'aria-label="Remove Public App"' in html and 'aria-label="Rotate the secret of Confidential App"' in html


def test_register_a_confidential_app_and_its_secret_works_once(world: World, store: Any) -> None:
    sign_in(world.client, "admin")
    html = _page(world)
    r = world.client.post("/ehr/apps", data={
        "csrf": csrf_of(html), "client_id": "vendor-app", "name": "Vendor <App>", "type": "confidential-symmetric",
        "redirect_uris": f"{CALLBACK}\r\nhttps://vendor.example/cb", "launch_url": "https://vendor.example/launch",
        "scopes": "launch openid fhirUser patient/*.rs", "description": "", "jwks_uri": ""})
    assert r.status_code == 200 and "Registered Vendor &lt;App&gt; (vendor-app)." in r.text  # escaped
    secret = _secret(r.text)
    assert r.headers["cache-control"] == "no-store"
    with store.reader() as conn:
        app = A.get_app(conn, "vendor-app")
    assert app is not None and app.redirect_uris == (CALLBACK, "https://vendor.example/cb")
    assert app.source == "web" and app.check_secret(secret)
    assert secret not in _page(world)  # shown once

    rotated = world.client.post("/ehr/apps/vendor-app/rotate-secret", data={"csrf": csrf_of(html)})
    new = _secret(rotated.text)
    assert new != secret and "the old one no longer works" in rotated.text
    with store.reader() as conn:
        again = A.get_app(conn, "vendor-app")
    assert again is not None and again.check_secret(new) and not again.check_secret(secret)

    removed = world.client.post("/ehr/apps/vendor-app/remove", data={"csrf": csrf_of(html)})
    assert removed.status_code == 303 and removed.headers["location"] == "/ehr/apps?done=removed"
    assert "The app was removed" in world.client.get(removed.headers["location"]).text
    with store.reader() as conn:
        assert A.get_app(conn, "vendor-app") is None


def test_a_bad_registration_says_why_and_keeps_the_form(world: World) -> None:
    sign_in(world.client, "admin")
    html = _page(world)
    r = world.client.post("/ehr/apps", data={"csrf": csrf_of(html), "client_id": "half", "name": "Half",
                                             "type": "public", "redirect_uris": "", "scopes": "patient/Nonsense.rs"})
    assert r.status_code == 400 and 'role="alert"' in r.text and "Traceback" not in r.text
    assert 'value="half"' in r.text and 'value="patient/Nonsense.rs"' in r.text
    dup = world.client.post("/ehr/apps", data={"csrf": csrf_of(html), "client_id": "public-app", "name": "Again",
                                               "type": "public", "redirect_uris": CALLBACK})
    assert dup.status_code == 400 and "already exists" in dup.text


def test_forms_need_the_csrf_value_and_config_apps_stay(world: World, store: Any) -> None:
    sign_in(world.client, "admin")
    forged = world.client.post("/ehr/apps/public-app/remove", data={"csrf": "forged-value-of-some-length-x"})
    assert forged.status_code == 403
    with store.reader() as conn:
        assert A.get_app(conn, "public-app") is not None
    with store.writer() as w:
        A.sync_config_apps(w.conn, [A.App("yaml-app", "Yaml App", "public", (CALLBACK,), source="config")], now=0)
    html = _page(world)
    assert "(yaml-app · public · ehrgate.yaml)" in html and 'aria-label="Remove Yaml App"' not in html
    r = world.client.post("/ehr/apps/yaml-app/remove", data={"csrf": csrf_of(html)})
    assert r.status_code == 400 and "declared in ehrgate.yaml" in r.text
    r = world.client.post("/ehr/apps/public-app/explode", data={"csrf": csrf_of(html)})
    assert r.status_code == 400 and "Unknown action" in r.text
    r = world.client.post("/ehr/apps/public-app/rotate-secret", data={"csrf": csrf_of(html)})
    assert r.status_code == 400 and "only confidential-symmetric clients have a secret" in r.text


def test_every_registry_change_is_an_audit_event(world: World, store: Any, tmp_path: Any) -> None:
    """Page, admin API and CLI alike: which app, what happened, who, and how."""
    from .conftest import backend_token, bearer
    from .test_cli import _run

    sign_in(world.client, "admin")
    html = _page(world)
    world.client.post("/ehr/apps", data={"csrf": csrf_of(html), "client_id": "audited", "name": "Audited",
                                         "type": "confidential-symmetric", "redirect_uris": CALLBACK})
    world.client.post("/ehr/apps/audited/rotate-secret", data={"csrf": csrf_of(html)})
    assert world.client.delete("/admin/apps/audited", auth=("admin", PASSWORD)).status_code == 204
    r = _run(["apps", "add", "--client-id", "from-cli", "--name", "From CLI", "--type", "public",
              "--redirect-uri", CALLBACK], store, tmp_path)
    assert r.exit_code == 0, r.output
    token = backend_token(world.client, world.keys["RS384"]).json()["access_token"]
    found = world.client.get("/fhir/AuditEvent?subtype=urn:ehrgate:audit-subtype|app-registry&_count=50",
                             headers=bearer(token)).json()
    said = sorted(e["resource"]["outcomeDesc"] for e in found.get("entry", []))
    assert said[:3] == ["App audited given a new client secret by admin (page).", "App audited registered by admin (page).",
                        "App audited removed by admin (api)."]
    assert said[3].startswith("App from-cli registered by cli:") and said[3].endswith("(cli).")
    event = next(e["resource"] for e in found["entry"] if e["resource"]["outcomeDesc"].endswith("(page)."))
    assert {"who": {"display": "admin"}, "altId": "admin", "requestor": True} in event["agent"]

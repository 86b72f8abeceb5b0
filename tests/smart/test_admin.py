"""The admin HTTP API for apps, and apps declared in ehrgate.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from starlette.testclient import TestClient

from ehrgate.app import create_app
from ehrgate.settings import load_settings

from .conftest import CALLBACK, PASSWORD, World, authorize_params, remember

ADMIN = ("admin", PASSWORD)


def test_admin_api(world: World) -> None:
    c = world.client
    assert c.get("/admin/apps").status_code == 401
    assert c.get("/admin/apps", auth=("doctor", PASSWORD)).status_code == 403
    assert c.get("/admin/apps", auth=("admin", "wrong-password")).status_code == 401
    listed = c.get("/admin/apps", auth=ADMIN).json()["apps"]
    assert {a["client_id"] for a in listed} >= {"public-app", "conf-app", "backend"}
    assert all("secret_hash" not in a for a in listed)
    assert c.post("/admin/apps", data={"client_id": "x"}, auth=ADMIN).status_code == 415  # no cross-site forms
    r = c.post("/admin/apps", auth=ADMIN, json={"client_id": "api-app", "name": "API App", "type": "confidential-symmetric",
                                                "redirect_uris": [CALLBACK], "scopes": ["launch/patient", "patient/*.rs"]})
    assert r.status_code == 201, r.text
    secret = r.json()["client_secret"]
    remember(secret)
    assert c.get("/admin/apps/api-app", auth=ADMIN).json()["scopes"] == "launch/patient patient/*.rs"
    bad = c.post("/admin/apps", auth=ADMIN, json={"client_id": "bad", "name": "Bad", "type": "public"})
    assert bad.status_code == 400 and "redirect_uri" in bad.json()["error"]
    rotated = c.post("/admin/apps/api-app/rotate-secret", auth=ADMIN).json()["client_secret"]
    remember(rotated)
    assert rotated != secret
    assert c.delete("/admin/apps/api-app", auth=ADMIN).status_code == 204
    assert c.get("/admin/apps/api-app", auth=ADMIN).status_code == 404


def test_apps_from_the_config_file(store: Any, tmp_path: Path) -> None:
    config = {"settings": {"environment": "test", "base_url": "http://testserver", "data_dir": str(tmp_path / "d")},
              "environments": ["dev", "test"],
              "apps": [{"client_id": "yaml-app", "name": "From YAML", "type": "public",
                        "redirect_uris": {"dev": ["http://127.0.0.1:1/cb"], "test": [CALLBACK]}}]}
    path = tmp_path / "ehrgate.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path, environ={})
    with TestClient(create_app(settings, store), follow_redirects=False) as c:
        auth, _ = authorize_params(client_id="yaml-app")
        r = c.get("/auth/authorize", params=auth)
        assert r.status_code == 303 and r.headers["location"].startswith("/auth/login")
        listed = c.get("/auth/authorize", params=authorize_params(client_id="yaml-app", redirect_uri="http://127.0.0.1:1/cb")[0])
        assert listed.status_code == 400  # the dev redirect URI is not registered in test


def test_admin_api_sign_in_shares_the_sign_in_pages_limit(world: World) -> None:
    """Guesses at the app registry's Basic sign-in count toward the sign-in page's limit per address:
    after 10, 429 with Retry-After even with the right password, and the sign-in page refuses too."""
    c = world.client
    for _ in range(10):
        assert c.get("/admin/apps", auth=("admin", "wrong-password")).status_code == 401
    r = c.get("/admin/apps", auth=ADMIN)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "Too many failed sign-ins" in r.json()["error"]
    from .conftest import sign_in

    assert sign_in(c, "admin").status_code == 429

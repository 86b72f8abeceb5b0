"""``ehrgate apps …``, ``ehrgate keys …``, ``ehrgate users …`` against the database a server is using."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from joserfc.jwk import RSAKey

from ehrgate.cli import cli

from .conftest import CALLBACK, World, authorize_code, exchange, remember


def _run(args: list[str], world_store: Any, data_dir: Path, input: str | None = None) -> Any:
    url = world_store.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, [*args, "--database-url", url, "--data-dir", str(data_dir)], input=input)
    return result


def test_apps_lifecycle_while_the_server_runs(world: World, store: Any, tmp_path: Path) -> None:
    data = tmp_path / "cli"
    r = _run(["apps", "add", "--client-id", "cli-app", "--name", "CLI App", "--type", "confidential-symmetric",
              "--redirect-uri", CALLBACK, "--scope", "launch/patient", "--scope", "openid", "--scope", "fhirUser",
              "--scope", "patient/*.rs", "--json"], store, data)
    assert r.exit_code == 0, r.output
    secret = json.loads(r.stdout)["client_secret"]
    remember(secret)
    # the running server knows the new app at once
    got, verifier, _ = authorize_code(world, client_id="cli-app", user="ada",
                                      scope="launch/patient openid fhirUser patient/*.rs")
    token = exchange(world.client, got["code"], verifier, client_id="cli-app", auth=("cli-app", secret))
    assert token.status_code == 200, token.text
    listed = _run(["apps", "list"], store, data)
    assert "cli-app" in listed.output and "confidential-symmetric" in listed.output
    shown = _run(["apps", "show", "cli-app", "--json"], store, data)
    assert json.loads(shown.output)["redirect_uris"] == [CALLBACK] and secret not in shown.output
    rotated = _run(["apps", "rotate-secret", "cli-app"], store, data)
    assert rotated.exit_code == 0
    new_secret = rotated.stdout.strip()
    remember(new_secret)
    assert new_secret != secret
    got, verifier, _ = authorize_code(world, client_id="cli-app", user="ada", scope="launch/patient patient/*.rs")
    assert exchange(world.client, got["code"], verifier, client_id="cli-app", auth=("cli-app", secret)).status_code == 401
    assert _run(["apps", "remove", "cli-app"], store, data).exit_code == 0
    gone = _run(["apps", "show", "cli-app"], store, data)
    assert gone.exit_code == 2 and "No app with client_id 'cli-app'" in gone.output


def test_apps_add_errors_are_sentences(world: World, store: Any, tmp_path: Path) -> None:
    r = _run(["apps", "add", "--client-id", "x", "--name", "X", "--type", "public"], store, tmp_path)
    assert r.exit_code == 2 and "at least one redirect_uri" in r.output and "Traceback" not in r.output
    r = _run(["apps", "add", "--client-id", "public-app", "--name", "X", "--type", "public", "--redirect-uri", CALLBACK], store, tmp_path)
    assert r.exit_code == 2 and "already exists" in r.output


def test_asymmetric_app_from_jwks_file(world: World, store: Any, tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, auto_kid=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    r = _run(["apps", "add", "--client-id", "svc2", "--name", "Svc", "--type", "confidential-asymmetric",
              "--jwks-file", str(jwks), "--scope", "system/*.rs"], store, tmp_path)
    assert r.exit_code == 0, r.output
    from .conftest import backend_token

    assert backend_token(world.client, key, "RS384", client_id="svc2").status_code == 200


def test_keys_rotate(world: World, store: Any, smart_settings: Any) -> None:
    data = Path(smart_settings.data_dir)
    before = world.client.get("/auth/jwks").json()["keys"]
    r = _run(["keys", "rotate"], store, data)
    assert r.exit_code == 0 and "is active" in r.output
    world.app.state.smart.keys._checked = 0  # skip the one-second reload throttle
    after = world.client.get("/auth/jwks").json()["keys"]
    assert len(after) == len(before) + 2  # a new RS256 and a new ES256 key; the old ones still verify
    assert sorted(k["alg"] for k in after) == ["ES256", "ES256", "RS256", "RS256"]
    listed = _run(["keys", "list"], store, data)
    assert "active" in listed.output and "retired" in listed.output


def test_users_add(world: World, store: Any, tmp_path: Path) -> None:
    r = _run(["users", "add", "--username", "nurse", "--role", "clinician", "--password", "-"], store, tmp_path,
             input="long-enough-password\n")
    assert r.exit_code == 0, r.output
    remember("long-enough-password")
    assert "nurse" in _run(["users", "list"], store, tmp_path).output
    r = _run(["users", "add", "--username", "p", "--role", "patient", "--password", "-"], store, tmp_path, input="short\n")
    assert r.exit_code == 2 and "too short" in r.output


def test_demo_users_and_apps(store: Any, smart_settings: Any) -> None:
    from ehrgate.smart.apps import get_app
    from ehrgate.smart.demo import seed_smart_demo
    from ehrgate.smart.users import authenticate

    from .conftest import seed_clinical

    seed_clinical(store)
    text = seed_smart_demo(store, smart_settings)
    assert "doctor" in text and "demo-backend" in text
    assert seed_smart_demo(store, smart_settings)  # idempotent
    with store.reader() as conn:
        doctor = authenticate(conn, "doctor", "ehrgate-demo")
        assert doctor and doctor.fhir_user.startswith("Practitioner/")
        assert get_app(conn, "ehrgate-sample") and get_app(conn, "demo-backend")
    key_file = Path(smart_settings.data_dir) / "demo-backend-key.json"
    assert key_file.stat().st_mode & 0o077 == 0


def test_the_sample_app_follows_the_demo_to_its_new_address(store: Any, smart_settings: Any) -> None:
    """`ehrgate demo --port 0` (or another --port) on the same data dir: the bundled app's redirect
    and launch URLs move with the server, or its launch ends at "return address does not match"."""
    from ehrgate.smart.apps import get_app
    from ehrgate.smart.demo import seed_smart_demo

    seed_smart_demo(store, smart_settings.replace(base_url="", port=41001))
    seed_smart_demo(store, smart_settings.replace(base_url="", port=41002))
    with store.reader() as conn:
        app = get_app(conn, "ehrgate-sample")
        backend = get_app(conn, "demo-backend")
    assert app is not None and backend is not None
    # this server's address first; the earlier one stays, for a demo still running there
    assert app.redirect_uris == ("http://127.0.0.1:41002/sample-app/callback", "http://127.0.0.1:41001/sample-app/callback")
    assert app.launch_url == "http://127.0.0.1:41002/sample-app/launch"
    assert app.client_type == "public" and app.description
    for port in range(41003, 41010):  # the list stays short
        seed_smart_demo(store, smart_settings.replace(base_url="", port=port))
    seed_smart_demo(store, smart_settings.replace(base_url="", port=41005))  # an address it had: moved to the front
    with store.reader() as conn:
        app = get_app(conn, "ehrgate-sample")
    assert app is not None
    assert [u.split(":")[2].split("/")[0] for u in app.redirect_uris] == ["41005", "41009", "41008", "41007", "41006"]
    assert app.launch_url == "http://127.0.0.1:41005/sample-app/launch"


def test_the_demo_names_the_command_the_user_runs(store: Any, smart_settings: Any) -> None:
    from ehrgate.smart.demo import seed_smart_demo

    assert "`.venv/bin/ehrgate token` prints an access token" in seed_smart_demo(store, smart_settings, ".venv/bin/ehrgate")


@pytest.mark.parametrize(("extra", "expected"), [
    (["--scope", "bogus"], "scope 'bogus' is not a SMART scope"),
    (["--scope", "patinet/*.rs"], "scope 'patinet/*.rs' is not a SMART scope"),
    (["--scope", "patient/Nosuch.rs"], "'Nosuch', which is not a FHIR R4 resource type"),
    (["--scope", "system/*.rs"], "a public client cannot use"),
])
def test_apps_add_refuses_scopes_that_would_allow_nothing(store: Any, tmp_path: Path, extra: list[str],
                                                          expected: str) -> None:
    r = _run(["apps", "add", "--client-id", "typo", "--name", "Typo", "--type", "public",
              "--redirect-uri", "http://127.0.0.1:9/cb", *extra], store, tmp_path)
    assert r.exit_code == 2 and expected in r.output, r.output


def test_apps_add_explains_a_jwks_that_is_not_a_key_set(store: Any, tmp_path: Path) -> None:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-384", auto_kid=True)
    for content, expected in ((json.dumps([key.as_dict(private=False)]), '{"keys": [<public JWK>, ...]}'),
                              (json.dumps(key.as_dict(private=False)), '{"keys": [<public JWK>, ...]}'),
                              (json.dumps({"keys": [key.as_dict(private=True)]}), "contains a private key")):
        jwks = tmp_path / "k.json"
        jwks.write_text(content)
        r = _run(["apps", "add", "--client-id", "etl", "--name", "ETL", "--type", "confidential-asymmetric",
                  "--jwks-file", str(jwks), "--scope", "system/*.rs"], store, tmp_path)
        assert r.exit_code == 2 and expected in r.output and "list indices" not in r.output, r.output

"""Offboarding and password changes (``ehrgate users remove | set-password``) against a running
server: who was signed in is signed out, the apps they authorized lose access (online only, or
offline too), and a removed user can sign in nowhere - web pages or the engine admin API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ehrgate.smart import users as U

from .conftest import PASSWORD, World, bearer, remember, sign_in, standalone_tokens
from .test_cli import _run

NEW_PASSWORD = "a-new-long-password"


@pytest.fixture
def smart_settings(settings: Any) -> Any:
    # the server re-reads a grant at every request: a revocation by the CLI (another process) shows at once
    return settings.replace(auth_required=True, revocation_check_seconds=0)


def _refresh(world: World, token: str) -> int:
    return world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                  "client_id": "public-app"}).status_code


def _reads(world: World, token: str) -> int:
    return world.client.get(f"/fhir/Patient/{world.patient}", headers=bearer(token)).status_code


def test_set_password_signs_out_and_ends_online_access(world: World, store: Any, tmp_path: Path) -> None:
    remember(NEW_PASSWORD)
    online = standalone_tokens(world, user="ada", scope="launch/patient openid fhirUser patient/*.rs")
    offline = standalone_tokens(world, user="ada")  # offline_access: outlives the sign-in
    assert world.client.get("/auth/apps").status_code == 200  # signed in
    assert _reads(world, online["access_token"]) == 200 and _reads(world, offline["access_token"]) == 200

    r = _run(["users", "set-password", "ada", "--password", "-"], store, tmp_path, input=NEW_PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "Password of ada changed (1 sign-in ended, 1 app grant revoked)."
    assert NEW_PASSWORD not in r.output

    assert world.client.get("/auth/apps").status_code == 303  # the browser's session ended: sign in again
    assert _reads(world, online["access_token"]) == 401
    assert _reads(world, offline["access_token"]) == 200 and _refresh(world, offline["refresh_token"]) == 200
    with store.reader() as conn:
        assert U.authenticate(conn, "ada", PASSWORD) is None and U.authenticate(conn, "ada", NEW_PASSWORD)

    # --revoke-apps: offline access ends too
    r = _run(["users", "set-password", "ada", "--password", "-", "--revoke-apps"], store, tmp_path,
             input=PASSWORD + "\n")
    assert r.exit_code == 0 and "1 app grant revoked" in r.output, r.output
    assert _reads(world, offline["access_token"]) == 401 and _refresh(world, offline["refresh_token"]) in (400, 401)

    short = _run(["users", "set-password", "ada", "--password", "-"], store, tmp_path, input="short\n")
    assert short.exit_code == 2 and "too short" in short.output
    nobody = _run(["users", "set-password", "nobody", "--password", "-"], store, tmp_path, input=NEW_PASSWORD + "\n")
    assert nobody.exit_code == 2 and "No user named 'nobody'; see `ehrgate users list`." in nobody.output


def test_remove_ends_everything_the_user_had(world: World, store: Any, tmp_path: Path) -> None:
    offline = standalone_tokens(world, user="ada")
    r = _run(["users", "remove", "ada"], store, tmp_path)
    assert r.exit_code == 0 and r.output.strip() == "Removed patient ada (1 sign-in ended, 1 app grant revoked).", \
        r.output
    assert _reads(world, offline["access_token"]) == 401 and _refresh(world, offline["refresh_token"]) in (400, 401)
    assert world.client.get("/auth/apps").status_code == 303
    page = sign_in(world.client, "ada")
    assert page.status_code != 303 and "The username or password is not right" in page.text
    assert "ada" not in {u.username for u in _users(store)}
    # the Patient record stays
    token = standalone_tokens(world, user="doctor")["access_token"]
    assert _reads(world, token) == 200
    again = _run(["users", "remove", "ada"], store, tmp_path)
    assert again.exit_code == 2 and "No user named 'ada'" in again.output


def test_a_removed_engine_user_is_refused_by_the_admin_api(world: World, store: Any, tmp_path: Path) -> None:
    """The engine admin API checks HTTP Basic credentials through ``app._EngineUsers`` (the server's
    wiring): a removed operator's password stops working at once."""
    import asyncio

    from ehrgate.app import _EngineUsers

    directory = _EngineUsers(store)
    r = _run(["users", "add", "--username", "ops", "--role", "operator", "--password", "-"], store, tmp_path,
             input=NEW_PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert asyncio.run(directory.role_of("ops", NEW_PASSWORD)) == "operator"
    removed = _run(["users", "remove", "ops"], store, tmp_path)
    assert removed.stdout.strip() == "Removed operator ops."
    assert asyncio.run(directory.role_of("ops", NEW_PASSWORD)) is None
    # ops was not the last engine user (the world has an admin): no warning
    assert "Note:" not in removed.output
    last = _run(["users", "remove", "admin"], store, tmp_path)
    assert last.exit_code == 0 and "Note: no user with the admin, operator or viewer role is left" in last.stderr
    assert "without a sign-in" in last.stderr


def _users(store: Any) -> list[U.User]:
    with store.reader() as conn:
        return U.list_users(conn)


def test_password_guessing_on_the_sign_in_page_is_slowed(world: World, store: Any) -> None:
    """Ten failed sign-ins a minute per address; the eleventh try - even with the right password - is
    refused with 429 and Retry-After, without a password check."""
    for _ in range(10):
        r = sign_in(world.client, "ada", password="wrong-password-x")
        assert r.status_code == 401 and "not right" in r.text
    r = sign_in(world.client, "ada")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "Too many failed sign-ins from this address" in r.text and 'role="alert"' in r.text
    assert 'value="ada"' in r.text  # the username is kept for the next try


def test_guesses_sent_at_once_are_all_counted(world: World, store: Any) -> None:
    """The attempt is counted before its password is checked: of 30 guesses sent together, 10 are
    checked (401) and 20 refused (429), whether the checks run inline (SQLite) or in worker threads
    (PostgreSQL)."""
    import asyncio

    import httpx

    from .conftest import csrf_of

    async def body() -> list[int]:
        transport = httpx.ASGITransport(app=world.app, client=("203.0.113.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            form = await http.get("/auth/login")
            data = {"csrf": csrf_of(form.text), "username": "ada", "password": "wrong-password-y", "req": "",
                    "next": ""}
            answers = await asyncio.gather(*(http.post("/auth/login", data=data) for _ in range(30)))
        return [r.status_code for r in answers]

    codes = asyncio.run(body())
    assert codes.count(401) == 10 and codes.count(429) == 20, codes


def test_account_changes_from_the_cli_are_audit_events(world: World, store: Any, tmp_path: Path) -> None:
    from .conftest import backend_token

    remember(NEW_PASSWORD)
    assert _run(["users", "add", "--username", "nurse1", "--role", "clinician", "--password", "-"], store, tmp_path,
                input=NEW_PASSWORD + "\n").exit_code == 0
    assert _run(["users", "set-password", "nurse1", "--password", "-"], store, tmp_path,
                input=NEW_PASSWORD + "-2\n").exit_code == 0
    assert _run(["users", "remove", "nurse1"], store, tmp_path).exit_code == 0
    token = backend_token(world.client, world.keys["RS384"]).json()["access_token"]
    found = world.client.get("/fhir/AuditEvent?subtype=urn:ehrgate:audit-subtype|user-account",
                             headers=bearer(token)).json()
    said = sorted(e["resource"]["outcomeDesc"] for e in found.get("entry", []))
    assert [d.split(" by cli:")[0] for d in said] == [
        "Password of nurse1 changed", "User nurse1 (clinician) removed", "User nurse1 added with the role clinician"]
    assert all(d.endswith("(cli).") for d in said) and not any(NEW_PASSWORD in d for d in said)

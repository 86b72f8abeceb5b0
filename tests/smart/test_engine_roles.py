"""The engine's roles among EHRGate's users: ``ehrgate users add --role operator|viewer``, and
operators and viewers (staff of the interface engine, not clinicians) cannot reach records through
SMART apps or the EHR simulator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ehrgate.smart import users as U

from .conftest import PASSWORD, World, authorize_params, req_of, sign_in
from .test_cli import _run


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_engine_roles_cannot_authorize_apps_or_open_charts(world: World, store: Any, role: str) -> None:
    with store.writer() as w:
        U.add_user(w.conn, username=f"{role}1", password=PASSWORD, role=role, now=int(time.time()))
    c = world.client
    auth, _ = authorize_params()
    first = c.get("/auth/authorize", params=auth)
    signed = sign_in(c, f"{role}1", req=req_of(first.headers["location"]))
    page = c.get(signed.headers["location"])
    assert page.status_code == 403 and "cannot authorize apps" in page.text and f"engine {role}" in page.text
    assert "code=" not in page.headers.get("location", "")
    chart = c.get("/ehr")
    assert chart.status_code == 403 and "console (/console) and admin API" in chart.text


def test_users_add_takes_the_engine_roles(world: World, store: Any, tmp_path: Path) -> None:
    from ehrgate.cli.keys import add_user_cmd

    role_option = next(p for p in add_user_cmd.params if p.name == "role")
    assert tuple(role_option.type.choices) == U.ROLES  # type: ignore[attr-defined]
    for role in ("operator", "viewer"):
        r = _run(["users", "add", "--username", f"cli-{role}", "--role", role, "--password", "-"], store,
                 tmp_path, input=PASSWORD + "\n")
        assert r.exit_code == 0 and f"Added {role} cli-{role}." in r.output, r.output
    listed = _run(["users", "list", "--json"], store, tmp_path)
    roles = {json.loads(x)["username"]: json.loads(x)["role"] for x in listed.stdout.splitlines()}
    assert roles["cli-operator"] == "operator" and roles["cli-viewer"] == "viewer"
    assert PASSWORD not in listed.output
    bad = _run(["users", "add", "--username", "x", "--role", "superuser", "--password", "-"], store, tmp_path,
               input=PASSWORD + "\n")
    assert bad.exit_code == 2 and "operator" in bad.output and "viewer" in bad.output
    with store.reader() as conn:
        assert U.has_role(conn, ("operator",)) and not U.has_role(conn, ("nobody",))

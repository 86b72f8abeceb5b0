"""The engine admin API's roles (viewer, operator, admin, admin_token, loopback) and its audit trail,
with EHRGate's real users on SQLite and PostgreSQL (``app._EngineUsers``: the wiring the server uses)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ehrgate.app import _EngineUsers
from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.engine.access import ENGINE_ROLES, PERMISSIONS, Actor
from ehrgate.engine.audit import AuditQuery
from ehrgate.engine.http import OPENAPI, engine_routes
from ehrgate.fhir.store.service import Store
from ehrgate.smart.users import ROLES, add_user

from .conftest import hl7, run
from .helpers import running, until

PASSWORD = "correct horse battery"
TOKEN = "engine-admin-token-0123456789"


def _users(store: Store, *roles: str) -> None:
    with store.writer() as w:
        for role in roles:
            add_user(w.conn, username=f"{role}1", password=PASSWORD, role=role, now=int(time.time()))


def _client(engine: Any, store: Store, *, token: str = "", host: str = "127.0.0.1",
            auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    app = Starlette(routes=engine_routes(engine, token, _EngineUsers(store)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5555)),
                             base_url="http://testserver", auth=auth)


def _chan(tmp_path: Path) -> dict[str, Any]:
    return {"web": {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}}


def test_engine_roles_are_user_roles() -> None:
    assert set(ENGINE_ROLES) <= set(ROLES)
    assert {r for roles in PERMISSIONS.values() for r in roles} == set(ENGINE_ROLES)


def test_each_role_may_do_its_calls_and_is_refused_the_rest(messages: MessageStore, store: Store,
                                                            tmp_path: Path) -> None:
    _users(store, "viewer", "operator", "admin", "clinician")

    async def body() -> None:
        async with running(messages, _chan(tmp_path)) as eng:
            async with _client(eng, store) as http:
                assert (await http.post("/channels/web/messages", content=hl7("R1"))).status_code == 200
            await until(lambda: messages.search(SearchQuery(status="SENT")) != [])
            mid = messages.search(SearchQuery())[0]["id"]
            calls = {
                "read": [("GET", "/admin/channels", None), ("GET", "/admin/channels/web", None),
                         ("GET", "/admin/messages", None), ("GET", f"/admin/messages/{mid}", None)],
                "control": [("POST", "/admin/channels/web/pause", None), ("POST", "/admin/channels/web/resume", None)],
                "reprocess": [("POST", "/admin/messages/reprocess", {"ids": [mid]})],
                "prune": [("POST", "/admin/messages/prune", {"older_than": "30d"})],
                "audit": [("GET", "/admin/audit", None)],
            }
            for role in ("viewer", "operator", "admin", "clinician"):
                async with _client(eng, store, auth=(f"{role}1", PASSWORD)) as http:
                    for permission, requests in calls.items():
                        for method, path, body_json in requests:
                            r = await http.request(method, path, json=body_json)
                            if role in PERMISSIONS[permission]:
                                assert r.status_code == 200, (role, path, r.text)
                            else:
                                assert r.status_code == 403, (role, path, r.text)
                                text = r.json()["error"]
                                assert "needs the 'admin'" in text and f"'{role}1' has the role '{role}'" in text
                                if permission in ("control", "reprocess"):
                                    assert "'operator'" in text  # the sentence names every role that may
                            if role == "operator" and path.endswith("/reprocess"):
                                # let the reprocessed message finish before the admin asks again
                                await until(lambda: messages.statuses([mid]).get(mid) == "SENT", what="done")
            async with _client(eng, store, auth=("admin1", "wrong password")) as http:
                r = await http.get("/admin/channels")
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith('Basic realm="EHRGate')
            async with _client(eng, store) as http:  # loopback, but users with engine roles exist
                r = await http.get("/admin/channels")
                assert r.status_code == 401 and "www-authenticate" in r.headers and "Basic" in r.json()["error"]
                r = await http.get("/admin/channels", headers={"authorization": "Bearer anything"})
                assert r.status_code == 401 and "no admin_token" in r.json()["error"]
                r = await http.get("/admin/channels", headers={"authorization": "Basic %%%"})
                assert r.status_code == 401 and "base64" in r.json()["error"]
                assert (await http.get("/admin/openapi.json")).status_code == 200  # the description is public
    run(body())


def test_the_audit_trail_records_api_actions_and_refusals(messages: MessageStore, store: Store,
                                                          tmp_path: Path) -> None:
    _users(store, "viewer", "operator", "admin")

    async def body() -> None:
        async with running(messages, _chan(tmp_path)) as eng:
            async with _client(eng, store, token=TOKEN) as http:
                for cid in ("A1", "A2"):
                    await http.post("/channels/web/messages", content=hl7(cid))
            await until(lambda: len(messages.search(SearchQuery(status="SENT"))) == 2)
            ids = sorted(r["id"] for r in messages.search(SearchQuery()))
            async with _client(eng, store, token=TOKEN, auth=("operator1", PASSWORD)) as op:
                assert (await op.post("/admin/channels/web/pause")).status_code == 200
                assert (await op.post("/admin/channels/web/resume")).status_code == 200
                assert (await op.post("/admin/channels/ghost/pause")).status_code == 404
                r = await op.post("/admin/messages/reprocess", json={"ids": [*ids, 999999]})
                assert r.json()["reprocessed"] == ids and len(r.json()["skipped"]) == 1
                assert (await op.post("/admin/messages/prune", json={"older_than": "1d"})).status_code == 403
            async with _client(eng, store, token=TOKEN, auth=("viewer1", PASSWORD)) as viewer:
                r = await viewer.post("/admin/channels/web/undeploy")
                assert r.status_code == 403 and r.json()["error"] == (
                    "Deploying, undeploying, pausing and resuming channels needs the 'admin' or 'operator' role; "
                    "'viewer1' has the role 'viewer'.")
            async with _client(eng, store, token=TOKEN, host="10.9.8.7") as remote:
                bearer = {"authorization": f"Bearer {TOKEN}"}
                assert (await remote.get("/admin/channels", headers=bearer)).status_code == 200
                r = await remote.post("/admin/messages/prune", json={"older_than": "7d", "channel": "web"},
                                      headers=bearer)
                assert r.json() == {"pruned": 0, "older_than": "7d", "channel": "web"}
                assert (await remote.post("/admin/messages/prune", json={"older_than": "soon"},
                                          headers=bearer)).status_code == 400
                r = await remote.get("/admin/channels", headers={"authorization": "Bearer wrong"})
                assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
            async with _client(eng, store, token=TOKEN, auth=("admin1", PASSWORD)) as admin:
                rows = (await admin.get("/admin/audit")).json()["audit"]
                found = [(r["actor"], r["via"], r["action"], r["target"], r["outcome"]) for r in reversed(rows)]
                assert found == [
                    ("operator1", "basic", "pause", "web", "success"),
                    ("operator1", "basic", "resume", "web", "success"),
                    ("operator1", "basic", "pause", "ghost", "failure"),
                    ("operator1", "basic", "reprocess", "messages", "partial"),
                    ("operator1", "basic", "prune", "messages", "denied"),
                    ("viewer1", "basic", "undeploy", "web", "denied"),
                    ("admin_token", "admin_token", "prune", "web", "success"),
                ]
                by_action = {r["action"]: r for r in rows if r["outcome"] in ("success", "partial")}
                assert by_action["reprocess"]["detail"] == {"count": 2, "ids": ids, "requested": 3, "skipped": 1}
                assert by_action["prune"]["detail"]["count"] == 0 and by_action["prune"]["detail"]["older_than"] == "7d"
                assert by_action["pause"]["detail"] == {"state": {"deployed": True, "paused": True, "generation": 0}}
                assert by_action["prune"]["peer"] == "10.9.8.7" and by_action["pause"]["role"] == "operator"
                assert all(r["at"] > 0 for r in rows)
                # filters: actor, action, since; and only admins read the trail
                r = await admin.get("/admin/audit", params={"actor": "viewer1"})
                assert [x["action"] for x in r.json()["audit"]] == ["undeploy"]
                r = await admin.get("/admin/audit", params={"action": "pause", "since": "1h"})
                assert [x["target"] for x in r.json()["audit"]] == ["ghost", "web"]
                assert (await admin.get("/admin/audit", params={"since": "2999-01-01"})).json()["audit"] == []
                assert (await admin.get("/admin/audit", params={"action": "explode"})).status_code == 400
                assert (await admin.get("/admin/audit", params={"limit": "many"})).status_code == 400
            text = json.dumps(rows)
            for secret in (PASSWORD, TOKEN, "MSH|", "Everywoman"):  # no credentials, no message content
                assert secret not in text
    run(body())


def test_loopback_answers_without_credentials_only_until_someone_can_sign_in(
        messages: MessageStore, store: Store, tmp_path: Path) -> None:
    async def body() -> None:
        async with running(messages, _chan(tmp_path)) as eng:
            async with _client(eng, store) as http:
                assert (await http.post("/admin/channels/web/pause")).status_code == 200
            async with _client(eng, store, host="10.1.2.3") as http:
                r = await http.get("/admin/channels")
                assert r.status_code == 401 and "ehrgate users add --role operator" in r.json()["error"]
            async with _client(eng, store, token=TOKEN) as http:  # an admin_token closes the open door
                assert (await http.get("/admin/channels")).status_code == 401
            _users(store, "clinician")  # clinicians cannot use the engine: the door stays open
            async with _client(eng, store) as http:
                assert (await http.get("/admin/channels")).status_code == 200
            _users(store, "viewer")
            async with _client(eng, store) as http:
                r = await http.get("/admin/channels")
                assert r.status_code == 401 and "loopback too" in r.json()["error"]
            rows = messages.audit_log(AuditQuery())
            assert [(r["actor"], r["via"], r["role"], r["action"]) for r in rows] == [
                ("loopback", "loopback", "admin", "pause")]
    run(body())


def test_openapi_names_the_roles_of_each_operation() -> None:
    paths = OPENAPI["paths"]
    assert paths["/admin/audit"]["get"]["x-ehrgate-roles"] == ["admin"]
    assert paths["/admin/messages/prune"]["post"]["x-ehrgate-roles"] == ["admin"]
    assert paths["/admin/messages/reprocess"]["post"]["x-ehrgate-roles"] == ["admin", "operator"]
    assert paths["/admin/channels"]["get"]["x-ehrgate-roles"] == ["admin", "operator", "viewer"]
    assert "403" in paths["/admin/channels/{name}/{action}"]["post"]["responses"]
    assert {"basic", "bearer"} == set(OPENAPI["components"]["securitySchemes"])


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)
def test_an_audit_row_commits_with_the_state_change(messages: MessageStore) -> None:
    who = Actor("cli:alice", "", "cli", "host1")
    state = messages.set_channel_state("web", paused=True, actor=who, action="pause")
    assert state["paused"] is True
    [row] = messages.audit_log(AuditQuery(actor="cli:alice"))
    assert row["action"] == "pause" and row["detail"]["state"]["paused"] is True and row["peer"] == "host1"
    with pytest.raises(ValueError, match="audit: action 'explode'"):
        messages.set_channel_state("web", paused=False, actor=who, action="explode")
    assert messages.channel_states()["web"]["paused"] is True  # the failed audit row rolled the change back


def test_a_prune_records_its_criteria_and_count_and_keeps_the_trail(messages: MessageStore) -> None:
    import sqlalchemy as sa

    from ehrgate.engine.store import Incoming

    messages.receive([Incoming("web", hl7(f"P{i}"), "test", "ADT^A01", f"P{i}", "LAB^FAC") for i in range(3)])
    with messages.write() as conn:
        conn.execute(sa.text("UPDATE eng_message SET status = 'SENT', received_at = 1000"))
        conn.execute(sa.text("DELETE FROM eng_queue"))
    who = Actor("admin1", "admin", "basic", "10.0.0.1", "req-1")
    messages.set_channel_state("web", paused=True, actor=who, action="pause")
    assert messages.prune(None, 2000, batch=2, actor=who, criteria={"older_than": "30d"}) == 3
    rows = messages.audit_log(AuditQuery(action="prune"))
    assert [(r["target"], r["outcome"], r["request_id"]) for r in rows] == [("messages", "success", "req-1")]
    assert rows[0]["detail"] == {"channel": None, "count": 3, "older_than": "30d", "received_before": 2000}
    assert len(messages.audit_log(AuditQuery())) == 2  # pruning messages never prunes the trail
    assert messages.audit_log(AuditQuery(target="web"))[0]["action"] == "pause"


def test_password_guessing_is_slowed_and_logged(messages: MessageStore, store: Store, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Ten failed Basic sign-ins a minute per client address; then 429 with Retry-After, even with
    the right password, without checking it; another address is not held up. Each failure is logged
    with the username and address, never the password."""
    from ehrgate.engine.access import SIGN_IN_FAILURES

    _users(store, "operator")

    async def body() -> None:
        async with running(messages, _chan(tmp_path)) as eng:
            app = Starlette(routes=engine_routes(eng, "", _EngineUsers(store)))  # one server, two clients

            def client(host: str, password: str) -> httpx.AsyncClient:
                return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5555)),
                                         base_url="http://testserver", auth=("operator1", password))

            async with client("10.0.0.9", "guess-number-x") as http:
                for _ in range(SIGN_IN_FAILURES):
                    assert (await http.get("/admin/channels")).status_code == 401
            async with client("10.0.0.9", PASSWORD) as http:
                r = await http.get("/admin/channels")
                assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
                assert "Too many failed sign-ins" in r.json()["error"]
            async with client("10.0.0.8", PASSWORD) as http:
                assert (await http.get("/admin/channels")).status_code == 200
            # guesses sent at once are counted before their passwords are checked: ten checked, no more
            async with client("2001:db8::1", "guess-number-y") as http:
                codes = [r.status_code for r in await asyncio.gather(*(http.get("/admin/channels") for _ in range(30)))]
            assert codes.count(401) == SIGN_IN_FAILURES and codes.count(429) == 30 - SIGN_IN_FAILURES
            async with client("2001:db8::2", PASSWORD) as http:  # the same /64: the same limit
                assert (await http.get("/admin/channels")).status_code == 429

    with caplog.at_level("WARNING", logger="ehrgate.engine.access"):
        run(body())
    failed = [r.getMessage() for r in caplog.records if "failed sign-in" in r.getMessage()]
    assert len(failed) == 2 * SIGN_IN_FAILURES
    assert "'operator1' from 10.0.0.9" in failed[0] and not any("guess-number" in m for m in failed)

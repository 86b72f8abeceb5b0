"""AuditEvents for launches, decisions and token issue/refresh/revoke: written through the store,
searchable, and tied together by the grant id."""

from __future__ import annotations

import base64
import json
from typing import Any

from .conftest import World, authorize_code, backend_token, bearer, ehr_launch_handle, exchange


def _search(world: World, query: str) -> list[dict]:
    token = backend_token(world.client, world.keys["RS384"], "RS384", scope="system/*.rs").json()["access_token"]
    r = world.client.get("/fhir/AuditEvent?" + query, headers=bearer(token))
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _subtypes(events: list[dict]) -> list[str]:
    return sorted(e["subtype"][0]["code"] for e in events)


def test_a_launch_is_audited_end_to_end(world: World) -> None:
    handle = ehr_launch_handle(world)
    got, verifier, _ = authorize_code(world, scope="launch openid fhirUser offline_access patient/*.rs", launch=handle)
    body = exchange(world.client, got["code"], verifier).json()
    refreshed = world.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}).json()
    from .conftest import remember

    remember(refreshed["access_token"], refreshed["refresh_token"])
    world.client.post("/auth/revoke", data={"token": refreshed["refresh_token"]})
    grant = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))["grant"]
    events = _search(world, f"entity-name={grant}")
    assert _subtypes(events) == ["authorize", "token-issue", "token-refresh", "token-revoke"]
    for event in events:
        assert event["outcome"] == "0"
        assert any(a["who"].get("identifier", {}).get("value") == "public-app" for a in event["agent"])
    launches = _search(world, f"subtype=urn:ehrgate:audit-subtype|launch&patient=Patient/{world.patient}")
    assert len(launches) == 2  # started from the chart, accepted at authorize
    doctor = f"Practitioner/{world.practitioner}"
    assert all(any(a["who"].get("reference") == doctor for a in e["agent"]) for e in launches)
    assert _search(world, "subtype=urn:ehrgate:audit-subtype|login")


def test_failures_are_audited(world: World) -> None:
    from .conftest import sign_in

    sign_in(world.client, "ada", "wrong-password")
    failed = _search(world, "subtype=urn:ehrgate:audit-subtype|login&outcome=4")
    assert failed and "wrong-password" not in json.dumps(failed)


def test_the_last_calls_are_written_when_the_app_stops(store: Any, smart_settings: Any, world: World) -> None:
    """The access audit writes about once a second; an app that stops (its lifespan ends, as a
    TestClient's does and uvicorn's would) writes what is still queued before the store goes."""
    from starlette.testclient import TestClient

    from ehrgate.app import create_app

    app = create_app(smart_settings, store)
    app.state.fhir.audit.interval = 3600.0  # the writer thread would not flush during this test
    with TestClient(app) as c:
        token = backend_token(c, world.keys["RS384"], "RS384", scope="system/*.rs").json()["access_token"]
        assert c.get(f"/fhir/Patient/{world.patient}", headers=bearer(token)).status_code == 200
    queue = app.state.fhir.audit._queue
    assert not queue  # written, not waiting for the next flush
    with store.reader() as conn:
        raw = [bytes(r[0]) for r in conn.exec_driver_sql(
            "SELECT v.raw FROM resource_version v JOIN resource r ON r.pk = v.res_pk AND r.version = v.version "
            "WHERE r.res_type = 'AuditEvent'")]
    reads = [e for e in map(json.loads, raw) if e.get("subtype", [{}])[0].get("code") == "read"]
    assert any(f"Patient/{world.patient}" == ent.get("what", {}).get("reference") for e in reads for ent in e["entity"])

"""Bulk export tests: a real app (create_app) on a real store (SQLite and PostgreSQL), seeded with
a few patients, their data, a Practitioner, a Group and Provenance.

Access is tested with fixed ``Access`` policies keyed by bearer token (the SMART package supplies
the real policy from tokens); without an Authorization header the test policy answers 401 like the
real one does, unless the test opens the API (auth off).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from ehrgate.app import create_app
from ehrgate.bulk.service import BulkExports
from ehrgate.fhir.access import Access
from ehrgate.fhir.errors import Unauthorized
from ehrgate.fhir.store.service import Store

BASE = "http://testserver"
FJ = {"Content-Type": "application/fhir+json"}
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
VITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}

SYSTEM = Access(client_id="backend", subject="backend")
"""system/*.read: every type, no compartment."""


def patient_access(patient: str, client: str = "patient-app") -> Access:
    return Access(allowed=lambda kind, res_type: kind in "rs", patient=patient, client_id=client, subject=f"Patient/{patient}")


def types_access(*types: str, client: str = "narrow") -> Access:
    return Access(
        allowed=lambda kind, res_type: kind in "rs" and res_type in types,
        missing=lambda kind, res_type: f"needs system/{res_type}.{kind}",
        client_id=client, subject=client,
    )


def obs(oid: str, patient: str, category: dict[str, Any] = LAB, code: str = "2345-7") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "category": [category],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"}, "valueQuantity": {"value": 1.50, "unit": "mg"}}


def group(gid: str, members: list[str], actual: bool = True) -> dict[str, Any]:
    return {"resourceType": "Group", "id": gid, "type": "person", "actual": actual,
            "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members]}


def seed(store: Store) -> None:
    """p1, p2, p3 with observations and a condition each; a practitioner; Group g1 = {p1, p2};
    two Provenance for o-p1-lab (the later one is the latest)."""
    resources: list[dict[str, Any]] = [{"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Doc"}]}]
    for p in ("p1", "p2", "p3"):
        resources += [
            {"resourceType": "Patient", "id": p, "name": [{"family": f"Fam{p}", "given": ["Ann"]}], "gender": "female",
             "birthDate": "1980-01-01"},
            obs(f"o-{p}-lab", p, LAB),
            obs(f"o-{p}-vital", p, VITAL, code="8867-4"),
            {"resourceType": "Condition", "id": f"c-{p}", "subject": {"reference": f"Patient/{p}"},
             "code": {"text": "Asthma"}},
        ]
    resources.append(group("g1", ["p1", "p2"]))
    with store.writer() as w:
        for r in resources:
            w.update(r["resourceType"], r["id"], r)
    for i in (1, 2):
        time.sleep(0.002)
        with store.writer() as w:
            w.update("Provenance", f"prov{i}", {
                "resourceType": "Provenance", "id": f"prov{i}", "recorded": f"2024-01-0{i}T00:00:00Z",
                "target": [{"reference": "Observation/o-p1-lab"}],
                "agent": [{"who": {"reference": "Practitioner/doc"}}],
            })


@dataclass
class Bulk:
    """The app under test and helpers to drive exports through it."""

    client: TestClient
    app: Any
    store: Store

    @property
    def bulk(self) -> BulkExports:
        return self.app.state.bulk  # type: ignore[no-any-return]

    def use(self, tokens: dict[str, Access], open_access: Access | None = None) -> None:
        """Answer requests with the ``Access`` of their bearer token; no token → 401, unless
        ``open_access`` (auth off) is given."""

        async def policy(request: Any) -> Access:
            header = request.headers.get("authorization", "")
            if not header:
                if open_access is not None:
                    return open_access
                raise Unauthorized("This FHIR server needs an access token.")
            access = tokens.get(header.removeprefix("Bearer ").strip())
            if access is None:
                raise Unauthorized("The access token is not valid.")
            return access

        self.app.state.fhir.policy = policy

    def kickoff(self, url: str, token: str | None = None, method: str = "GET", **kw: Any) -> Any:
        headers = {**ASYNC, **kw.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, url, headers=headers, **kw)

    def status_path(self, response: Any) -> str:
        assert response.status_code == 202, response.text
        return str(response.headers["content-location"]).removeprefix(BASE)

    def run(self) -> None:
        """Run every waiting job to its end in this thread (the worker's ``run_once``)."""
        while self.bulk.worker.run_once():
            pass

    def export(self, url: str, token: str | None = None, **kw: Any) -> dict[str, Any]:
        """Kick off, run, poll: the manifest."""
        path = self.status_path(self.kickoff(url, token, **kw))
        self.run()
        r = self.client.get(path, headers=_auth(token))
        assert r.status_code == 200, r.text
        return dict(r.json())

    def download(self, url: str, token: str | None = None) -> list[dict[str, Any]]:
        r = self.client.get(url.removeprefix(BASE), headers=_auth(token))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        return [orjson.loads(line) for line in r.content.splitlines()]

    def resources(self, manifest: dict[str, Any], token: str | None = None) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in manifest["output"]:
            out.setdefault(entry["type"], []).extend(self.download(entry["url"], token))
        return out

    def ids(self, manifest: dict[str, Any], token: str | None = None) -> dict[str, set[str]]:
        return {t: {r["id"] for r in rs} for t, rs in self.resources(manifest, token).items()}


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def make_bulk(store: Store, settings: Any) -> Iterator[Callable[..., Bulk]]:
    made: list[Bulk] = []

    def make(**overrides: Any) -> Bulk:
        s = settings.replace(auth_required=False, **overrides)
        app = create_app(s, store)
        client = TestClient(app, raise_server_exceptions=False)
        b = Bulk(client, app, store)
        made.append(b)
        return b

    yield make
    for b in made:
        b.bulk.worker.stop(timeout=10)
        b.client.close()


@pytest.fixture
def bulk(make_bulk: Callable[..., Bulk]) -> Bulk:
    b = make_bulk()
    seed(b.store)
    b.use({"system": SYSTEM, "p1": patient_access("p1"), "p3": patient_access("p3"),
           "other-backend": Access(client_id="other", subject="other")})
    return b

"""The access seam: a patient-scoped caller cannot see or touch another patient's data by any route.

Uses a fixed ``Access`` as the policy (the SMART package supplies the real one from tokens).
"""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.access import Access

FJ = {"Content-Type": "application/fhir+json"}
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
VITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}


def _obs(oid: str, patient: str, category: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "category": [category],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": f"Patient/{patient}"}}


@pytest.fixture
def seeded(client: Any) -> Any:
    for res in (
        {"resourceType": "Patient", "id": "me", "name": [{"family": "Mine"}]},
        {"resourceType": "Patient", "id": "other", "name": [{"family": "Smith"}]},
        {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Doc"}]},
        _obs("my-lab", "me", LAB), _obs("my-vital", "me", VITAL), _obs("their-lab", "other", LAB),
    ):
        assert client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=FJ).status_code == 201
    return client


def _use(client: Any, access: Access) -> None:
    async def policy(request: Any) -> Access:
        return access

    client.app.state.fhir.policy = policy


def _patient_access(kinds: str = "rs", filters: dict[str, tuple[str, ...]] | None = None) -> Access:
    return Access(
        allowed=lambda kind, res_type: kind in kinds,
        missing=lambda kind, res_type: f"needs patient/{res_type}.{kind}",
        patient="me",
        filters=filters or {},
    )


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] in ("match", "include")}


def test_reads_outside_the_compartment_look_absent(seeded: Any) -> None:
    _use(seeded, _patient_access())
    assert seeded.get("/fhir/Observation/my-lab").status_code == 200
    for url in ("/fhir/Observation/their-lab", "/fhir/Patient/other", "/fhir/Observation/their-lab/_history/1",
                "/fhir/Observation/their-lab/_history", "/fhir/Patient/other/$everything", "/fhir/Patient/other/Observation"):
        r = seeded.get(url)
        assert r.status_code == 404, (url, r.text)
    assert seeded.get("/fhir/Observation/nonexistent").status_code == 404
    # resources outside the patient compartment (a Practitioner) stay readable
    assert seeded.get("/fhir/Practitioner/doc").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "Observation", "Observation?subject=Patient/other", "Observation?patient=other",
        "Observation?subject:Patient.name=smith", "Patient", "Patient?_id=other",
        "Patient?_has:Observation:patient:code=2345-7", "Observation?_id=their-lab",
        "Patient?_id=me&_revinclude=Observation:subject",
        "Observation?_id=my-lab&_include=Observation:subject",
        "Patient/me/Observation",
    ],
)
def test_searches_never_leave_the_compartment(seeded: Any, query: str) -> None:
    _use(seeded, _patient_access())
    r = seeded.get(f"/fhir/{query}")
    assert r.status_code == 200, r.text
    assert not ids(r.json()) & {"other", "their-lab"}


def test_everything_is_the_own_compartment(seeded: Any) -> None:
    _use(seeded, _patient_access())
    b = seeded.get("/fhir/Patient/me/$everything").json()
    assert {e["resource"]["id"] for e in b["entry"]} == {"me", "my-lab", "my-vital"}


def test_history_above_instance_level_is_refused(seeded: Any) -> None:
    _use(seeded, _patient_access())
    assert seeded.get("/fhir/Observation/_history").status_code == 403
    assert seeded.get("/fhir/_history").status_code == 403
    assert seeded.get("/fhir/Observation/my-lab/_history").status_code == 200


def test_missing_scope_is_403_naming_it(seeded: Any) -> None:
    _use(seeded, _patient_access("r"))
    r = seeded.get("/fhir/Observation")
    assert r.status_code == 403
    assert "patient/Observation.s" in r.json()["issue"][0]["diagnostics"]
    assert "www-authenticate" not in r.headers  # RFC 6750 §3.1 challenges only a caller that sent a token
    body = {k: v for k, v in _obs("x", "me", LAB).items() if k != "id"}
    assert seeded.post("/fhir/Observation", json=body, headers=FJ).status_code == 403


def test_a_token_callers_403_carries_the_bearer_challenge(seeded: Any) -> None:
    """RFC 6750 §3.1: insufficient_scope, in the realm the policy names for the caller's token."""
    _use(seeded, Access(allowed=lambda kind, res_type: False, realm="http://testserver/fhir"))
    r = seeded.get("/fhir/Observation")
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == 'Bearer realm="http://testserver/fhir", error="insufficient_scope"'


def test_writes_stay_inside_the_compartment(seeded: Any) -> None:
    _use(seeded, _patient_access("rscud"))
    body = {k: v for k, v in _obs("n", "me", LAB).items() if k != "id"}
    assert seeded.post("/fhir/Observation", json=body, headers=FJ).status_code == 201
    theirs = {**body, "subject": {"reference": "Patient/other"}}
    assert seeded.post("/fhir/Observation", json=theirs, headers=FJ).status_code == 403
    assert seeded.put("/fhir/Observation/their-lab", json=_obs("their-lab", "other", VITAL), headers=FJ).status_code == 404
    assert seeded.delete("/fhir/Observation/their-lab").status_code == 404
    moved = seeded.patch("/fhir/Observation/my-lab", json={"subject": {"reference": "Patient/other"}},
                         headers={"Content-Type": "application/merge-patch+json"})
    assert moved.status_code == 403
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "POST", "url": "Observation"}},
        {"resource": theirs, "request": {"method": "POST", "url": "Observation"}},
    ]}
    assert seeded.post("/fhir", json=tx, headers=FJ).status_code == 403
    cond = seeded.post("/fhir/Observation", json=body, headers={**FJ, "If-None-Exist": "_id=their-lab"})
    assert cond.status_code == 404
    _use(seeded, Access())
    assert seeded.get("/fhir/Observation/their-lab").json()["category"][0] == LAB


def test_v2_query_constrained_scope(seeded: Any) -> None:
    _use(seeded, _patient_access(filters={"Observation": ("category=laboratory",)}))
    b = seeded.get("/fhir/Observation").json()
    assert ids(b) == {"my-lab"}
    assert seeded.get("/fhir/Observation/my-vital").status_code == 404
    assert seeded.get("/fhir/Observation/my-lab").status_code == 200
    ev = seeded.get("/fhir/Patient/me/$everything").json()
    assert "my-vital" not in {e["resource"]["id"] for e in ev["entry"]}


def test_calls_with_a_token_are_audited(seeded: Any) -> None:
    access = Access(subject="Practitioner/doc", client_id="chart-app", grant_id="grant-42", patient="me")
    _use(seeded, access)
    assert seeded.get("/fhir/Observation/my-lab", headers={"X-Request-Id": "req-77"}).status_code == 200
    assert seeded.get("/fhir/Observation/my-lab", headers={"X-Request-Id": "req-78"}).status_code == 200
    assert seeded.get("/fhir/Observation?code=2345-7").status_code == 200
    assert seeded.get("/fhir/Observation/their-lab").status_code == 404
    assert seeded.app.state.fhir.audit.flush() == 4
    _use(seeded, Access())
    events = [e["resource"] for e in seeded.get("/fhir/AuditEvent?_count=10").json()["entry"]]
    # one event per interaction and outcome: two reads, one search, one failed read
    assert sorted((e["subtype"][0]["code"], e["outcome"]) for e in events) == [
        ("read", "0"), ("read", "4"), ("search-type", "0")]
    read = next(e for e in events if e["subtype"][0]["code"] == "read" and e["outcome"] == "0")
    assert read["agent"][0]["who"] == {"reference": "Practitioner/doc"}
    assert read["agent"][1]["who"] == {"display": "chart-app"}
    assert {"what": {"reference": "Patient/me"}, "role": {
        "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}} in read["entity"]
    assert any(x.get("name") == "grant-42" for x in read["entity"])
    lab = next(x for x in read["entity"] if x.get("what") == {"reference": "Observation/my-lab"})
    assert [d["type"] for d in lab["detail"]] == ["calls"]
    calls = [line.split(" ") for line in lab["detail"][0]["valueString"].splitlines()]
    assert [c[1] for c in calls] == ["req-77", "req-78"] and all(c[0].startswith("20") for c in calls)
    assert read["period"]["start"] <= read["period"]["end"] == read["recorded"]
    search = next(e for e in events if e["subtype"][0]["code"] == "search-type")
    assert search["entity"][-1]["detail"][0]["valueString"].endswith(" code=2345-7")
    # searchable by patient, agent, entity, grant and date
    for query in ("patient=Patient/me", "agent=Practitioner/doc", "entity=Observation/my-lab", "entity-name=grant-42",
                  f"date=ge{read['period']['start'][:10]}"):
        found = seeded.get(f"/fhir/AuditEvent?{query}").json().get("entry", [])
        assert read["id"] in {e["resource"]["id"] for e in found}, query
    # calls without a token (auth off) are not audited
    seeded.get("/fhir/Observation/my-lab")
    assert seeded.app.state.fhir.audit.flush() == 0

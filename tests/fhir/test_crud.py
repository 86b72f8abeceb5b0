"""create/read/vread/update/patch/delete and versioning, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import BASE

FJ = {"Content-Type": "application/fhir+json"}


def patient(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
        "name": [{"family": "Núñez", "given": ["Zoë"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
    }
    body.update(extra)
    return body


def test_create_read_and_headers(client: Any) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers=FJ)
    assert r.status_code == 201, r.text
    created = r.json()
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"
    assert r.headers["location"] == f"{BASE}/Patient/{pid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.headers["x-request-id"]
    got = client.get(f"/fhir/Patient/{pid}")
    assert got.status_code == 200
    assert got.json() == created
    assert got.headers["etag"] == 'W/"1"'
    assert "last-modified" in got.headers


def test_decimal_precision_survives(client: Any) -> None:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": 1.50, "unit": "kg"},
    }
    raw = b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},"valueQuantity":{"value":1.50,"unit":"kg"}}'
    r = client.post("/fhir/Observation", content=raw, headers=FJ)
    assert r.status_code == 201, r.text
    assert b'"value":1.50' in r.content
    again = client.get(f"/fhir/Observation/{r.json()['id']}")
    assert b'"value":1.50' in again.content
    assert body["valueQuantity"]["value"] == 1.5


def test_update_versions_and_vread(client: Any) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    body = patient(id=pid, gender="male")
    r = client.put(f"/fhir/Patient/{pid}", json=body, headers=FJ)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    v1 = client.get(f"/fhir/Patient/{pid}/_history/1")
    assert v1.status_code == 200 and v1.json()["gender"] == "female"
    v2 = client.get(f"/fhir/Patient/{pid}/_history/2")
    assert v2.json()["gender"] == "male"
    assert client.get(f"/fhir/Patient/{pid}/_history/3").status_code == 404


def test_update_as_create_with_client_id(client: Any) -> None:
    r = client.put("/fhir/Patient/client-id-1", json=patient(id="client-id-1"), headers=FJ)
    assert r.status_code == 201
    assert r.json()["id"] == "client-id-1"
    assert client.get("/fhir/Patient/client-id-1").status_code == 200


def test_update_id_mismatch_and_missing(client: Any) -> None:
    r = client.put("/fhir/Patient/a1", json=patient(id="b2"), headers=FJ)
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "does not match" in r.json()["issue"][0]["diagnostics"]
    r = client.put("/fhir/Patient/a1", json=patient(), headers=FJ)
    assert r.status_code == 400


def test_if_match(client: Any) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    changed = {**patient(id=pid), "gender": "other"}
    ok = client.put(f"/fhir/Patient/{pid}", json=changed, headers={**FJ, "If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == 'W/"2"'
    stale = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid), headers={**FJ, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"


def test_an_update_that_changes_nothing_keeps_the_version(client: Any) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    same = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid), headers={**FJ, "If-Match": 'W/"1"'})
    assert same.status_code == 200
    assert same.headers["ETag"] == 'W/"1"' and same.json()["meta"]["versionId"] == "1"
    history = client.get(f"/fhir/Patient/{pid}/_history", headers=FJ).json()
    assert history["total"] == 1


def test_conditional_read(client: Any) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers=FJ)
    pid = r.json()["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": '"1"'}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"7"'}).status_code == 200
    lm = r.headers["last-modified"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get(
        f"/fhir/Patient/{pid}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    ).status_code == 200


def test_delete_is_versioned(client: Any) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    # deleting again is harmless; re-creating with PUT starts a new version
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    again = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid), headers=FJ)
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"


def test_delete_unknown_is_404(client: Any) -> None:
    assert client.delete("/fhir/Patient/nope").status_code == 404


@pytest.mark.parametrize("kind", ["json-patch", "merge-patch"])
def test_patch(client: Any, kind: str) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    if kind == "json-patch":
        body: Any = [{"op": "replace", "path": "/gender", "value": "other"}]
        ctype = "application/json-patch+json"
    else:
        body = {"gender": "other", "birthDate": None}
        ctype = "application/merge-patch+json"
    r = client.patch(f"/fhir/Patient/{pid}", json=body, headers={"Content-Type": ctype, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "other"
    assert r.json()["meta"]["versionId"] == "2"
    if kind == "merge-patch":
        assert "birthDate" not in r.json()


def test_patch_that_breaks_validation_is_rejected(client: Any) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    r = client.patch(
        f"/fhir/Patient/{pid}",
        json=[{"op": "replace", "path": "/gender", "value": "banana"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 400
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"


def test_prefer_return(client: Any) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers={**FJ, "Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b""
    assert r.headers["location"]
    r = client.post("/fhir/Patient", json=patient(), headers={**FJ, "Prefer": "return=OperationOutcome"})
    assert r.json()["resourceType"] == "OperationOutcome"


def test_conditional_create(client: Any) -> None:
    h = {**FJ, "If-None-Exist": "identifier=urn:mrn|MRN-1"}
    first = client.post("/fhir/Patient", json=patient(), headers=h)
    assert first.status_code == 201
    second = client.post("/fhir/Patient", json=patient(), headers=h)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]


def test_conditional_update_and_delete(client: Any) -> None:
    r = client.put("/fhir/Patient?identifier=urn:mrn|MRN-9", json=patient(identifier=[{"system": "urn:mrn", "value": "MRN-9"}]), headers=FJ)
    assert r.status_code == 201
    pid = r.json()["id"]
    r2 = client.put("/fhir/Patient?identifier=urn:mrn|MRN-9", json=patient(identifier=[{"system": "urn:mrn", "value": "MRN-9"}], gender="male"), headers=FJ)
    assert r2.status_code == 200 and r2.json()["id"] == pid and r2.json()["gender"] == "male"
    assert client.delete("/fhir/Patient?identifier=urn:mrn|MRN-9").status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


def test_history_levels(client: Any) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, gender="male"), headers=FJ)
    client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}}, headers=FJ)
    inst = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert inst["type"] == "history" and inst["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in inst["entry"]] == ["2", "1"]
    assert inst["entry"][0]["request"]["method"] == "PUT"
    typ = client.get("/fhir/Patient/_history").json()
    assert typ["total"] == 2
    system = client.get("/fhir/_history?_count=2").json()
    assert system["total"] == 3 and len(system["entry"]) == 2
    nxt = [link["url"] for link in system["link"] if link["relation"] == "next"][0]
    rest = client.get(nxt.replace("http://testserver", "")).json()
    assert len(rest["entry"]) == 1
    future = client.get("/fhir/_history?_since=2999-01-01T00:00:00Z").json()
    assert future["total"] == 0
    assert client.get("/fhir/Patient/unknown/_history").status_code == 404


def test_conditional_patch_match_counts(client: Any) -> None:
    # http.html#patch: conditional patch as conditional update - none 404, one patched, several 412
    jp = {"Content-Type": "application/json-patch+json"}
    body = [{"op": "replace", "path": "/gender", "value": "other"}]
    none = client.patch("/fhir/Patient?identifier=urn:mrn|NOPE", json=body, headers=jp)
    assert none.status_code == 404, none.text
    assert none.json()["issue"][0]["code"] == "not-found"
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    one = client.patch("/fhir/Patient?identifier=urn:mrn|MRN-1", json=body, headers=jp)
    assert one.status_code == 200 and one.json()["id"] == pid and one.json()["gender"] == "other"
    client.post("/fhir/Patient", json=patient(), headers=FJ)
    several = client.patch("/fhir/Patient?identifier=urn:mrn|MRN-1", json=body, headers=jp)
    assert several.status_code == 412, several.text


def test_delete_then_read_then_create_again_with_the_same_id(client: Any) -> None:
    rid = "a" * 64  # the longest id R4 allows
    assert client.put(f"/fhir/Patient/{rid}", json=patient(id=rid), headers=FJ).status_code == 201
    assert client.put(f"/fhir/Patient/{'a' * 65}", json=patient(id="a" * 65), headers=FJ).status_code == 400
    assert client.delete(f"/fhir/Patient/{rid}").status_code == 204
    gone = client.get(f"/fhir/Patient/{rid}")
    assert gone.status_code == 410 and gone.headers["etag"] == 'W/"2"'
    stale = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid), headers={**FJ, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    again = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid), headers=FJ)
    assert again.status_code == 201 and again.json()["meta"]["versionId"] == "3"


@pytest.mark.parametrize("criteria", ["_count=1", "identifier=", "_sort=birthdate", "_summary=true&_elements=id"])
def test_conditional_criteria_that_select_nothing_are_refused(client: Any, criteria: str) -> None:
    # http.html#cdelete/#cond-update: the criteria are a search; one without a search parameter
    # must not be taken as "every resource of the type" (it once deleted them all)
    pids = [client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"] for _ in range(2)]
    r = client.delete(f"/fhir/Patient?{criteria}")
    assert r.status_code == 400, r.text
    assert "search parameter" in r.json()["issue"][0]["diagnostics"]
    assert all(client.get(f"/fhir/Patient/{pid}").status_code == 200 for pid in pids)
    assert client.put(f"/fhir/Patient?{criteria}", json=patient(), headers=FJ).status_code == 400
    assert client.post("/fhir/Patient", json=patient(), headers={**FJ, "If-None-Exist": criteria}).status_code == 400
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 2


def test_conditional_update_with_if_match_never_creates(client: Any) -> None:
    # RFC 9110 13.1.1: If-Match is false when there is no current representation, so a conditional
    # update whose criteria match nothing must not create the resource (412), as PUT Patient/<id> does
    body = patient(identifier=[{"system": "urn:mrn", "value": "IFM-1"}])
    r = client.put("/fhir/Patient?identifier=urn:mrn|IFM-1", json=body, headers={**FJ, "If-Match": 'W/"1"'})
    assert r.status_code == 412, r.text
    assert client.get("/fhir/Patient?identifier=urn:mrn|IFM-1").json()["total"] == 0
    r = client.put("/fhir/Patient?identifier=urn:mrn|IFM-1", json={**body, "id": "ifm1"}, headers={**FJ, "If-Match": 'W/"1"'})
    assert r.status_code == 412, r.text
    assert client.get("/fhir/Patient/ifm1").status_code == 404


def test_if_match_star_matches_any_current_version(client: Any) -> None:
    # RFC 9110 13.1.1: "*" is true when a current representation exists, false otherwise
    pid = client.post("/fhir/Patient", json=patient(), headers=FJ).json()["id"]
    star = {**FJ, "If-Match": "*"}
    ok = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, gender="other"), headers=star)
    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] == 'W/"2"'
    jp = {"Content-Type": "application/json-patch+json", "If-Match": "*"}
    patched = client.patch(f"/fhir/Patient/{pid}", json=[{"op": "replace", "path": "/gender", "value": "male"}], headers=jp)
    assert patched.status_code == 200 and patched.headers["ETag"] == 'W/"3"', patched.text
    missing = client.put("/fhir/Patient/no-such-star", json=patient(id="no-such-star"), headers=star)
    assert missing.status_code == 412, missing.text
    assert client.get("/fhir/Patient/no-such-star").status_code == 404
    assert client.delete(f"/fhir/Patient/{pid}", headers={"If-Match": "*"}).status_code == 204
    gone = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid), headers=star)
    assert gone.status_code == 412, gone.text  # deleted: no current representation


def test_conditional_delete_applies_if_match_to_its_one_match(client: Any) -> None:
    body = patient(identifier=[{"system": "urn:mrn", "value": "CDM-1"}])
    pid = client.post("/fhir/Patient", json=body, headers=FJ).json()["id"]
    url = "/fhir/Patient?identifier=urn:mrn|CDM-1"
    stale = client.delete(url, headers={"If-Match": 'W/"2"'})
    assert stale.status_code == 412, stale.text
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert client.delete(url, headers={"If-Match": 'W/"1"'}).status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410
    # no match: no current representation, so If-Match is false (RFC 9110 13.1.1)
    assert client.delete(url, headers={"If-Match": "*"}).status_code == 412


def test_conditional_delete_with_if_match_refuses_several_matches(client: Any) -> None:
    # An ETag is one resource's version; with several matches there is no one version to compare
    # (HAPI FHIR answers 412 to a conditional delete matching several when it is not told otherwise).
    body = patient(identifier=[{"system": "urn:mrn", "value": "CDM-2"}])
    pids = [client.post("/fhir/Patient", json=body, headers=FJ).json()["id"] for _ in range(2)]
    r = client.delete("/fhir/Patient?identifier=urn:mrn|CDM-2", headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412, r.text
    assert "2 resources" in r.json()["issue"][0]["diagnostics"]
    assert all(client.get(f"/fhir/Patient/{pid}").status_code == 200 for pid in pids)

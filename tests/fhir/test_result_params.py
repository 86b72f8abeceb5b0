"""Result parameters and links: history ``_at`` in paging links, result parameter values checked
under lenient and strict handling (http://hl7.org/fhir/R4/search.html#errors), PATCH bodies that
are not JSON Patch or merge patch, JSON Patch errors as sentences, and unknown paths.
On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import BASE

FJ = {"Content-Type": "application/fhir+json"}
STRICT = {"Prefer": "handling=strict"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def put(client: Any, resource: dict[str, Any]) -> None:
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=FJ)
    assert r.status_code in (200, 201), r.text


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def outcomes(bundle: dict[str, Any]) -> list[str]:
    return [issue["diagnostics"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"
            for issue in e["resource"]["issue"]]


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture
def data(client: Any) -> None:
    put(client, {"resourceType": "Organization", "id": "org1", "name": "General Hospital"})
    for gender in ("female", "male", "other"):  # three versions of p1
        put(client, {"resourceType": "Patient", "id": "p1", "gender": gender, "name": [{"family": "Núñez"}],
                     "managingOrganization": {"reference": "Organization/org1"}})
    put(client, {"resourceType": "Patient", "id": "p2", "gender": "male", "name": [{"family": "Smith"}]})
    put(client, {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "glucose"},
                 "subject": {"reference": "Patient/p1"}})


# -- history: _at stays in the links ----------------------------------------------------------


def test_instance_history_links_keep_at(client: Any, data: Any) -> None:
    b = client.get("/fhir/Patient/p1/_history?_at=2026-12&_count=2").json()
    assert link(b, "self") == f"{BASE}/Patient/p1/_history?_at=2026-12&_count=2"


@pytest.mark.parametrize("at", ["2999", "2999-01-01T00:00:00+01:00"])
def test_following_next_keeps_the_at_filter(client: Any, data: Any, at: str) -> None:
    # In 2999 the current version of each resource is the one in effect: 4 resources, not 6 versions.
    assert client.get("/fhir/_history").json()["total"] == 6
    first = client.get("/fhir/_history", params={"_at": at, "_count": "1"}).json()
    assert first["total"] == 4
    seen, page = [], first
    while True:
        assert page["total"] == 4
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]]
        nxt = link(page, "next")
        if nxt is None:
            break
        assert "_at=" in nxt
        page = client.get(nxt).json()
    assert sorted(seen) == ["Observation/o1", "Organization/org1", "Patient/p1", "Patient/p2"]


def test_a_later_page_links_itself_not_the_first_page(client: Any, data: Any) -> None:
    first = client.get("/fhir/_history?_count=2").json()
    second_url = link(first, "next")
    assert second_url is not None and "_before_vpk=" in second_url
    second = client.get(second_url).json()
    assert link(second, "self") == second_url
    again = client.get(link(second, "self")).json()  # type: ignore[arg-type]
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in second["entry"]]


def test_since_is_still_in_the_links(client: Any, data: Any) -> None:
    b = client.get("/fhir/Patient/_history?_since=2000-01-01T00:00:00Z&_count=1").json()
    assert "_since=2000-01-01T00:00:00" in link(b, "self")  # type: ignore[operator]
    assert "_since=2000-01-01T00:00:00" in link(b, "next")  # type: ignore[operator]


# -- result parameters: checked, reported when lenient, refused when strict --------------------

BAD = [
    ("_summary", "bogus"),
    ("_total", "bogus"),
    ("_include", "Patient:nosuch"),
    ("_include", "Patient:gender"),  # not a reference parameter
    ("_include", "Nosuch:subject"),
    ("_include", "Patient:organization:Medication"),  # Patient.organization refers to Organization only
    ("_include:iterate", "Patient:nosuch"),
    ("_include", "Observation:subject"),  # a Patient search: its _include follows Patient references
    ("_revinclude", "Observation:nosuch"),
    ("_contained", "true"),
    ("_contained", "both"),
    ("_contained", "bogus"),
    ("_containedType", "contained"),
]


@pytest.mark.parametrize("name,value", BAD)
def test_bad_result_value_is_reported_when_lenient(client: Any, data: Any, name: str, value: str) -> None:
    r = client.get("/fhir/Patient", params={"_id": "p1", name: value})
    assert r.status_code == 200, r.text
    b = r.json()
    assert [p["id"] for p in matches(b)] == ["p1"]
    assert matches(b)[0]["name"] == [{"family": "Núñez"}], "the bad value is ignored, not half-applied"
    reported = outcomes(b)
    assert len(reported) == 1 and name in reported[0] and value in reported[0], reported


@pytest.mark.parametrize("name,value", BAD)
def test_bad_result_value_is_refused_when_strict(client: Any, data: Any, name: str, value: str) -> None:
    r = client.get("/fhir/Patient", params={"_id": "p1", name: value}, headers=STRICT)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    text = body["issue"][0]["diagnostics"]
    assert name in text and value in text, text


def test_unknown_parameter_and_bad_value_share_the_outcome(client: Any, data: Any) -> None:
    b = client.get("/fhir/Patient?_id=p1&foo=bar&_total=bogus").json()
    reported = outcomes(b)
    assert len(reported) == 2 and "foo" in reported[0] and "_total" in reported[1], reported


GOOD = [
    *(("_summary", v) for v in ("true", "text", "data", "count", "false")),
    *(("_total", v) for v in ("none", "estimate", "accurate")),
    ("_include", "Patient:organization"),
    ("_include", "Patient:organization:Organization"),
    ("_include", "Patient:*"),
    ("_include", "Patient:organization:iterate"),
    ("_include:iterate", "Patient:organization"),
    ("_revinclude", "Observation:subject"),
    ("_revinclude", "Observation:subject:Patient"),
    ("_revinclude", "Observation:*"),
    ("_revinclude:iterate", "Observation:subject"),
    ("_contained", "false"),
    ("_containedType", "container"),
]


@pytest.mark.parametrize("name,value", GOOD)
def test_valid_result_values_still_work_when_strict(client: Any, data: Any, name: str, value: str) -> None:
    r = client.get("/fhir/Patient", params={"_id": "p1", name: value}, headers=STRICT)
    assert r.status_code == 200, r.text
    assert outcomes(r.json()) == []


def test_includes_still_include(client: Any, data: Any) -> None:
    b = client.get("/fhir/Patient?_id=p1&_include=Patient:organization&_revinclude=Observation:subject",
                   headers=STRICT).json()
    assert sorted(e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "include") == ["o1", "org1"]


def test_malformed_include_is_400_either_way(client: Any, data: Any) -> None:
    assert client.get("/fhir/Patient?_include=broken").status_code == 400
    assert client.get("/fhir/Patient?_include=broken", headers=STRICT).status_code == 400


def test_read_with_bad_summary(client: Any, data: Any) -> None:
    r = client.get("/fhir/Patient/p1?_summary=bogus")
    assert r.status_code == 200 and r.json()["name"] == [{"family": "Núñez"}], r.text
    strict = client.get("/fhir/Patient/p1?_summary=bogus", headers=STRICT)
    assert strict.status_code == 400 and "'_summary' has value 'bogus'" in strict.json()["issue"][0]["diagnostics"]
    # count is a search's: on a read it stripped the resource to id and meta
    count = client.get("/fhir/Patient/p1?_summary=count")
    assert count.status_code == 200 and count.json()["name"] == [{"family": "Núñez"}], count.text
    assert client.get("/fhir/Patient/p1?_summary=count", headers=STRICT).status_code == 400
    assert client.get("/fhir/Patient/p1?_summary=true").json().get("name") == [{"family": "Núñez"}]  # name is Σ


def test_vread_takes_summary_and_elements_as_read_does(client: Any, data: Any) -> None:
    """search.html#summary/#elements apply to a vread as to a read (they were ignored)."""
    full = client.get("/fhir/Patient/p1/_history/1").json()
    assert "name" in full and full["meta"]["versionId"] == "1"
    slim = client.get("/fhir/Patient/p1/_history/1?_elements=gender")
    assert slim.status_code == 200, slim.text
    body = slim.json()
    assert "name" not in body and body["id"] == "p1" and "gender" in body
    assert any(t.get("code") == "SUBSETTED" for t in body["meta"].get("tag", []))
    assert client.get("/fhir/Patient/p1/_history/1?_summary=bogus", headers=STRICT).status_code == 400


def test_bad_value_in_a_batch_search_is_reported(client: Any, data: Any) -> None:
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": "Patient?_id=p1&_summary=bogus"}}]}
    r = client.post("/fhir", json=batch, headers=FJ)
    assert r.status_code == 200, r.text
    found = r.json()["entry"][0]["resource"]
    assert any("_summary" in text for text in outcomes(found))


# -- PATCH bodies -----------------------------------------------------------------------------

FHIRPATH_PATCH = {
    "resourceType": "Parameters",
    "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "unknown"},
    ]}],
}


@pytest.mark.parametrize("ctype", ["application/fhir+json", "application/json", "application/merge-patch+json"])
def test_fhirpath_patch_is_415(client: Any, data: Any, ctype: str) -> None:
    r = client.patch("/fhir/Patient/p1", json=FHIRPATH_PATCH, headers={"Content-Type": ctype})
    assert r.status_code == 415, r.text
    assert r.json()["issue"][0]["diagnostics"] == (
        "FHIRPath Patch is not supported; use application/json-patch+json or application/merge-patch+json."
    )
    assert "application/json-patch+json" in r.headers["accept-patch"]
    assert client.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "3"


def test_fhir_json_patch_body_is_a_merge_patch(client: Any, data: Any) -> None:
    r = client.patch("/fhir/Patient/p1", json={"gender": "unknown"}, headers=FJ)
    assert r.status_code == 200 and r.json()["gender"] == "unknown", r.text


# -- JSON Patch errors name the operation, never the resource -----------------------------------

JSON_PATCH_ERRORS = [
    ([{"op": "remove", "path": "/name/5"}], 400,
     "JSON Patch operation 0 (remove /name/5) cannot be applied: /name/5 does not exist in the resource."),
    ([{"op": "replace", "path": "/gender", "value": "male"}, {"op": "test", "path": "/id", "value": "zzz"}], 422,
     "JSON Patch operation 1 (test /id) failed: the value at /id is not the tested value."),
    ([{"op": "test", "path": "/birthDate", "value": "2000"}], 422,
     "JSON Patch operation 0 (test /birthDate) failed: /birthDate does not exist in the resource."),
    ([{"op": "replace", "path": "/birthDate", "value": "2000"}], 400,
     "JSON Patch operation 0 (replace /birthDate) cannot be applied: /birthDate does not exist in the resource."),
    ([{"op": "add", "path": "/contact/0/name", "value": {}}], 400,
     "JSON Patch operation 0 (add /contact/0/name) cannot be applied: /contact/0 does not exist in the resource."),
    ([{"op": "add", "path": "/name/9", "value": {}}], 400,
     "JSON Patch operation 0 (add /name/9) cannot be applied: '9' is not a position in the array at /name "
     "(a number within it, or '-' to append)."),
    ([{"op": "add", "path": "/gender/x", "value": 1}], 400,
     "JSON Patch operation 0 (add /gender/x) cannot be applied: /gender is neither an object nor an array."),
    ([{"op": "move", "from": "/nothing", "path": "/x"}], 400,
     "JSON Patch operation 0 (move from /nothing to /x) cannot be applied: 'from' /nothing does not exist in the resource."),
    ([{"op": "remove", "path": ""}], 400,
     "JSON Patch operation 0 (remove /) cannot be applied: the whole resource cannot be removed."),
    ([{"op": "frobnicate", "path": "/gender"}], 400,
     "JSON Patch operation 0: 'op' is 'frobnicate'; expected add, remove, replace, move, copy or test."),
    ([{"path": "/gender"}], 400,
     "JSON Patch operation 0: 'op' is missing; expected add, remove, replace, move, copy or test."),
    ([{"op": "remove", "path": "gender"}], 400,
     "JSON Patch operation 0 (remove): 'path' 'gender' is not a JSON pointer (RFC 6901), e.g. /name/0."),
    ([{"op": "add", "path": "/gender"}], 400, "JSON Patch operation 0 (add /gender) needs a 'value'."),
    (["remove"], 400, 'JSON Patch operation 0 is not an object; expected {"op": ..., "path": ...}.'),
]


@pytest.mark.parametrize("body,status,expected", JSON_PATCH_ERRORS)
def test_json_patch_errors_are_sentences(client: Any, data: Any, body: Any, status: int, expected: str) -> None:
    r = client.patch("/fhir/Patient/p1", json=body, headers=JSON_PATCH)
    assert r.status_code == status, r.text
    text = r.json()["issue"][0]["diagnostics"]
    assert text == expected
    for leak in ("Núñez", "resourceType", "<class", "p1"):
        assert leak not in text
    assert client.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "3", "nothing was written"


def test_json_patch_still_applies(client: Any, data: Any) -> None:
    body = [{"op": "test", "path": "/gender", "value": "other"}, {"op": "add", "path": "/name/-", "value": {"family": "X"}},
            {"op": "move", "from": "/name/1", "path": "/name/0"}, {"op": "remove", "path": "/managingOrganization"}]
    r = client.patch("/fhir/Patient/p1", json=body, headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == [{"family": "X"}, {"family": "Núñez"}] and "managingOrganization" not in r.json()


# -- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/fhir/Patient/p1/y/z/w", "/fhir/Patient/p1/_history/1/extra"])
def test_unknown_path_is_404(client: Any, data: Any, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == f"{path} is not a FHIR interaction this server knows; see {BASE}/metadata."


def test_wrong_method_is_still_405(client: Any, data: Any) -> None:
    r = client.put("/fhir/Patient/p1/_history/1", json={}, headers=FJ)
    assert r.status_code == 405 and "allowed: GET" in r.json()["issue"][0]["diagnostics"], r.text


# -- parameters of other interactions on a search: reported, never silently dropped -----------


@pytest.mark.parametrize(("name", "value", "hint"), [
    ("_since", "2020-01-01", "_lastUpdated=gt"),
    ("_type", "Observation", "$everything and $export"),
    ("_outputFormat", "ndjson", "$export"),
])
def test_everything_and_export_parameters_on_a_search_are_reported(client: Any, data: Any, name: str, value: str,
                                                                   hint: str) -> None:
    lenient = client.get("/fhir/Patient", params={name: value}).json()
    assert len(matches(lenient)) == 2  # ignored, as an unknown parameter is
    [said] = outcomes(lenient)
    assert said.startswith(f"Ignored '{name}'") and hint in said
    strict = client.get("/fhir/Patient", params={name: value}, headers=STRICT)
    assert strict.status_code == 400 and hint in strict.json()["issue"][0]["diagnostics"]
    # where they belong they still work
    assert client.get("/fhir/Patient/p1/$everything", params={"_type": "Observation"}).status_code == 200
    assert client.get("/fhir/Patient/_history", params={"_since": "2020-01-01T00:00:00Z"}).status_code == 200

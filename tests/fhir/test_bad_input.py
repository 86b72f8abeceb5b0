"""Bad input: always a 4xx OperationOutcome, never a 500, and nothing partially written."""

from __future__ import annotations

from typing import Any

import pytest

FJ = {"Content-Type": "application/fhir+json"}
SQL = ["' OR 1=1 --", "\"; DROP TABLE resource; --", "%' OR '%'='", "1) UNION SELECT raw FROM resource_version --"]


def _is_outcome(r: Any, status: int | None = None) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    assert "Traceback" not in r.text


def _count(client: Any) -> int:
    return int(client.get("/fhir/_history?_count=0").json()["total"])


def test_malformed_json(client: Any) -> None:
    _is_outcome(client.post("/fhir/Patient", content=b'{"resourceType": "Patient",', headers=FJ), 400)
    _is_outcome(client.post("/fhir/Patient", content=b"", headers=FJ), 400)
    _is_outcome(client.post("/fhir/Patient", content=b"[1,2]", headers=FJ), 400)
    assert _count(client) == 0


def test_wrong_content_type(client: Any) -> None:
    _is_outcome(client.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}), 415)
    _is_outcome(client.post("/fhir/Patient", content=b"hello", headers={"Content-Type": "text/plain"}), 415)


def test_xml_accept_is_406(client: Any) -> None:
    _is_outcome(client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}), 406)
    _is_outcome(client.get("/fhir/metadata?_format=xml"), 406)
    assert client.get("/fhir/metadata?_format=json").status_code == 200
    assert client.get("/fhir/metadata", headers={"Accept": "application/json"}).status_code == 200


def test_a_read_negotiates_like_every_other_interaction(client: Any) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FJ).json()["id"]
    url = f"/fhir/Patient/{pid}"
    for accept in ("application/fhir+json", "application/fhir+json, */*;q=0.1", "*/*", "application/json"):
        assert client.get(url, headers={"Accept": accept}).status_code == 200, accept
    for _ in range(2):  # the verdict per Accept value is remembered: the second answer must agree
        _is_outcome(client.get(url, headers={"Accept": "application/fhir+xml"}), 406)
        _is_outcome(client.get(url, headers={"Accept": "image/png"}), 406)
    _is_outcome(client.get(f"{url}?_format=xml", headers={"Accept": "application/fhir+json"}), 406)
    assert client.get(f"{url}?_format=json", headers={"Accept": "application/fhir+xml"}).status_code == 200


@pytest.mark.parametrize("accept", [
    "application/fhir+json;q=0",
    "application/fhir+json; q=0.0, application/fhir+xml",
    "*/*;q=0",
    "application/fhir+json;q=0, */*",  # the specific range wins over the wildcard (RFC 9110 12.5.1)
])
def test_q_zero_is_not_acceptable(client: Any, accept: str) -> None:
    # RFC 9110 12.4.2: a weight of 0 means "not acceptable"
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FJ).json()["id"]
    for url in (f"/fhir/Patient/{pid}", "/fhir/Patient", "/fhir/metadata"):
        _is_outcome(client.get(url, headers={"Accept": accept}), 406)


@pytest.mark.parametrize("accept", [
    "application/fhir+xml;q=0, application/fhir+json",
    "application/fhir+json;q=0.5",
    "application/xml;q=0, */*;q=0.1",
    "application/fhir+json;q=0.001",
])
def test_a_nonzero_weight_is_acceptable(client: Any, accept: str) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FJ).json()["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"Accept": accept}).status_code == 200, accept


def test_body_over_limit(client: Any) -> None:
    limit = client.app.state.fhir.max_body
    big = b'{"resourceType":"Patient","text":"' + b"x" * (limit + 10) + b'"}'
    _is_outcome(client.post("/fhir/Patient", content=big, headers=FJ), 413)


def test_deeply_nested_json(client: Any) -> None:
    deep = b'{"resourceType":"Patient","extension":' + b"[" * 200 + b"]" * 200 + b"}"
    _is_outcome(client.post("/fhir/Patient", content=deep, headers=FJ), 400)
    deeper = b"[" * 5000 + b"]" * 5000
    _is_outcome(client.post("/fhir/Patient", content=deeper, headers=FJ), 400)


def test_wrong_resource_type_for_url(client: Any) -> None:
    _is_outcome(client.post("/fhir/Patient", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}}, headers=FJ), 400)
    assert _count(client) == 0


def test_invalid_ids(client: Any) -> None:
    _is_outcome(client.put("/fhir/Patient/has space", json={"resourceType": "Patient", "id": "has space"}, headers=FJ))
    _is_outcome(client.put("/fhir/Patient/" + "a" * 65, json={"resourceType": "Patient", "id": "a" * 65}, headers=FJ))
    _is_outcome(client.get("/fhir/Patient/bad$id!"))


def test_unknown_resource_type(client: Any) -> None:
    _is_outcome(client.get("/fhir/Spaceship"), 404)
    _is_outcome(client.get("/fhir/Spaceship/1"), 404)
    _is_outcome(client.post("/fhir/Spaceship", json={"resourceType": "Spaceship"}, headers=FJ), 404)


def test_invalid_resource_content(client: Any) -> None:
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "1983-02-30", "foo": 1}, headers=FJ)
    _is_outcome(r, 400)
    exprs = {e for i in r.json()["issue"] for e in i.get("expression", [])}
    assert any("birthDate" in e for e in exprs)
    assert _count(client) == 0


@pytest.mark.parametrize(
    "query",
    [
        "Patient?birthdate=notadate",
        "Patient?birthdate=2023-13-45",
        "Observation?value-quantity=abc",
        "Observation?value-quantity=gt1e999999",
        "Patient?_count=-1",
        "Patient?_count=many",
        "Patient?_sort=nonsense",
        "Patient?gender:bogus=male",
        "Patient?organization:missing=maybe",
        "Patient?_cursor=not-a-cursor",
        "Patient?_has:Observation=1",
        "Patient?_include=broken",
        "Patient?general-practitioner:Foo=1",  # search.html#reference: :Type names a target type
        "Patient?general-practitioner:Patient=1",
    ],
)
def test_invalid_search_values(client: Any, query: str) -> None:
    _is_outcome(client.get(f"/fhir/{query}"), 400)


@pytest.mark.parametrize("payload", SQL)
@pytest.mark.parametrize(
    "param", ["name", "identifier", "gender", "organization", "_id", "address-city", "_tag", "_profile", "birthdate"]
)
def test_sql_metacharacters_are_just_values(client: Any, param: str, payload: str) -> None:
    client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Safe"}]}, headers=FJ)
    r = client.get("/fhir/Patient", params={param: payload})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json().get("total", 0) == 0
    assert client.get("/fhir/Patient?name=safe").json()["total"] == 1


def test_if_match_garbage(client: Any) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FJ).json()["id"]
    _is_outcome(client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers={**FJ, "If-Match": "banana"}), 400)


def test_method_not_allowed_is_outcome(client: Any) -> None:
    _is_outcome(client.put("/fhir/Patient/x/_history/1", json={}), 405)
    _is_outcome(client.delete("/fhir/metadata"))


def test_a_405_lists_the_allowed_methods(client: Any) -> None:
    # RFC 9110 15.5.6: a 405 response MUST carry an Allow header
    r = client.put("/fhir/Patient/x/_history/1", json={}, headers=FJ)
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = client.delete("/fhir/metadata")
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_unknown_path_is_outcome(client: Any) -> None:
    r = client.get("/nothing-here")
    assert r.status_code == 404


def test_people_get_pages_and_clients_get_outcomes_outside_the_api(client: Any) -> None:
    """A browser opening the server's root or a wrong address gets a page with where to go; an API
    client (no text/html in Accept), and anything under the APIs, gets what it got before."""
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    root = client.get("/", headers=html, follow_redirects=False)
    assert root.status_code == 200 and 'href="/ehr"' in root.text and "/fhir" in root.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/fhir/metadata"
    missing = client.get("/favicon.ico", headers=html)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "<script" not in client.get("/<script>x", headers=html).text  # the path is escaped
    assert client.get("/nowhere").json()["resourceType"] == "OperationOutcome"
    api = client.get("/fhir/Nosuch/1", headers=html)
    assert api.status_code == 404 and api.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("fmt", [
    "application/fhir+json",  # a literal '+' in a query string arrives as a space
    "application/fhir%2Bjson",
    "application/fhir%2Bjson;%20fhirVersion=4.0",
    "application/json+fhir",
    "JSON",
])
def test_format_takes_every_json_mime_type(client: Any, fmt: str) -> None:
    # http.html#mime-type: _format takes json or a MIME type, with parameters such as fhirVersion
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FJ).json()["id"]
    assert client.get(f"/fhir/Patient/{pid}?_format={fmt}").status_code == 200
    assert client.get(f"/fhir/Patient?_format={fmt}").json()["resourceType"] == "Bundle"
    _is_outcome(client.get("/fhir/metadata?_format=application/fhir%2Bxml;%20fhirVersion=4.0"), 406)


def test_nul_characters_are_refused_not_a_server_error(client: Any) -> None:
    # PostgreSQL cannot store U+0000 in text: a 400 (write) or a 4xx (read, search), never a 500
    obs = b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a\\u0000b"}'
    r = client.post("/fhir/Observation", content=obs, headers=FJ)
    _is_outcome(r, 400)
    assert r.json()["issue"][0]["expression"] == ["Observation.valueString"]
    coded = b'{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:x","code":"a\\u0000"}]}}'
    _is_outcome(client.post("/fhir/Observation", content=coded, headers=FJ), 400)
    for query in ("code=a%00b", "_id=a%00", "code:text=%00", "status=final&subject=Patient/%00"):
        _is_outcome(client.get(f"/fhir/Observation?{query}"), 400)
    for path in ("/fhir/Observation/a%00b", "/fhir/Observation/a%00b/_history", "/fhir/Observation/a%00b/_history/1",
                 "/fhir/Patient/a%00b/Observation"):
        _is_outcome(client.get(path), 404)
    _is_outcome(client.delete("/fhir/Observation/a%00b"), 404)
    _is_outcome(client.patch("/fhir/Observation/a%00b", json=[], headers={"Content-Type": "application/json-patch+json"}), 404)
    assert _count(client) == 0


def test_a_paging_cursor_from_another_search_is_400(client: Any) -> None:
    for year in (1980, 1981, 1982):
        client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": f"{year}-01-01",
                                           "name": [{"family": f"F{year}"}]}, headers=FJ)
    first = client.get("/fhir/Patient?_count=1&_sort=-birthdate").json()
    cursor = next(x["url"] for x in first["link"] if x["relation"] == "next").split("_cursor=")[1]
    for other in ("_sort=family", "_sort=_lastUpdated", "_sort=family,birthdate", "", "name=f"):
        r = client.get(f"/fhir/Patient?_count=1&{other}&_cursor={cursor}")
        _is_outcome(r, 400)
        assert "first page" in r.json()["issue"][0]["diagnostics"]


def test_a_version_id_is_ascii_digits(client: Any) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FJ).json()["id"]
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    _is_outcome(client.get(f"/fhir/Patient/{pid}/_history/%D9%A1"), 404)  # ARABIC-INDIC DIGIT ONE


def test_every_route_refuses_a_body_over_the_limit(store: Any, settings: Any) -> None:
    """max_body_bytes holds for every route, not only FHIR's: the token endpoint, the sign-in and
    consent forms and the Bulk kick-off read whatever came, so one huge POST could take the memory.
    A body without Content-Length (chunked) is stopped once it passes the limit."""
    from starlette.testclient import TestClient

    from ehrgate.app import create_app

    with TestClient(create_app(settings.replace(max_body_bytes=1000), store), raise_server_exceptions=False) as c:
        form = {"grant_type": "client_credentials", "scope": "x" * 2000}
        r = c.post("/auth/token", data=form)
        _is_outcome(r, 413)
        assert "limit is 1000 bytes" in r.json()["issue"][0]["diagnostics"]

        def chunks() -> Any:
            for _ in range(10):
                yield b"a=" + b"b" * 300 + b"&"

        _is_outcome(c.post("/auth/token", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}), 413)
        _is_outcome(c.post("/fhir/$export", content=b"{" + b" " * 2000 + b"}", headers=FJ), 413)
        small = c.post("/auth/token", data={"grant_type": "client_credentials"})
        assert small.status_code in (400, 401), small.text  # under the limit: the endpoint's own answer

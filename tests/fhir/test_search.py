"""Search on the index tables: every parameter type, modifiers, chaining, _has, includes, paging."""

from __future__ import annotations

from typing import Any

import pytest

FJ = {"Content-Type": "application/fhir+json"}


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode}


@pytest.fixture
def data(client: Any) -> dict[str, str]:
    def put(resource: dict[str, Any]) -> str:
        r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=FJ)
        assert r.status_code in (200, 201), r.text
        return str(resource["id"])

    put({"resourceType": "Organization", "id": "org1", "name": "General Hospital"})
    put({"resourceType": "Patient", "id": "p1", "active": True, "gender": "female", "birthDate": "1980-02-03",
         "identifier": [{"system": "urn:mrn", "value": "M1",
                         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
         "name": [{"family": "Núñez", "given": ["Zoë", "Ann"]}],
         "address": [{"city": "Boston", "state": "MA", "postalCode": "02115"}],
         "telecom": [{"system": "phone", "value": "555-1234"}],
         "managingOrganization": {"reference": "Organization/org1"}})
    put({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1975",
         "identifier": [{"system": "urn:mrn", "value": "M2"}], "name": [{"family": "Smith", "given": ["John"]}]})
    put({"resourceType": "Patient", "id": "p3", "gender": "male", "birthDate": "2001-07-14",
         "identifier": [{"system": "urn:other", "value": "M1"}], "name": [{"family": "Smithson", "given": ["Joe"]}]})
    glucose = {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]}
    lab = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]
    put({"resourceType": "Observation", "id": "o1", "status": "final", "category": lab, "code": glucose,
         "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-03-01T10:00:00+00:00",
         "valueQuantity": {"value": 110, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
    put({"resourceType": "Observation", "id": "o2", "status": "final", "category": lab, "code": glucose,
         "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01T10:00:00+00:00",
         "valueQuantity": {"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
    put({"resourceType": "Observation", "id": "o3", "status": "preliminary",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
         "subject": {"reference": "Patient/p2"}, "effectiveDateTime": "2023-01-01",
         "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
    put({"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-03-01T09:00:00Z", "end": "2024-03-01T11:00:00Z"}})
    return {}


def search(client: Any, query: str) -> dict[str, Any]:
    r = client.get(f"/fhir/{query}")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    "query,expected",
    [
        ("Patient?name=nunez", {"p1"}),
        ("Patient?name=NÚÑ", {"p1"}),
        ("Patient?family=smith", {"p2", "p3"}),
        ("Patient?family:exact=Smith", {"p2"}),
        ("Patient?family:contains=mithso", {"p3"}),
        ("Patient?given=zoe", {"p1"}),
        ("Patient?name=smith,nunez", {"p1", "p2", "p3"}),
        ("Patient?family=smith&given=joe", {"p3"}),
        ("Patient?identifier=M1", {"p1", "p3"}),
        ("Patient?identifier=urn:mrn|M1", {"p1"}),
        ("Patient?identifier=urn:mrn|", {"p1", "p2"}),
        ("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M1", {"p1"}),
        ("Patient?gender=male", {"p2", "p3"}),
        ("Patient?gender:not=male", {"p1"}),
        ("Patient?gender=http://hl7.org/fhir/administrative-gender|male", {"p2", "p3"}),
        ("Patient?birthdate=1980", {"p1"}),
        ("Patient?birthdate=1980-02", {"p1"}),
        ("Patient?birthdate=lt1980", {"p2"}),
        ("Patient?birthdate=ge1980-02-03", {"p1", "p3"}),
        ("Patient?birthdate=gt1975&birthdate=lt2000", {"p1"}),
        ("Patient?birthdate=eb1976", {"p2"}),
        ("Patient?birthdate=sa2000", {"p3"}),
        ("Patient?address-city=boston", {"p1"}),
        ("Patient?phone=555-1234", {"p1"}),
        ("Patient?_id=p1,p2", {"p1", "p2"}),
        ("Patient?organization=Organization/org1", {"p1"}),
        ("Patient?organization=org1", {"p1"}),
        ("Patient?organization:missing=true", {"p2", "p3"}),
        ("Patient?birthdate:missing=false", {"p1", "p2", "p3"}),
        ("Observation?code=http://loinc.org|2345-7", {"o1", "o2"}),
        ("Observation?code=8867-4", {"o3"}),
        ("Observation?code:text=heart", {"o3"}),
        ("Observation?category=laboratory", {"o1", "o2"}),
        ("Observation?subject=Patient/p1", {"o1", "o2"}),
        ("Observation?patient=p2", {"o3"}),
        ("Observation?subject:Patient=p1", {"o1", "o2"}),
        ("Observation?date=2024", {"o1", "o2"}),
        ("Observation?date=ge2024-04-01", {"o2"}),
        ("Observation?value-quantity=gt100", {"o1"}),
        ("Observation?value-quantity=110|http://unitsofmeasure.org|mg/dL", {"o1"}),
        ("Observation?value-quantity=le95||mg/dL", {"o2"}),
        ("Observation?code-value-quantity=http://loinc.org|2345-7$gt100", {"o1"}),
        ("Observation?status=final,preliminary&subject=Patient/p2", {"o3"}),
        ("Observation?subject:Patient.name=smith", {"o3"}),
        ("Observation?patient.identifier=urn:mrn|M1", {"o1", "o2"}),
        ("Patient?_has:Observation:patient:code=2345-7", {"p1"}),
        ("Encounter?date=2024-03-01", {"e1"}),
        ("Encounter?class=AMB", {"e1"}),
    ],
)
def test_search_semantics(client: Any, data: Any, query: str, expected: set[str]) -> None:
    assert ids(search(client, query)) == expected


def test_post_search_equals_get(client: Any, data: Any) -> None:
    got = search(client, "Patient?family=smith")
    posted = client.post("/fhir/Patient/_search", data={"family": "smith"})
    assert posted.status_code == 200
    assert ids(posted.json()) == ids(got)


def test_include_and_revinclude(client: Any, data: Any) -> None:
    b = search(client, "Observation?code=8867-4&_include=Observation:subject")
    assert ids(b) == {"o3"} and ids(b, "include") == {"p2"}
    b = search(client, "Patient?_id=p1&_revinclude=Observation:subject")
    assert ids(b, "include") == {"o1", "o2"}
    b = search(client, "Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:organization")
    b = search(client, "Observation?_id=o1&_include=Observation:subject&_include=Patient:organization:iterate")
    assert ids(b, "include") == {"p1", "org1"}


def test_sort_and_paging(client: Any, data: Any) -> None:
    b = search(client, "Patient?_sort=-birthdate&_count=2")
    assert [e["resource"]["id"] for e in b["entry"]] == ["p3", "p1"]
    assert "total" not in b  # more than one page: counted only when asked
    assert search(client, "Patient?_sort=-birthdate&_count=2&_total=accurate")["total"] == 3
    nxt = next(link["url"] for link in b["link"] if link["relation"] == "next")
    assert nxt.startswith("http://testserver/fhir/Patient?")
    b2 = client.get(nxt.replace("http://testserver", "")).json()
    assert [e["resource"]["id"] for e in b2["entry"]] == ["p2"]
    prev = next(link["url"] for link in b2["link"] if link["relation"] == "previous")
    b1 = client.get(prev.replace("http://testserver", "")).json()
    assert [e["resource"]["id"] for e in b1["entry"]] == ["p3", "p1"]
    b = search(client, "Patient?_sort=family,-given")
    assert [e["resource"]["id"] for e in b["entry"]] == ["p1", "p2", "p3"]


def test_paging_links_survive_inserts(client: Any, data: Any) -> None:
    b = search(client, "Patient?_count=1")
    first = b["entry"][0]["resource"]["id"]
    nxt = next(link["url"] for link in b["link"] if link["relation"] == "next")
    client.put("/fhir/Patient/p0", json={"resourceType": "Patient", "id": "p0"}, headers=FJ)
    seen = [first]
    url = nxt
    while url:
        page = client.get(url.replace("http://testserver", "")).json()
        seen += [e["resource"]["id"] for e in page.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen))
    assert {"p1", "p2", "p3"} <= set(seen)


def test_count_zero_and_summary_count(client: Any, data: Any) -> None:
    b = search(client, "Patient?_count=0")
    assert b["total"] == 3 and not b.get("entry")
    b = search(client, "Patient?_summary=count")
    assert b["total"] == 3 and not b.get("entry")


def test_elements(client: Any, data: Any) -> None:
    b = search(client, "Patient?_id=p1&_elements=gender")
    res = b["entry"][0]["resource"]
    assert res["gender"] == "female" and "name" not in res
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])


def test_unknown_parameter_lenient_and_strict(client: Any, data: Any) -> None:
    b = search(client, "Patient?foo=bar&gender=male")
    assert ids(b) == {"p2", "p3"}
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "foo" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    r = client.get("/fhir/Patient?foo=bar", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    # RFC 7240: preferences may come on several Prefer lines; strict on the second line counts too
    two_lines = client.get("/fhir/Patient?foo=bar", headers=[("Prefer", "return=minimal"), ("Prefer", "handling=strict")])
    assert two_lines.status_code == 400


def test_compartment_search_and_everything(client: Any, data: Any) -> None:
    b = search(client, "Patient/p1/Observation")
    assert ids(b) == {"o1", "o2"}
    ev = search(client, "Patient/p1/$everything")
    assert {e["resource"]["id"] for e in ev["entry"]} == {"p1", "o1", "o2", "e1"}
    ev2 = search(client, "Patient/p1/$everything?_type=Observation&_count=1")
    assert len(ev2["entry"]) == 1
    assert any(link["relation"] == "next" for link in ev2["link"])


def test_everything_refuses_an_unknown_type_and_a_count_below_one(client: Any, data: Any) -> None:
    """An unknown _type used to answer an empty Bundle (read as "no such data"); _count=-1 was no limit
    on SQLite and a 500 on PostgreSQL."""
    for query, said in (("_type=Observation,Nonsense", "'Nonsense'"), ("_count=-1", "'_count'"), ("_count=0", "'_count'")):
        r = client.get(f"/fhir/Patient/p1/$everything?{query}")
        assert r.status_code == 400, (query, r.text)
        assert said in r.json()["issue"][0]["diagnostics"]


def test_deleted_resources_are_not_found(client: Any, data: Any) -> None:
    client.delete("/fhir/Observation/o1")
    assert ids(search(client, "Observation?code=2345-7")) == {"o2"}


def test_filter_clause_composes_into_other_statements(client: Any, data: Any) -> None:
    import sqlalchemy as sa

    from ehrgate.fhir.search.engine import filter_clause
    from ehrgate.fhir.search.query import parse_query
    from ehrgate.fhir.store.schema import resource

    store = client.app.state.store
    a = filter_clause(parse_query("Observation", [("patient", "p1"), ("code", "2345-7")]), "a_")
    b = filter_clause(parse_query("Observation", [("status", "preliminary")]), "b_")
    with store.reader() as conn:
        ids = set(conn.execute(sa.select(resource.c.res_id).where(sa.or_(a, b))).scalars())
    assert ids == {"o1", "o2", "o3"}


def test_a_decimal_written_with_its_trailing_zero_is_searchable(client: Any) -> None:
    """``13.20`` is kept as written (a Decimal, not the float 13.2) and still indexed as a number."""
    body = (b'{"resourceType": "Observation", "id": "dec1", "status": "final", "code": {"text": "potassium"}, '
            b'"valueQuantity": {"value": 13.20, "unit": "mmol/L", "system": "http://unitsofmeasure.org", '
            b'"code": "mmol/L"}}')
    assert client.put("/fhir/Observation/dec1", content=body, headers=FJ).status_code == 201
    assert b"13.20" in client.get("/fhir/Observation/dec1").content
    for query in ("value-quantity=13.2", "value-quantity=gt13", "value-quantity=13.20||mmol/L"):
        assert ids(client.get(f"/fhir/Observation?{query}").json()) == {"dec1"}, query


@pytest.mark.parametrize("stored,asked", [("Nu\u0301n\u0303ez", "Núñez"), ("Núñez", "Nu\u0301n\u0303ez")])
def test_exact_treats_composed_and_decomposed_accents_alike(client: Any, stored: str, asked: str) -> None:
    # search.html#string: :exact is case- and accent-sensitive, but "ñ" and "n" + U+0303 are the
    # same text in two Unicode forms: both sides are compared in NFC
    client.put("/fhir/Patient/nfc1", json={"resourceType": "Patient", "id": "nfc1", "name": [{"family": stored}]},
               headers=FJ)
    assert ids(search(client, f"Patient?family:exact={asked}")) == {"nfc1"}
    assert ids(search(client, "Patient?family:exact=Nunez")) == set()
    assert ids(search(client, "Patient?family:exact=núñez")) == set()


def test_exact_finds_decomposed_values_indexed_before_nfc(client: Any, store: Any) -> None:
    # Rows written before the index kept values in NFC hold the client's form; an NFD value is still
    # found without a reindex (the query asks for both forms)
    client.put("/fhir/Patient/nfd1", json={"resourceType": "Patient", "id": "nfd1", "name": [{"family": "Núñez"}]},
               headers=FJ)
    import sqlalchemy as sa

    with store.engine.begin() as conn:
        n = conn.execute(sa.text("UPDATE idx_string SET exact = :nfd WHERE exact = :nfc"),
                         {"nfd": "Nu\u0301n\u0303ez", "nfc": "Núñez"}).rowcount
    assert n >= 1
    assert ids(search(client, "Patient?family:exact=Núñez")) == {"nfd1"}

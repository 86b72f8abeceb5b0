"""Searches led by one exact token (``Observation?code=system|value``) walk the token index in storage
order a chunk at a time instead of listing every match first. These pin what that must keep: the same
pages, in the same order, as listing everything — across chunk boundaries, with other clauses that
reject most candidates, resources that carry the code twice, deleted resources, and previous links."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from ehrgate.fhir.bundles import process_transaction
from ehrgate.fhir.search.query import parse_query
from ehrgate.fhir.search.sql import ordered_lead
from ehrgate.fhir.store.service import Store

LOINC = "http://loinc.org"
FJ = {"Content-Type": "application/fhir+json"}


def _obs(i: int, code: str, status: str = "final", twice: bool = False) -> dict[str, Any]:
    codings = [{"system": LOINC, "code": code}]
    if twice:
        codings.append({"system": LOINC, "code": code, "display": "again"})
    return {"resourceType": "Observation", "id": f"o{i}", "status": status, "code": {"coding": codings},
            "subject": {"reference": f"Patient/p{i % 7}"}}


def _seed(store: Store) -> list[dict[str, Any]]:
    """700 Observations: every 3rd has the common code (some carry it twice); of those, every 5th is
    'amended'; a few are deleted afterwards."""
    resources = []
    for i in range(700):
        code = "8867-4" if i % 3 == 0 else f"other-{i % 11}"
        resources.append(_obs(i, code, status="amended" if i % 15 == 0 else "final", twice=i % 9 == 0))
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}} for r in resources]
    process_transaction(store, {"resourceType": "Bundle", "type": "transaction", "entry": entries},
                        frozenset({"Observation", "Patient"}))
    return resources


def _ids(client: Any, url: str) -> tuple[list[str], dict[str, str]]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    body = r.json()
    links = {link["relation"]: link["url"] for link in body.get("link", [])}
    return [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"], links


def _all_pages(client: Any, url: str) -> tuple[list[str], list[str]]:
    """Every id following next links, and then every id following previous links back."""
    pages: list[list[str]] = []
    while url:
        ids, links = _ids(client, url)
        pages.append(ids)
        url = links.get("next", "")
    forward = [i for page in pages for i in page]
    back: list[list[str]] = []
    url = links.get("previous", "")
    while url:
        ids, links = _ids(client, url)
        back.insert(0, ids)
        url = links.get("previous", "")
    return forward, [i for page in back for i in page] + pages[-1]


def _pk_order(ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda i: int(i[1:]))  # seeded in id order, so pk order = numeric order


def test_the_walk_is_used_only_where_it_applies() -> None:
    def lead(qs: str) -> Any:
        return ordered_lead(parse_query("Observation", parse_qsl(qs)), None, ())

    assert lead("code=http://loinc.org|8867-4") is not None
    assert lead("code=8867-4&status=final") is not None
    assert lead("code=8867-4&_sort=-date") is None
    assert lead("code=8867-4,other-1") is None, "two values: two ranges of the index, no single order"
    assert lead("code:not=8867-4") is None
    assert lead("subject=Patient/p1&code=8867-4") is None, "a reference is more selective and leads"
    assert ordered_lead(parse_query("Observation", parse_qsl("code=8867-4")), "p1", ()) is None


def test_pages_cross_chunks_and_match_the_full_listing(client: Any, store: Store) -> None:
    resources = _seed(store)
    client.delete("/fhir/Observation/o3")
    client.delete("/fhir/Observation/o600")
    expected = _pk_order([r["id"] for r in resources if r["code"]["coding"][0]["code"] == "8867-4"
                          and r["id"] not in ("o3", "o600")])
    forward, backward = _all_pages(client, f"/fhir/Observation?code={LOINC}|8867-4&_count=17")
    assert forward == expected, "each resource once (even those carrying the code twice), in storage order"
    assert backward == expected, "previous links walk back over the same pages"


def test_other_clauses_filter_every_chunk(client: Any, store: Store) -> None:
    resources = _seed(store)
    expected = _pk_order([r["id"] for r in resources
                          if r["code"]["coding"][0]["code"] == "8867-4" and r["status"] == "amended"])
    assert len(expected) == 47
    forward, backward = _all_pages(client, "/fhir/Observation?code=8867-4&status=amended&_count=5")
    assert forward == backward == expected
    ids, _ = _ids(client, "/fhir/Observation?code=8867-4&status=cancelled")
    assert ids == []


def test_total_and_post_search_agree(client: Any, store: Store) -> None:
    _seed(store)
    r = client.get(f"/fhir/Observation?code={LOINC}|8867-4&_total=accurate&_count=10").json()
    assert r["total"] == 234
    posted = client.post("/fhir/Observation/_search", data={"code": f"{LOINC}|8867-4", "_count": "10"},
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert [e["resource"]["id"] for e in posted["entry"]] == [e["resource"]["id"] for e in r["entry"]]

"""batch and transaction Bundles: atomicity, ordering, urn:uuid rewriting, conditional entries."""

from __future__ import annotations

from typing import Any

FJ = {"Content-Type": "application/fhir+json"}


def _patient(mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}], "name": [{"family": "Test"}]}


def _tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_transaction_rewrites_urn_uuid_references(client: Any) -> None:
    bundle = _tx(
        {
            "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"},
            },
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
            "resource": _patient("T-1"),
            "request": {"method": "POST", "url": "Patient"},
        },
    )
    r = client.post("/fhir", json=bundle, headers=FJ)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    obs_loc, pat_loc = (e["response"]["location"] for e in out["entry"])
    assert obs_loc.startswith("Observation/") and pat_loc.startswith("Patient/")
    pid = pat_loc.split("/")[1]
    obs = client.get("/fhir/" + obs_loc.split("/_history")[0]).json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_is_all_or_nothing(client: Any) -> None:
    bundle = _tx(
        {"resource": _patient("T-2"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "banana"}, "request": {"method": "POST", "url": "Patient"}},
    )
    r = client.post("/fhir", json=bundle, headers=FJ)
    assert r.status_code == 400
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    search = client.get("/fhir/Patient?identifier=urn:mrn|T-2").json()
    assert search["total"] == 0


def test_transaction_order_delete_before_create(client: Any) -> None:
    client.put("/fhir/Patient/p-ord", json={**_patient("T-3"), "id": "p-ord"}, headers=FJ)
    bundle = _tx(
        {"resource": {**_patient("T-3"), "id": "p-ord"}, "request": {"method": "PUT", "url": "Patient/p-ord"}},
        {"request": {"method": "DELETE", "url": "Patient?identifier=urn:mrn|T-3"}},
        {"request": {"method": "GET", "url": "Patient/p-ord"}},
    )
    r = client.post("/fhir", json=bundle, headers=FJ)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201") or statuses[0].startswith("200")
    assert statuses[2].startswith("200")
    assert client.get("/fhir/Patient/p-ord").status_code == 200


def test_transaction_conditional_create_matches_existing(client: Any) -> None:
    first = client.post("/fhir/Patient", json=_patient("T-4"), headers=FJ).json()["id"]
    bundle = _tx(
        {
            "fullUrl": "urn:uuid:33333333-3333-3333-3333-333333333333",
            "resource": _patient("T-4"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|T-4"},
        },
        {
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": "urn:uuid:33333333-3333-3333-3333-333333333333"},
            },
            "request": {"method": "POST", "url": "Encounter"},
        },
    )
    r = client.post("/fhir", json=bundle, headers=FJ)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"].startswith("200")
    enc = client.get("/fhir/" + entries[1]["response"]["location"].split("/_history")[0]).json()
    assert enc["subject"]["reference"] == f"Patient/{first}"


def test_transaction_conditional_update_by_identifier(client: Any) -> None:
    bundle = _tx(
        {
            "fullUrl": "urn:uuid:44444444-4444-4444-4444-444444444444",
            "resource": _patient("T-5"),
            "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|T-5"},
        },
    )
    a = client.post("/fhir", json=bundle, headers=FJ).json()
    b = client.post("/fhir", json=bundle, headers=FJ).json()
    loc_a = a["entry"][0]["response"]["location"].split("/_history")[0]
    loc_b = b["entry"][0]["response"]["location"].split("/_history")[0]
    assert loc_a == loc_b
    assert client.get("/fhir/Patient?identifier=urn:mrn|T-5").json()["total"] == 1


def test_batch_entries_fail_independently(client: Any) -> None:
    bundle = _tx(
        {"resource": _patient("B-1"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "banana"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient?identifier=urn:mrn|B-1"}},
        kind="batch",
    )
    r = client.post("/fhir", json=bundle, headers=FJ)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    assert out["entry"][0]["response"]["status"].startswith("201")
    assert out["entry"][1]["response"]["status"].startswith("400")
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert out["entry"][2]["resource"]["total"] == 1


def test_bundle_of_wrong_type_rejected(client: Any) -> None:
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=FJ)
    assert r.status_code == 400
    r = client.post("/fhir", json=_patient("x"), headers=FJ)
    assert r.status_code == 400


def _obs_for(reference: str) -> dict[str, Any]:
    return {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                         "subject": {"reference": reference}},
            "request": {"method": "POST", "url": "Observation"}}


def test_transaction_resolves_a_conditional_reference_to_its_one_match(client: Any) -> None:
    pid = client.post("/fhir/Patient", json=_patient("CR-1"), headers=FJ).json()["id"]
    client.post("/fhir/Patient", json=_patient("CR-other"), headers=FJ)
    r = client.post("/fhir", json=_tx(_obs_for("Patient?identifier=urn:mrn|CR-1")), headers=FJ)
    assert r.status_code == 200, r.text
    loc = r.json()["entry"][0]["response"]["location"].split("/_history")[0]
    assert client.get("/fhir/" + loc).json()["subject"]["reference"] == f"Patient/{pid}"
    assert client.get(f"/fhir/Observation?subject=Patient/{pid}").json()["total"] == 1, "the index row points at the match"


def test_transaction_fails_whole_when_a_conditional_reference_matches_none_or_several(client: Any) -> None:
    client.post("/fhir/Patient", json=_patient("CR-twice"), headers=FJ)
    client.post("/fhir/Patient", json=_patient("CR-twice"), headers=FJ)
    before = client.get("/fhir/Observation?_summary=count").json()["total"]
    for reference, words in (("Patient?identifier=urn:mrn|CR-nobody", "matches no resources"),
                             ("Patient?identifier=urn:mrn|CR-twice", "matches 2 resources")):
        r = client.post("/fhir", json=_tx(_obs_for("Patient/unrelated-but-fine"), _obs_for(reference)), headers=FJ)
        assert r.status_code == 412, r.text
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert words in outcome["issue"][0]["diagnostics"]
        assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource"]
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == before, "nothing was written"


def test_conditional_reference_to_an_unknown_type_is_a_400(client: Any) -> None:
    r = client.post("/fhir", json=_tx(_obs_for("Nonsense?identifier=x")), headers=FJ)
    assert r.status_code == 400
    assert "unknown resource type" in r.json()["issue"][0]["diagnostics"]

"""batch and transaction Bundles: atomicity, ordering, urn:uuid rewriting, conditional entries."""

from __future__ import annotations

from typing import Any

import pytest

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


def test_transaction_with_a_duplicate_full_url_is_400(client: Any) -> None:
    # bundle.html bdl-7: fullUrl is unique within a Bundle (unless versions differ)
    same = "urn:uuid:44444444-4444-4444-4444-444444444444"
    r = client.post("/fhir", json=_tx(
        {"fullUrl": same, "resource": _patient("FU-1"), "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": same, "resource": _patient("FU-2"), "request": {"method": "POST", "url": "Patient"}},
    ), headers=FJ)
    assert r.status_code == 400, r.text
    assert same in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient?identifier=urn:mrn|FU-1").json()["total"] == 0


def test_transaction_reference_to_a_urn_uuid_not_in_the_bundle_is_400(client: Any) -> None:
    # http.html#trules: a urn:uuid reference means an entry of this Bundle; stored as is it would dangle
    missing = "urn:uuid:55555555-5555-5555-5555-555555555555"
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": missing}}
    r = client.post("/fhir", json=_tx({"resource": obs, "request": {"method": "POST", "url": "Observation"}}), headers=FJ)
    assert r.status_code == 400, r.text
    assert missing in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Observation").json()["total"] == 0


@pytest.mark.parametrize("request_part", [
    {"method": "POST", "url": 5},
    {"method": "POST", "url": {"a": 1}},
    {"method": "PUT", "url": "Patient/x", "ifMatch": 5},
    {"method": "POST", "url": "Patient", "ifNoneExist": 5},
    {"method": "POST", "url": "Patient", "ifNoneExist": ["identifier=a"]},
])
@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_bundle_request_fields_of_the_wrong_json_type_are_400(client: Any, kind: str, request_part: dict[str, Any]) -> None:
    entry = {"resource": {**_patient("WT-1"), "id": "x"}, "request": request_part}
    r = client.post("/fhir", json=_tx(entry, kind=kind), headers=FJ)
    assert r.status_code == 400, r.text
    assert "Bundle.entry[0].request" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("full_url", [5, {"a": 1}, ["urn:uuid:x"]])
def test_a_full_url_that_is_not_a_string_is_400(client: Any, full_url: Any) -> None:
    entry = {"fullUrl": full_url, "resource": _patient("FU-3"), "request": {"method": "POST", "url": "Patient"}}
    r = client.post("/fhir", json=_tx(entry), headers=FJ)
    assert r.status_code == 400, r.text
    assert "Bundle.entry[0].fullUrl" in r.json()["issue"][0]["diagnostics"]


def test_a_patch_binary_whose_data_is_not_a_string_is_400(client: Any) -> None:
    client.put("/fhir/Patient/pb1", json={**_patient("PB-1"), "id": "pb1"}, headers=FJ)
    entry = {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": 5},
             "request": {"method": "PATCH", "url": "Patient/pb1"}}
    r = client.post("/fhir", json=_tx(entry), headers=FJ)
    assert r.status_code == 400, r.text


def test_a_transaction_holding_a_huge_integer_is_400_not_500(client: Any) -> None:
    raw = (b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},'
           b'"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},'
           b'"valueInteger":123456789012345678901234567890}}]}')
    r = client.post("/fhir", content=raw, headers=FJ)
    assert r.status_code == 400, r.text
    assert "valueInteger" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_an_operation_in_a_bundle_is_refused_not_run_as_a_search(client: Any, kind: str) -> None:
    client.post("/fhir/Patient", json=_patient("OP-1"), headers=FJ)
    r = client.post("/fhir", json=_tx({"request": {"method": "GET", "url": "Patient/$everything"}}, kind=kind), headers=FJ)
    if kind == "transaction":
        assert r.status_code == 400, r.text
        return
    response = r.json()["entry"][0]
    assert response["response"]["status"].startswith("400"), response
    assert "resource" not in response


def test_transaction_if_none_exist_with_several_matches_is_412(client: Any) -> None:
    """http.html#ccreate: a conditional create whose criteria match more than one resource fails
    (412), in a transaction as on its own; it must not add yet another one."""
    for _ in range(2):
        assert client.post("/fhir/Patient", json=_patient("DUP-7"), headers=FJ).status_code == 201
    entry = {"resource": _patient("DUP-7"), "request": {"method": "POST", "url": "Patient",
                                                        "ifNoneExist": "identifier=urn:mrn|DUP-7"}}
    r = client.post("/fhir", json=_tx(entry), headers=FJ)
    assert r.status_code == 412, r.text
    assert "matches 2 Patient resources" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient?identifier=urn:mrn|DUP-7").json()["total"] == 2


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_head_entries_answer_without_a_resource(client: Any, kind: str) -> None:
    # HEAD is GET without the body (RFC 9110 9.3.2): the entry's response has status, etag and
    # lastModified only
    pid = client.post("/fhir/Patient", json=_patient("T-HEAD"), headers=FJ).json()["id"]
    bundle = _tx(
        {"request": {"method": "HEAD", "url": f"Patient/{pid}"}},
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        kind=kind,
    )
    r = client.post("/fhir", json=bundle, headers=FJ)
    assert r.status_code == 200, r.text
    head, get = r.json()["entry"]
    assert "resource" not in head
    assert head["response"]["status"].startswith("200")
    assert head["response"]["etag"] == 'W/"1"' and head["response"]["lastModified"]
    assert get["resource"]["id"] == pid and get["response"]["etag"] == 'W/"1"'

"""ORM^O01 / OML^O21 → ServiceRequest (orders.py, service_request.py)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import convert_sample, current, errors, load, pick, resources

CASES: list[tuple[str, str, Any]] = [
    ("orm_o01_nw.hl7", "ServiceRequest.status", "active"),
    ("orm_o01_nw.hl7", "ServiceRequest.intent", "order"),
    ("orm_o01_nw.hl7", "ServiceRequest.priority", "stat"),
    ("orm_o01_nw.hl7", "ServiceRequest.code.coding[0].system", "http://www.ama-assn.org/go/cpt"),
    ("orm_o01_nw.hl7", "ServiceRequest.code.coding[0].code", "71020"),
    ("orm_o01_nw.hl7", "ServiceRequest.identifier[0].value", "ORD900"),
    ("orm_o01_nw.hl7", "ServiceRequest.identifier[0].type.coding[0].code", "PLAC"),
    ("orm_o01_nw.hl7", "ServiceRequest.occurrenceDateTime", "2024-04-10T12:00:00Z"),
    ("orm_o01_nw.hl7", "ServiceRequest.authoredOn", "2024-04-10T09:10:00Z"),
    ("orm_o01_nw.hl7", "ServiceRequest.requester.display", "Aaron Attend"),
    ("orm_o01_nw.hl7", "ServiceRequest.reasonCode[0].coding[0].code", "R05"),
    ("orm_o01_nw.hl7", "ServiceRequest.note[0].text", "Patient reports cough for 3 weeks"),
    ("orm_o01_nw.hl7", "Condition.code.coding[0].code", "R05"),
    ("orm_o01_nw.hl7", "Observation.valueQuantity.code", "Cel"),
    ("orm_o01_nw.hl7", "Encounter.identifier[0].value", "V20240410-3"),
    ("orm_o01_ca.hl7", "ServiceRequest.status", "revoked"),
    ("oml_o21.hl7", "ServiceRequest.status", "active"),
    ("oml_o21.hl7", "ServiceRequest.priority", "routine"),
    ("oml_o21.hl7", "ServiceRequest.occurrenceDateTime", "2024-04-11T09:00:00Z"),
    ("oml_o21.hl7", "Specimen.identifier[0].value", "S-8001"),
    # OBR-10 → Specimen.collection.collector (IG OBR[Specimen])
    ("oml_o21_people.hl7", "Specimen.collection.collector.display", "Pat Draw"),
]

PT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def test_order_people_become_a_provenance_of_the_order() -> None:
    """ORC-10 entered by, ORC-11 verified by, ORC-12 ordering provider, ORC-19 action by → agents of
    a Provenance whose target is the ServiceRequest (IG ORC[Provenance]); ORC-1 NW → CREATE."""
    result = convert_sample("oml_o21_people.hl7")
    bundle = result.bundle
    assert not errors(bundle) and not result.ignored_fields
    request = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    message_provenance, order_provenance = sorted(
        (e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"),
        key=lambda r: len(r["agent"]))
    assert order_provenance["target"] == [{"reference": request}]
    assert [(a["type"]["coding"][0]["code"], a["who"]["display"]) for a in order_provenance["agent"]] == [
        ("enterer", "Edna Entry"), ("verifier", "Victor Check"), ("author", "Carla Clinic"), ("performer", "Pat Draw")]
    assert order_provenance["agent"][0]["type"]["coding"][0]["system"] == PT
    assert order_provenance["activity"]["coding"][0]["code"] == "CREATE"
    assert order_provenance["recorded"] == order_provenance["occurredDateTime"] == "2024-04-12T07:55:00Z"
    # the message's Provenance lists what the message wrote, not the order's Provenance
    kinds = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    assert "Provenance" not in {kinds[t["reference"]] for t in message_provenance["target"]}


def test_an_order_without_entered_verified_or_action_by_has_no_order_provenance() -> None:
    assert len([e for e in convert_sample("oml_o21.hl7").bundle["entry"]
                if e["resource"]["resourceType"] == "Provenance"]) == 1


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_order_values(name: str, path: str, expected: Any) -> None:
    assert pick(convert_sample(name).bundle, path) == expected


def test_order_links_reasons_supporting_information_and_specimens() -> None:
    bundle = convert_sample("orm_o01_nw.hl7").bundle
    kinds = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    request = pick(bundle, "ServiceRequest")
    assert [kinds[r["reference"]] for r in request["reasonReference"]] == ["Condition"]
    assert [kinds[r["reference"]] for r in request["supportingInfo"]] == ["Observation"]
    assert kinds[pick(bundle, "ServiceRequest.encounter.reference")] == "Encounter"
    oml = convert_sample("oml_o21.hl7").bundle
    assert {e["fullUrl"]: e["resource"]["resourceType"] for e in oml["entry"]}[
        pick(oml, "ServiceRequest.specimen[0].reference")] == "Specimen"


def test_every_sample_is_valid_and_loads(store: Any) -> None:
    for name in ("orm_o01_nw.hl7", "orm_o01_ca.hl7", "oml_o21.hl7", "oml_o21_people.hl7"):
        bundle = convert_sample(name).bundle
        assert errors(bundle) == [], name
        load(store, bundle)
    orders = current(store, "ServiceRequest", "identifier=urn:ehrgate:id:EHR|ORD900")
    assert len(orders) == 1
    assert orders[0]["status"] == "revoked"


def test_orders_of_one_requisition_keep_their_own_answers(store: Any) -> None:
    """Two orders sharing one ORC-2 (a requisition number), each with an ask-at-order-entry OBX of the
    same code: each ServiceRequest's supportingInfo is its own answer, none lost or swapped."""
    bundle = convert_sample("orm_o01_requisition.hl7").bundle
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    answers = {r["code"]["coding"][0]["code"]: [by_url[s["reference"]]["valueCodeableConcept"]["coding"][0]["code"]
                                                for s in r["supportingInfo"]]
               for r in resources(bundle, "ServiceRequest")}
    assert answers == {"2345-7": ["Y"], "2093-3": ["N"]}
    assert errors(bundle) == []
    load(store, bundle)
    load(store, bundle)
    assert len(current(store, "ServiceRequest")) == 2
    assert len(current(store, "Observation")) == 2

"""ORM^O01 / OML^O21 → ServiceRequest (orders.py, service_request.py)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import convert_sample, current, errors, load, pick

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
]


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
    for name in ("orm_o01_nw.hl7", "orm_o01_ca.hl7", "oml_o21.hl7"):
        bundle = convert_sample(name).bundle
        assert errors(bundle) == [], name
        load(store, bundle)
    orders = current(store, "ServiceRequest", "identifier=urn:ehrgate:id:EHR|ORD900")
    assert len(orders) == 1
    assert orders[0]["status"] == "revoked"

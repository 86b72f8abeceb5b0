"""The invariants checked: ext-1, qty-3, bdl-1..5, dom-2/dom-4 (see invariants.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.validation import validate

from .helpers import issues_at
from .samples import blood_pressure, patient, transaction_bundle


def test_extension_with_both_value_and_extensions() -> None:
    resource = patient()
    resource["extension"][0]["valueString"] = "also a value"
    assert issues_at(resource) == {"Patient.extension[0]": "invariant"}


def test_extension_with_neither() -> None:
    resource = patient()
    resource["extension"][1] = {"url": "http://example.org/empty"}
    assert issues_at(resource) == {"Patient.extension[1]": "invariant"}


def test_extension_value_with_only_its_own_extension_counts_as_a_value() -> None:
    resource = patient()
    resource["extension"][1] = {"url": "http://example.org/x", "_valueCode": {"id": "c1"}}
    assert validate(resource) == []


def test_quantity_code_needs_system() -> None:
    obs = blood_pressure()
    del obs["component"][0]["valueQuantity"]["system"]
    assert issues_at(obs) == {"Observation.component[0].valueQuantity": "invariant"}


def _entry(**parts: Any) -> dict[str, Any]:
    return {"fullUrl": "urn:uuid:0b4c9e0c-3d3c-4b7e-8f6b-2f7f8e8f6a11", **parts}


@pytest.mark.parametrize(
    ("kind", "entry", "expected"),
    [
        ("transaction", _entry(resource={"resourceType": "Patient"}), {"Bundle.entry[0].request": "invariant"}),
        ("collection", _entry(resource={"resourceType": "Patient"}, request={"method": "GET", "url": "Patient"}),
         {"Bundle.entry[0].request": "invariant"}),
        ("transaction-response", _entry(resource={"resourceType": "Patient"}),
         {"Bundle.entry[0].response": "invariant"}),
        ("searchset", _entry(resource={"resourceType": "Patient"}, response={"status": "200"}),
         {"Bundle.entry[0].response": "invariant"}),
        ("collection", _entry(resource={"resourceType": "Patient"}, search={"mode": "match"}),
         {"Bundle.entry[0].search": "invariant"}),
        ("collection", _entry(), {"Bundle.entry[0]": "invariant"}),
        ("searchset", _entry(resource={"resourceType": "Patient"}, search={"mode": "match", "score": 1}), {}),
        ("history", _entry(request={"method": "DELETE", "url": "Patient/1"}, response={"status": "204"}), {}),
    ],
)
def test_bundle_entry_invariants(kind: str, entry: dict[str, Any], expected: dict[str, str]) -> None:
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
    assert issues_at(bundle) == expected


def test_total_only_in_search_and_history() -> None:
    assert validate({"resourceType": "Bundle", "type": "searchset", "total": 0}) == []
    assert issues_at({"resourceType": "Bundle", "type": "collection", "total": 0}) == {"Bundle.total": "invariant"}


def test_transaction_sample_passes_all_invariants() -> None:
    assert validate(transaction_bundle()) == []

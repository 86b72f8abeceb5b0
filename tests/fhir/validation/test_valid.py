"""Valid resources pass; the public surface is pinned."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import ehrgate.fhir.validation as validation
from ehrgate.fhir.validation import known_resource_types, validate

from .samples import ALL


def test_public_surface() -> None:
    assert validation.__all__ == ["known_resource_types", "validate"]


@pytest.mark.parametrize("make", ALL.values(), ids=list(ALL))
def test_sample_is_valid(make: Callable[[], dict[str, Any]]) -> None:
    assert validate(make()) == []


@pytest.mark.parametrize("make", ALL.values(), ids=list(ALL))
def test_validation_leaves_input_untouched(make: Callable[[], dict[str, Any]]) -> None:
    resource = make()
    before = json.dumps(resource, sort_keys=True)
    validate(resource)
    assert json.dumps(resource, sort_keys=True) == before


def test_known_resource_types_is_r4() -> None:
    types = known_resource_types()
    assert isinstance(types, frozenset)
    assert len(types) == 146  # R4 4.0.1 concrete resource types
    assert {"Patient", "Observation", "Bundle", "Binary", "Parameters", "MedicinalProduct"} <= types
    # abstract bases and R5-only types are not resource types here
    assert not {"Resource", "DomainResource", "Element", "ActorDefinition", "Citation"} & types


def test_every_known_type_validates_a_minimal_instance() -> None:
    """Only the required elements matter: each type reports exactly those, by name."""
    for rt in sorted(known_resource_types()):
        issues = validate({"resourceType": rt})
        assert all(i.code == "required" for i in issues), (rt, issues)
        assert all(i.expression and i.expression.startswith(f"{rt}.") for i in issues)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"resourceType": "Patient"}, []),
        ({"resourceType": "Basic", "code": {"text": "note"}}, []),
        ({"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}, []),
        ({"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 3}]}, []),
    ],
)
def test_small_valid_resources(resource: dict[str, Any], expected: list[Any]) -> None:
    assert validate(resource) == expected

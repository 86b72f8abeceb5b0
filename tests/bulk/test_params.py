"""Kick-off parameter parsing (pure): what is accepted, and the 400s that name what was wrong."""

from __future__ import annotations

import time

import pytest

from ehrgate.bulk.params import ExportRequest, parameters_items, parse_kickoff, parse_prefer
from ehrgate.fhir.errors import BadRequest
from ehrgate.fhir.validation import known_resource_types

KNOWN = frozenset(known_resource_types())


def parse(items: list[tuple[str, str]], level: str = "system", **kw: object) -> ExportRequest:
    return parse_kickoff(level, items, KNOWN, **kw)  # type: ignore[arg-type]


def test_defaults() -> None:
    req = parse([])
    assert req.types is None and req.since is None and req.type_filters == {} and not req.latest_provenance


def test_type_is_comma_separated_and_repeatable() -> None:
    req = parse([("_type", "Patient, Observation"), ("_type", "Condition,Patient")])
    assert req.types == ("Patient", "Observation", "Condition")


def test_type_filters_per_type_are_collected() -> None:
    req = parse([("_type", "Observation,Patient"), ("_typeFilter", "Observation?category=laboratory"),
                 ("_typeFilter", "Observation?code=8867-4,2345-7"), ("_typeFilter", "Patient?gender=female")])
    assert req.type_filters == {"Observation": ("category=laboratory", "code=8867-4,2345-7"),
                                "Patient": ("gender=female",)}


def test_v1_style_comma_separated_type_filters_split_at_the_next_type() -> None:
    req = parse([("_typeFilter", "Observation?code=a,b,Patient?gender=male")])
    assert req.type_filters == {"Observation": ("code=a,b",), "Patient": ("gender=male",)}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([("_type", "Nonsense")], "_type names 'Nonsense'"),
        ([("_typeFilter", "Observation")], "not a search on a resource type"),
        ([("_typeFilter", "Observation?nosuch=1")], "'nosuch' is not supported"),
        ([("_typeFilter", "Observation?_include=Observation:subject")], "result parameters are not allowed"),
        ([("_type", "Patient"), ("_typeFilter", "Observation?code=1")], "does not match any type in _type"),
        ([("_elements", "Patient..name")], "_elements item"),
        ([("includeAssociatedData", "RelevantProvenanceResources")], "not supported"),
        ([("includeAssociatedData", "Everything")], "not a known code"),
        ([("_outputFormat", "application/json")], "_outputFormat"),
        ([("organizeOutputBy", "Patient")], "'organizeOutputBy' is not supported"),
        ([("patient", "Patient/1")], "'patient' parameter is for POST"),
        ([("_since", "2024-02-30T00:00:00Z")], "_since"),
    ],
)
def test_unsupported_values_are_400_naming_the_parameter(items: list[tuple[str, str]], expected: str) -> None:
    with pytest.raises(BadRequest, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse(items)


def test_lenient_handling_turns_unsupported_into_warnings() -> None:
    req = parse([("organizeOutputBy", "Patient"), ("_type", "Patient,Nonsense"),
                 ("includeAssociatedData", "RelevantProvenanceResources")], lenient=True)
    assert req.types == ("Patient",)
    assert len(req.warnings) == 3
    assert all("ignored" in w for w in req.warnings)


def test_since_accepts_instants_and_a_plus_that_became_a_space() -> None:
    assert parse([("_since", "2024-01-01T00:00:00Z")]).since == 1704067200000
    assert parse([("_since", "2024-01-01T01:00:00 01:00")]).since == 1704067200000
    assert parse([("_since", "2024-01-01T00:00:00.250Z")]).since == 1704067200250


def test_elements_per_type() -> None:
    req = parse([("_elements", "id,Patient.name,Observation.code")])
    assert req.elements_for("Patient") == ["id", "name"]
    assert req.elements_for("Observation") == ["id", "code"]
    assert parse([]).elements_for("Patient") is None


def test_post_parameters() -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient,Observation"},
        {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
        {"name": "patient", "valueReference": {"reference": "http://x/fhir/Patient/p2"}},
        {"name": "includeAssociatedData", "valueCode": "LatestProvenanceResources"},
    ]}
    req = parse(parameters_items(body), "patient", allow_patient=True)
    assert req.patients == ("p1", "p2")
    assert req.types == ("Patient", "Observation")
    assert req.latest_provenance


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Parameters", "parameter": [{"valueString": "x"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueString": "Patient/1"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "a", "valueCode": "b"}]},
        {"resourceType": "Parameters", "parameter": 5},
        {"resourceType": "Parameters", "parameter": {"name": "_type", "valueString": "Patient"}},
        {"resourceType": "Parameters", "parameter": "_type"},
    ],
)
def test_bad_parameters_bodies(body: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        parameters_items(body)


def test_a_long_patient_list_is_parsed_in_linear_time() -> None:
    """The kick-off parses in the event loop: 50,000 ``patient`` parameters (a 3 MB body) must not
    stall the server (the de-duplication was quadratic: 12 s)."""
    items = [("patient", f"Patient/x{i}") for i in range(50_000)] + [("patient", "Patient/x7")]
    started = time.monotonic()
    req = parse(items, "patient", allow_patient=True)
    assert time.monotonic() - started < 2.0
    assert req.patients is not None and len(req.patients) == 50_000 and req.patients[:2] == ("x0", "x1")


def test_request_round_trips_through_json() -> None:
    req = parse([("_type", "Observation"), ("_typeFilter", "Observation?code=1"), ("_since", "2024-01-01T00:00:00Z"),
                 ("_elements", "code"), ("includeAssociatedData", "LatestProvenanceResources")])
    assert ExportRequest.from_json(req.to_json()) == req


def test_prefer_header() -> None:
    assert parse_prefer("respond-async, handling=lenient") == {"respond-async": "", "handling": "lenient"}
    assert parse_prefer('respond-async; handling="strict"')["handling"] == "strict"
    assert parse_prefer("") == {}

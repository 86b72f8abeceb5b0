"""Differential test: on JSON structure, our verdict agrees with fhirclient's strict model parsing.

fhirclient (a test dependency only) parses R4 JSON into its generated 4.0.1 models and raises on
unknown properties, wrong JSON types, arrays where single values belong (and back) and missing
min-1 elements. For valid resources and for mutants of them with exactly those faults, it is the
oracle: fhirclient rejects a mutant if and only if we report a ``structure`` or ``required`` issue.

Where fhirclient is known to be more lenient we do not ask it: it never looks inside ``_name``
objects, type-checks only the first item of a primitive array, and does not check empty strings,
code/uri/id formats, bindings or invariants.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrgate.fhir.validation import validate

from .helpers import FHIR_CORPUS
from .samples import ALL

fhirclient_factory = pytest.importorskip("fhirclient.models.fhirelementfactory").FHIRElementFactory

Path = tuple[Any, ...]


def fhirclient_accepts(resource: dict[str, Any]) -> bool:
    try:
        fhirclient_factory.instantiate(resource["resourceType"], copy.deepcopy(resource))
    except Exception:  # noqa: BLE001 - any failure to parse is a rejection
        return False
    return True


def we_accept(resource: dict[str, Any]) -> bool:
    return not [i for i in validate(resource) if i.code in ("structure", "required")]


def _resources() -> dict[str, dict[str, Any]]:
    found = {name: make() for name, make in ALL.items()}
    folder = FHIR_CORPUS / "us-core-examples"
    if folder.is_dir():  # a spread of real examples, when the corpus is present
        for path in sorted(folder.glob("*.json"))[::12]:
            found[path.name] = json.loads(path.read_text())
    return found


RESOURCES = _resources()
NAMES = sorted(RESOURCES)


def nodes(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) below the root, skipping ``_name`` objects fhirclient does not check."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("_") or key == "resourceType":
                continue
            yield (*path, key), item
            yield from nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*path, i), item
            yield from nodes(item, (*path, i))


def parent_of(root: dict[str, Any], path: Path) -> Any:
    target: Any = root
    for step in path[:-1]:
        target = target[step]
    return target


@pytest.mark.parametrize("name", NAMES)
def test_valid_resources_agree(name: str) -> None:
    resource = RESOURCES[name]
    assert fhirclient_accepts(resource) == we_accept(resource) == (name != "diagnosticreport-cbc.json")


def _mutate(resource: dict[str, Any], kind: str, pick: int) -> tuple[dict[str, Any], Path] | None:
    mutant = copy.deepcopy(resource)
    candidates = list(nodes(mutant))
    if kind == "unknown-key":
        objects = [(p, v) for p, v in candidates if isinstance(v, dict)] + [((), mutant)]
        path, target = objects[pick % len(objects)]
        target["zzUnknown"] = "x"
        return mutant, (*path, "zzUnknown")
    if kind == "wrong-json-type":
        # only first items of arrays: fhirclient type-checks nothing else in a primitive array
        usable = [(p, v) for p, v in candidates if not isinstance(v, list) and all(s == 0 for s in p if isinstance(s, int))]
        path, value = usable[pick % len(usable)]
        parent_of(mutant, path)[path[-1]] = 12345 if isinstance(value, str) else "12345"
        return mutant, path
    if kind == "array-vs-single":
        usable = [(p, v) for p, v in candidates if isinstance(p[-1], str)]
        path, value = usable[pick % len(usable)]
        parent_of(mutant, path)[path[-1]] = value[0] if isinstance(value, list) else [value]
        return mutant, path
    if kind == "delete":
        usable = [(p, v) for p, v in candidates if isinstance(p[-1], str)]
        path, _ = usable[pick % len(usable)]
        parent = parent_of(mutant, path)
        if len(parent) == 1 or f"_{path[-1]}" in parent:  # would leave {} or a dangling _name array
            return None
        del parent[path[-1]]
        return mutant, path
    raise AssertionError(kind)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES),
    kind=st.sampled_from(["unknown-key", "wrong-json-type", "array-vs-single", "delete"]),
    pick=st.integers(min_value=0, max_value=10_000),
)
def test_mutants_agree(name: str, kind: str, pick: int) -> None:
    resource = RESOURCES[name]
    if not fhirclient_accepts(resource):
        return
    mutated = _mutate(resource, kind, pick)
    if mutated is None:
        return
    mutant, path = mutated
    oracle = fhirclient_accepts(mutant)
    ours = we_accept(mutant)
    assert oracle == ours, (kind, path, [i.diagnostics for i in validate(mutant)])
    if kind != "delete":  # every other mutation is a fault by construction
        assert not oracle

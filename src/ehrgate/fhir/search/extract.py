"""Turn one resource into the search-index rows the store writes with it (runs on every write).

What each parameter type makes of an element is in ``rows.py``; this module finds the elements.
Paths are compiled once, at import, from params.REGISTRY (see params.py for the syntax) into one
tree per resource type, keyed by property name: the extractor walks the keys the resource has, and
below them the keys each element has, and runs only the parameters whose paths lead there. So an
absent element costs nothing, and parameters that share a prefix (``meta.*``) walk it once.

A composite parameter (http://hl7.org/fhir/R4/search.html#composite) is the cross product of its
token part's codings with its value part's values, per node of its base (the resource, or each
Observation.component).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ehrgate.fhir.search.compartment import patient_compartments
from ehrgate.fhir.search.normalize import normalize_string
from ehrgate.fhir.search.params import COMMON, REGISTRY, split_steps
from ehrgate.fhir.search.rows import (
    EMITTERS,
    NUMBER_TYPES,
    SPECIAL,
    Emitter,
    composite_row,
    telecom_node,
    token_node,
    token_pairs,
)
from ehrgate.fhir.search.rows import _parse_reference as _parse_reference  # pinned by tests/fhir/search
from ehrgate.fhir.search.types import IndexRows, SearchParam

__all__ = ["extract_index"]

_new = object.__new__


# --- path walking ------------------------------------------------------------------------------

# A compiled step: (property name, filter key or None, filter value)
_Step = tuple[str, "str | None", str]


def _compile_step(step: str) -> _Step:
    if step.endswith(")") and "(" in step:
        name, url = step[:-1].split("(", 1)
        return (name, "url", url)
    if step.endswith("]") and "[" in step:
        name, cond = step[:-1].split("[", 1)
        key, value = cond.split("=", 1)
        return (name, key, value)
    return (step, None, "")


def _select(value: Any, fkey: str | None, fval: str, found: list[Any]) -> None:
    """Append ``value`` (fanned out if a list) to ``found``, keeping items that pass the filter."""
    if type(value) is list:
        if fkey is None:
            found.extend(value)
        else:
            found.extend(v for v in value if type(v) is dict and v.get(fkey) == fval)
    elif fkey is None or (type(value) is dict and value.get(fkey) == fval):
        found.append(value)


def _walk(nodes: list[Any], steps: tuple[_Step, ...]) -> list[Any]:
    for name, fkey, fval in steps:
        found: list[Any] = []
        for node in nodes:
            if type(node) is dict:
                value = node.get(name)
                if value is not None:
                    _select(value, fkey, fval, found)
        if not found:
            return found
        nodes = found
    return nodes


# --- composites --------------------------------------------------------------------------------


def _find(node: dict[str, Any], steps: tuple[_Step, ...]) -> Any:
    """``_walk([node], steps)``, without its lists for the usual one plain step."""
    if len(steps) == 1 and steps[0][1] is None:
        v = node.get(steps[0][0])
        return () if v is None else v if type(v) is list else (v,)
    return _walk([node], steps)


def _composite_values(kind: str, nodes: Any) -> list[tuple[Any, ...]]:
    """The value part of a composite: CompositeRow's (value, value_system, value_code, value_unit,
    value_text)."""
    values: list[tuple[Any, ...]] = []
    for v in nodes:
        if kind == "quantity":
            if type(v) is dict and type(v.get("value")) in NUMBER_TYPES:
                values.append((float(v["value"]), v.get("system"), v.get("code"), v.get("unit"), None))
        elif kind == "string":
            if type(v) is str and v:
                values.append((None, None, None, None, normalize_string(v)))
        else:  # token
            values.extend((None, system, code, None, None) for system, code in token_pairs(v))
    return values


class _Composite:
    """The composite parameters of a type that share a base and a token part, compiled.

    The token and value parts are walked from each base node (the resource itself, or e.g. each
    Observation.component); the token part once per node for all of them. Parameters with the same
    value part too (``code-value-quantity`` and the root half of ``combo-code-value-quantity``)
    share one walk of it.
    """

    __slots__ = ("base", "parts", "token_steps", "trigger")

    def __init__(self, base: tuple[_Step, ...], token_steps: tuple[_Step, ...], trigger: str) -> None:
        self.base = base
        self.token_steps = token_steps
        self.trigger = trigger
        self.parts: list[tuple[tuple[_Step, ...], str, tuple[str, ...]]] = []
        """(value steps, value type, param codes)"""

    @staticmethod
    def add(rt: str, param: SearchParam, base_path: str, composites: dict[str, list[_Composite]]) -> None:
        """Compile one base of composite ``param`` into ``composites`` (by the top-level key without
        which it cannot produce a row)."""
        (token_code, token_path), (value_code, value_path) = param.components
        own = REGISTRY[rt]
        if own[token_code].type != "token":
            raise ValueError(f"Composite {rt}.{param.code}: first part {token_code!r} must be a token")
        kind = own[value_code].type
        if kind not in ("quantity", "string", "token"):
            raise ValueError(f"Composite {rt}.{param.code}: value part type {kind!r} is not indexable")
        base = tuple(_compile_step(s) for s in split_steps(base_path))
        token_steps = tuple(_compile_step(s) for s in split_steps(token_path))
        value_steps = tuple(_compile_step(s) for s in split_steps(value_path))
        trigger = base[0][0] if base else value_steps[0][0]
        group = composites.setdefault(trigger, [])
        comp = next((c for c in group if c.base == base and c.token_steps == token_steps), None)
        if comp is None:
            comp = _Composite(base, token_steps, trigger)
            group.append(comp)
        for i, (steps, their_kind, codes) in enumerate(comp.parts):
            if steps == value_steps and their_kind == kind:
                comp.parts[i] = (steps, kind, (*codes, param.code))
                return
        comp.parts.append((value_steps, kind, (param.code,)))

    def emit(self, resource: dict[str, Any], out: list[Any]) -> None:
        for node in _walk([resource], self.base) if self.base else (resource,):
            if type(node) is not dict:
                continue
            pairs: list[tuple[Any, Any]] | None = None
            for steps, kind, codes in self.parts:
                values = _composite_values(kind, _find(node, steps))
                if not values:
                    continue
                if pairs is None:
                    pairs = [pair for v in _find(node, self.token_steps) for pair in token_pairs(v)]
                for code in codes:
                    for system, token in pairs:
                        for kw in values:
                            out.append(composite_row(code, system, token, *kw))


# --- the compiled tables -----------------------------------------------------------------------

_LISTS = ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris", "composites")
# A parameter whose path ends at a tree node: (param code, node function, index of its list in
# _LISTS, targets).
_Plan = tuple[str, Emitter, int, frozenset[str]]


class _Branch:
    """One step from a property name: its filter, the parameters ending there, the steps below."""

    __slots__ = ("children", "fkey", "fval", "plans")

    def __init__(self, fkey: str | None, fval: str) -> None:
        self.fkey = fkey
        self.fval = fval
        self.plans: tuple[_Plan, ...] = ()
        self.children: dict[str, tuple[_Branch, ...]] = {}


_Tree = dict[str, tuple[_Branch, ...]]
_Compiled = tuple[_Tree, dict[str, list[_Composite]]]


def _add_path(tree: _Tree, steps: tuple[_Step, ...], plan: _Plan) -> None:
    level = tree
    branch = None
    for name, fkey, fval in steps:
        branches = level.get(name, ())
        branch = next((b for b in branches if b.fkey == fkey and b.fval == fval), None)
        if branch is None:
            branch = _Branch(fkey, fval)
            level[name] = (*branches, branch)
        level = branch.children
    assert branch is not None, "an empty path"
    branch.plans = (*branch.plans, plan)


def _compile(rt: str, params: dict[str, SearchParam]) -> _Compiled:
    """A type's parameters as a tree of the property names their paths take (see above)."""
    tree: _Tree = {}
    composites: dict[str, list[_Composite]] = {}
    for param in params.values():
        if param.type == "composite":
            for base in param.paths:
                _Composite.add(rt, param, base, composites)
            continue
        node, table = EMITTERS[param.type]
        node = SPECIAL.get((rt, param.code)) or node
        for path in param.paths:
            steps = tuple(_compile_step(s) for s in split_steps(path))
            this = telecom_node if node is token_node and steps[-1][0] == "telecom" else node
            _add_path(tree, steps, (param.code, this, _LISTS.index(table), frozenset(param.targets)))
    return tree, composites


def _chosen(value: Any, fkey: str, fval: str) -> list[Any]:
    """The items of ``value`` (one, or an array's) that pass a ``[key=value]`` / ``(url)`` filter."""
    if type(value) is list:
        return [v for v in value if type(v) is dict and v.get(fkey) == fval]
    return [value] if type(value) is dict and value.get(fkey) == fval else []


def _visit(node_keys: _Tree, item: dict[str, Any], lists: tuple[list[Any], ...]) -> None:
    """Index the properties of ``item`` (a resource or an element) that ``node_keys`` names, and
    descend into those whose parameters read deeper."""
    for key, sub in item.items():
        branches = node_keys.get(key)
        if branches is None or sub is None:
            continue
        for branch in branches:
            chosen = sub if branch.fkey is None else _chosen(sub, branch.fkey, branch.fval)
            for code, node, table, targets in branch.plans:
                out = lists[table]
                if type(chosen) is list:
                    for v in chosen:
                        node(code, v, out, targets)
                else:
                    node(code, chosen, out, targets)
            if branch.children:
                for element in chosen if type(chosen) is list else (chosen,):
                    if type(element) is dict:
                        _visit(branch.children, element, lists)


_COMMON_COMPILED = _compile("Resource", COMMON)
_COMPILED = {rt: _compile(rt, {**COMMON, **params}) for rt, params in REGISTRY.items()}
_FAST_INDEX = tuple(f.name for f in dataclasses.fields(IndexRows)) == (*_LISTS, "compartments")


def _new_index() -> IndexRows:
    if not _FAST_INDEX:  # pragma: no cover - only when IndexRows changes
        return IndexRows()
    rows = _new(IndexRows)  # what the dataclass __init__ makes, without its per-field calls
    d = rows.__dict__  # filled in place, as rows.py fills a row's
    for name in _LISTS:
        d[name] = []
    d["compartments"] = set()
    return rows


def extract_index(resource: dict[str, Any]) -> IndexRows:
    """Every search-index row for ``resource`` (parsed FHIR JSON), plus its patient compartments.

    A resource type without a table still gets the common parameters (``_id``, ``_lastUpdated``, ...).
    """
    rt = resource.get("resourceType")
    tree, composites = _COMPILED.get(rt, _COMMON_COMPILED) if type(rt) is str else _COMMON_COMPILED
    rows = _new_index()
    lists = tuple(rows.__dict__.values()) if _FAST_INDEX else tuple(getattr(rows, n) for n in _LISTS)
    _visit(tree, resource, lists)
    for key, group in composites.items():
        if key in resource:
            for composite in group:
                composite.emit(resource, rows.composites)
    if type(rt) is str:
        rid = resource.get("id")
        rows.compartments = patient_compartments(rt, rid if type(rid) is str else None, rows.references)
    return rows

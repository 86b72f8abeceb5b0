"""The search parameters EHRGate indexes: resource type -> code -> SearchParam, built from the
declarative table in ``param_table.py``.

Facts (code, type, element path, reference targets, composite parts) come from the FHIR R4
(4.0.1) SearchParameter registry, http://hl7.org/fhir/R4/searchparameter-registry.html, plus the
US Core 6.1 SearchParameters that have no base equivalent (race, ethnicity, gender-identity,
Condition asserted-date, Encounter discharge-disposition, CareTeam role, Goal description).
Where US Core re-declares a base parameter we point ``definition`` at the base one, as US Core
itself asks ("Servers and Clients SHOULD use the standard FHIR SearchParameter").

Path syntax (what ``extract.py`` evaluates; ``.`` separates steps, every step fans out over
arrays, the empty path ``""`` is the resource itself, used by composites):

- ``name``: a JSON property. Choice elements are listed once per concrete type
  (``effectiveDateTime|effectivePeriod``), as FHIR JSON spells them.
- ``name(URL)``: the items of ``name`` (an ``extension`` list) whose ``url`` equals URL, e.g.
  ``extension(http://hl7.org/fhir/us/core/StructureDefinition/us-core-race).extension(ombCategory).valueCoding``
  for ``extension.where(url = '...')``; the URL may contain dots.
- ``name[key=value]``: the items of ``name`` whose ``key`` equals ``value``, e.g.
  ``telecom[system=email]`` for ``telecom.where(system = 'email')``.

Reference ``targets`` are the types a reference may point to; an empty tuple means any type.
Where the spec narrows a shared element (``subject.where(resolve() is Patient)``) targets holds
only the narrowed type, and the extractor indexes only references of a listed type.

``_profile`` is a ``uri`` parameter here: R4 declares it ``uri`` over ``meta.profile`` (canonical),
and later releases call it ``reference``; we match canonical URLs exactly either way.
Not declared: ``special`` parameters (Location ``near``), ``_text``/``_content``/``_list``/``_has``/
``_type`` (not index-backed), ``phonetic`` (needs a phonetic algorithm), and composites whose parts
are dates or references (``code-value-date``, DocumentReference ``relationship``), which
``CompositeRow`` cannot carry.
"""

from __future__ import annotations

from ehrgate.fhir.search.param_table import COMMON_ROWS, TABLE, Row
from ehrgate.fhir.search.types import PARAM_TYPES, SearchParam

__all__ = ["COMMON", "REGISTRY", "params_for", "split_steps"]

_BASE = "http://hl7.org/fhir/SearchParameter/"
_US_CORE = "http://hl7.org/fhir/us/core/SearchParameter/"

_PRIMITIVE_SUFFIXES = {
    "Boolean": "boolean", "Code": "code", "Date": "date", "DateTime": "dateTime", "Decimal": "decimal",
    "Instant": "instant", "Integer": "integer", "String": "string", "Time": "time", "Uri": "uri",
}
_COMPLEX_SUFFIXES = ("CodeableConcept", "Coding", "Period", "Quantity", "Range", "Reference", "Timing", "Age")
# Choice elements ([x]) used in the table; their concrete JSON names become ``.ofType(T)`` in FHIRPath.
_CHOICE_PREFIXES = frozenset({
    "abatement", "code", "collected", "created", "deceased", "due", "effective", "item", "medication",
    "occurred", "occurrence", "onset", "performed", "probability", "scheduled", "source", "start", "value",
})


def split_steps(path: str) -> list[str]:
    """Split a table path on ``.`` outside ``(...)`` and ``[...]`` (URLs in filters contain dots)."""
    steps: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in path:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "." and depth == 0:
            steps.append("".join(current))
            current = []
        else:
            current.append(ch)
    steps.append("".join(current))
    return [s for s in steps if s]


def _fhirpath_step(step: str) -> str:
    if step.endswith(")") and "(" in step:
        name, url = step[:-1].split("(", 1)
        return f"{name}.where(url = '{url}')"
    if step.endswith("]") and "[" in step:
        name, cond = step[:-1].split("[", 1)
        key, value = cond.split("=", 1)
        return f"{name}.where({key} = '{value}')"
    for prefix in _CHOICE_PREFIXES:
        if step.startswith(prefix) and len(step) > len(prefix):
            suffix = step[len(prefix) :]
            if suffix in _PRIMITIVE_SUFFIXES:
                return f"{prefix}.ofType({_PRIMITIVE_SUFFIXES[suffix]})"
            if suffix in _COMPLEX_SUFFIXES:
                return f"{prefix}.ofType({suffix})"
    return step


def _expression(resource: str, row: Row) -> str:
    _code, _type, paths, targets, _d, narrow, _components = row
    parts = []
    for path in paths:
        text = ".".join([resource, *(_fhirpath_step(s) for s in split_steps(path))])
        if narrow:
            text += ".where(" + " or ".join(f"resolve() is {t}" for t in targets) + ")"
        parts.append(text)
    return " | ".join(parts)


def _definition(resource: str, code: str, defn: str) -> str:
    if not defn:
        return f"{_BASE}{resource}-{code}"
    return f"{_US_CORE}{defn}" if defn.startswith("us-core-") else f"{_BASE}{defn}"


# Expressions the spec writes in a form the path table cannot (derived values).
_EXPRESSIONS = {("Patient", "deceased"): "Patient.deceased.exists() and Patient.deceased != false"}


def _build(resource: str, rows: list[Row]) -> dict[str, SearchParam]:
    out: dict[str, SearchParam] = {}
    for row in rows:
        code, type_, paths, targets, defn, _narrow, components = row
        if type_ not in PARAM_TYPES:
            raise ValueError(f"Search parameter {resource}.{code}: type {type_!r} is not one of {PARAM_TYPES}")
        if code in out:
            raise ValueError(f"Search parameter {resource}.{code} is declared twice")
        out[code] = SearchParam(
            code=code,
            type=type_,
            resource=resource,
            paths=paths,
            targets=targets,
            components=components,
            expression=_EXPRESSIONS.get((resource, code)) or _expression(resource, row),
            definition=_definition(resource, code, defn),
        )
    return out


COMMON: dict[str, SearchParam] = _build("Resource", COMMON_ROWS)
REGISTRY: dict[str, dict[str, SearchParam]] = {rt: _build(rt, rows) for rt, rows in sorted(TABLE.items())}
_MERGED: dict[str, dict[str, SearchParam]] = {rt: {**COMMON, **params} for rt, params in REGISTRY.items()}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """The parameters searchable on ``resource_type``: the common ones plus its own.

    A type EHRGate has no table for still gets the common parameters (``_id``, ``_lastUpdated``, ...).
    The returned dict is shared; do not mutate it.
    """
    merged = _MERGED.get(resource_type)
    return merged if merged is not None else COMMON

"""Turn one resource into the search-index rows the store writes with it (runs on every write).

What each parameter type indexes follows FHIR R4 search, http://hl7.org/fhir/R4/search.html:

- string: a plain string; HumanName -> family, given, text, prefix, suffix; Address -> line, city,
  district, state, postalCode, country, text (one row per part, ``norm`` from normalize_string).
- token: Coding (system|code, display as text); CodeableConcept (each coding, plus a code-less row
  carrying ``text`` unless a coding's display already says the same); Identifier (system|value, Identifier.type codings for ``:of-type``, type.text
  as text); ContactPoint (value only: the spec's token table gives ContactPoint no system);
  code / id / string / uri (value, no system); boolean ("true" / "false").
- reference: ``Reference.reference`` - ``Type/id`` (also ``Type/id/_history/n``) gives
  target_type/target_id; an absolute URL keeps ``url`` and, when it ends in ``Type/id``, those too;
  ``urn:`` references keep only ``url``. Canonical strings keep only ``url``. Contained (``#x``)
  and identifier-only references are not indexed. A reference whose type is known and not among
  the parameter's targets is skipped (this is how ``subject.where(resolve() is Patient)`` works).
- date: date / dateTime / instant, Period (open ends become DATE_MIN / DATE_MAX), Timing.event.
  Values that do not parse are skipped: rejecting invalid resources is validation's job, and the
  index must never make a write fail.
- number, quantity (value, system, code, unit), uri: as written. A canonical with ``|version``
  (uri or reference) is indexed both as written and without the version, so a version-less search
  finds every version (http://hl7.org/fhir/R4/search.html#versions).
- composite: the cross product of the token part's codings with the value part's values, per
  node of the composite's base (the resource, or each Observation.component).

Patient.deceased (token) is derived as the spec's expression does: deceasedBoolean as written,
and "true" when deceasedDateTime is present.

Paths are compiled once, at import, from params.REGISTRY (see params.py for the syntax); the hot
loop walks only the resource's own top-level keys and builds rows without the per-field
``__setattr__`` of frozen dataclasses (see ``_FAST_ROWS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ehrgate.fhir.search.compartment import patient_compartments
from ehrgate.fhir.search.normalize import DATE_MAX, DATE_MIN, normalize_string, parse_fhir_date_range
from ehrgate.fhir.search.params import COMMON, REGISTRY, split_steps
from ehrgate.fhir.search.types import (
    CompositeRow,
    DateRow,
    IndexRows,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    SearchParam,
    StringRow,
    TokenRow,
    UriRow,
)

__all__ = ["extract_index"]

# --- row construction --------------------------------------------------------------------------
# A frozen dataclass sets every field through object.__setattr__; writing the instance dict in
# one call is about twice as fast, and extraction builds ~20 rows per resource. The rows are
# ordinary instances (equality, hashing, repr unchanged). If types.py changes a row's fields or
# adds __slots__, _FAST_ROWS turns false and the real constructors are used.

_ROW_FIELDS: dict[type[Any], tuple[str, ...]] = {
    TokenRow: ("param", "system", "code", "text", "type_system", "type_code"),
    StringRow: ("param", "norm", "exact"),
    ReferenceRow: ("param", "target_type", "target_id", "url"),
    DateRow: ("param", "low", "high"),
    QuantityRow: ("param", "value", "system", "code", "unit"),
    UriRow: ("param", "uri"),
    CompositeRow: ("param", "system", "code", "value", "value_system", "value_code", "value_unit", "value_text"),
}
_FAST_ROWS = all(
    tuple(f.name for f in dataclasses.fields(cls)) == names and "__slots__" not in cls.__dict__
    for cls, names in _ROW_FIELDS.items()
)
_new, _set = object.__new__, object.__setattr__


def _token(param: str, system: Any, code: Any, text: Any = None, ts: Any = None, tc: Any = None) -> TokenRow:
    row = _new(TokenRow)
    _set(row, "__dict__", {"param": param, "system": system, "code": code, "text": text,
                           "type_system": ts, "type_code": tc})
    return row


def _string(param: str, norm: str, exact: str) -> StringRow:
    row = _new(StringRow)
    _set(row, "__dict__", {"param": param, "norm": norm, "exact": exact})
    return row


def _reference(param: str, target_type: Any, target_id: Any, url: Any) -> ReferenceRow:
    row = _new(ReferenceRow)
    _set(row, "__dict__", {"param": param, "target_type": target_type, "target_id": target_id, "url": url})
    return row


def _date(param: str, low: int, high: int) -> DateRow:
    row = _new(DateRow)
    _set(row, "__dict__", {"param": param, "low": low, "high": high})
    return row


def _quantity(param: str, value: float, system: Any, code: Any, unit: Any) -> QuantityRow:
    row = _new(QuantityRow)
    _set(row, "__dict__", {"param": param, "value": value, "system": system, "code": code, "unit": unit})
    return row


def _uri(param: str, uri: str) -> UriRow:
    row = _new(UriRow)
    _set(row, "__dict__", {"param": param, "uri": uri})
    return row


_COMPOSITE_EMPTY = dict.fromkeys(_ROW_FIELDS[CompositeRow])


def _composite(param: str, system: Any, code: Any, value: dict[str, Any]) -> CompositeRow:
    row = _new(CompositeRow)
    _set(row, "__dict__", {**_COMPOSITE_EMPTY, "param": param, "system": system, "code": code, **value})
    return row


def _composite_slow(param: str, system: Any, code: Any, value: dict[str, Any]) -> CompositeRow:
    return CompositeRow(param, system, code, **value)


if not _FAST_ROWS:  # pragma: no cover - only when the contract in types.py changes
    _token, _string, _reference, _date = TokenRow, StringRow, ReferenceRow, DateRow  # type: ignore[assignment]
    _quantity, _uri, _composite = QuantityRow, UriRow, _composite_slow


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


# --- emitters: (param code, nodes, rows, targets) -> None -------------------------------------

_NAME_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
               "postalCode", "country")


def _norm_or_none(text: Any) -> str | None:
    return normalize_string(text) if type(text) is str and text else None


def _token_values(v: Any, code: str, out: list[TokenRow], telecom: bool = False) -> None:
    t = type(v)
    if t is str:
        out.append(_token(code, None, v))
    elif t is bool:
        out.append(_token(code, None, "true" if v else "false"))
    elif t is not dict:
        return
    elif telecom:
        value = v.get("value")
        if value is not None:
            out.append(_token(code, None, value))
    elif "coding" in v or ("text" in v and "code" not in v and "value" not in v):  # CodeableConcept
        text = v.get("text")
        norm_text = normalize_string(text) if type(text) is str and text else None
        for coding in v.get("coding") or ():
            if type(coding) is dict:
                display = _norm_or_none(coding.get("display"))
                if display == norm_text:
                    norm_text = None  # :text already matches via this coding's display row
                out.append(_token(code, coding.get("system"), coding.get("code"), display))
        if norm_text is not None:
            out.append(_token(code, None, None, norm_text))
    elif "value" in v or "type" in v or "assigner" in v:  # Identifier
        system, value, id_type = v.get("system"), v.get("value"), v.get("type")
        if type(id_type) is not dict:
            out.append(_token(code, system, value))
            return
        type_text = _norm_or_none(id_type.get("text"))
        codings = [c for c in id_type.get("coding") or () if type(c) is dict]
        for c in codings:
            out.append(_token(code, system, value, type_text, c.get("system"), c.get("code")))
        if not codings:
            out.append(_token(code, system, value, type_text))
    elif "code" in v or "system" in v:  # Coding
        out.append(_token(code, v.get("system"), v.get("code"), _norm_or_none(v.get("display"))))


def _emit_token(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    out = rows.tokens
    for v in nodes:
        _token_values(v, code, out)


def _emit_telecom(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    out = rows.tokens
    for v in nodes:
        _token_values(v, code, out, True)


def _emit_deceased(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    for v in nodes:
        flag = v if type(v) is bool else type(v) is str
        rows.tokens.append(_token(code, None, "true" if flag else "false"))


def _emit_string(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    out = rows.strings
    for v in nodes:
        if type(v) is str:
            if v:
                out.append(_string(code, normalize_string(v), v))
        elif type(v) is dict:  # HumanName, Address
            for part in _NAME_PARTS:
                p = v.get(part)
                if p is not None:
                    for s in p if type(p) is list else (p,):
                        if type(s) is str and s:
                            out.append(_string(code, normalize_string(s), s))


@lru_cache(maxsize=16_384)
def _cached_range(text: str) -> tuple[int, int] | None:
    try:
        return parse_fhir_date_range(text)
    except ValueError:
        return None


def _date_range(text: Any) -> tuple[int, int] | None:
    # Cached: in bulk loads many resources share timestamps (an encounter's observations, meta).
    return _cached_range(text) if type(text) is str else None


def _emit_date(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    out = rows.dates
    for v in nodes:
        if type(v) is str:
            r = _date_range(v)
            if r is not None:
                out.append(_date(code, r[0], r[1]))
        elif type(v) is dict:
            if "start" in v or "end" in v:  # Period
                start, end = v.get("start"), v.get("end")
                low = _date_range(start) if start is not None else (DATE_MIN, DATE_MIN)
                high = _date_range(end) if end is not None else (DATE_MAX, DATE_MAX)
                if low is not None and high is not None:
                    out.append(_date(code, low[0], high[1]))
            else:  # Timing
                for event in v.get("event") or ():
                    r = _date_range(event)
                    if r is not None:
                        out.append(_date(code, r[0], r[1]))


def _parse_reference(ref: str) -> tuple[str | None, str | None, str | None] | None:
    """``(target_type, target_id, url)`` for a Reference.reference, or None when not indexable."""
    if ref.startswith("#"):
        return None
    if ref.startswith("urn:"):
        return (None, None, ref)
    absolute = "://" in ref
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2:
        rtype, rid = parts[-2], parts[-1]
        if rid and rtype[:1].isupper() and rtype.isalpha() and (absolute or len(parts) == 2):
            return (rtype, rid, ref if absolute else None)
    return (None, None, ref) if absolute else None


def _emit_reference(code: str, nodes: list[Any], rows: IndexRows, targets: frozenset[str]) -> None:
    out = rows.references
    for v in nodes:
        if type(v) is dict:
            ref = v.get("reference")
            if type(ref) is not str:
                continue
            parsed = _parse_reference(ref)
            if parsed is None:
                continue
            rtype = parsed[0]
            if rtype is not None and targets and rtype not in targets:
                continue
            out.append(_reference(code, rtype, parsed[1], parsed[2]))
        elif type(v) is str and v:  # a canonical
            out.append(_reference(code, None, None, v))
            if "|" in v:
                out.append(_reference(code, None, None, v.split("|", 1)[0]))


def _emit_quantity(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    for v in nodes:
        if type(v) is dict:
            value = v.get("value")
            if type(value) is float or type(value) is int:  # not bool, not a decimal string
                rows.quantities.append(_quantity(code, float(value), v.get("system"), v.get("code"), v.get("unit")))


def _emit_number(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    for v in nodes:
        if type(v) in (int, float):
            rows.numbers.append(NumberRow(code, float(v)))


def _emit_uri(code: str, nodes: list[Any], rows: IndexRows, _t: frozenset[str]) -> None:
    for v in nodes:
        if type(v) is str and v:
            rows.uris.append(_uri(code, v))
            if "|" in v:
                rows.uris.append(_uri(code, v.split("|", 1)[0]))


_Emitter = Callable[[str, list[Any], IndexRows, frozenset[str]], None]
_EMITTERS: dict[str, _Emitter] = {
    "string": _emit_string,
    "token": _emit_token,
    "reference": _emit_reference,
    "date": _emit_date,
    "quantity": _emit_quantity,
    "number": _emit_number,
    "uri": _emit_uri,
}
# Parameters whose index value is derived rather than read (see module docstring).
_SPECIAL: dict[tuple[str, str], _Emitter] = {("Patient", "deceased"): _emit_deceased}


# --- composites --------------------------------------------------------------------------------


def _composite_values(kind: str, nodes: list[Any]) -> list[dict[str, Any]]:
    """The value part of a composite, as CompositeRow keyword arguments."""
    values: list[dict[str, Any]] = []
    for v in nodes:
        if kind == "quantity":
            if type(v) is dict and type(v.get("value")) in (int, float):
                values.append({"value": float(v["value"]), "value_system": v.get("system"),
                               "value_code": v.get("code"), "value_unit": v.get("unit")})
        elif kind == "string":
            if type(v) is str and v:
                values.append({"value_text": normalize_string(v)})
        else:  # token
            tokens: list[TokenRow] = []
            _token_values(v, "", tokens)
            values.extend({"value_system": t.system, "value_code": t.code} for t in tokens if t.code is not None)
    return values


class _Composite:
    """One base of one or more composite parameters, compiled.

    The token and value parts are walked from each base node (the resource itself, or e.g. each
    Observation.component). Parameters with the same base and parts (``code-value-quantity`` and
    the root half of ``combo-code-value-quantity``) share one walk.
    """

    __slots__ = ("codes", "base", "token_steps", "value_steps", "value_kind", "trigger")

    def __init__(self, rt: str, param: SearchParam, base_path: str) -> None:
        (token_code, token_path), (value_code, value_path) = param.components
        own = REGISTRY[rt]
        if own[token_code].type != "token":
            raise ValueError(f"Composite {rt}.{param.code}: first part {token_code!r} must be a token")
        self.codes: tuple[str, ...] = (param.code,)
        self.base = tuple(_compile_step(s) for s in split_steps(base_path))
        self.token_steps = tuple(_compile_step(s) for s in split_steps(token_path))
        self.value_steps = tuple(_compile_step(s) for s in split_steps(value_path))
        self.value_kind = own[value_code].type
        if self.value_kind not in ("quantity", "string", "token"):
            raise ValueError(f"Composite {rt}.{param.code}: value part type {self.value_kind!r} is not indexable")
        # The top-level key without which this composite cannot produce a row.
        self.trigger = self.base[0][0] if self.base else self.value_steps[0][0]

    @property
    def signature(self) -> tuple[Any, ...]:
        return (self.base, self.token_steps, self.value_steps, self.value_kind)

    def emit(self, resource: dict[str, Any], rows: IndexRows) -> None:
        for node in _walk([resource], self.base) if self.base else (resource,):
            values = _composite_values(self.value_kind, _walk([node], self.value_steps))
            if not values:
                continue
            tokens: list[TokenRow] = []
            for v in _walk([node], self.token_steps):
                _token_values(v, "", tokens)
            for code in self.codes:
                for t in tokens:
                    if t.code is not None:
                        for kw in values:
                            rows.composites.append(_composite(code, t.system, t.code, kw))


# --- the compiled tables -----------------------------------------------------------------------

# (param code, first step, remaining steps, emitter, targets)
_Plan = tuple[str, _Step, tuple[_Step, ...], _Emitter, frozenset[str]]
_Compiled = tuple[dict[str, list[_Plan]], dict[str, list[_Composite]]]


def _compile(rt: str, params: dict[str, SearchParam]) -> _Compiled:
    """Index a type's parameters by the top-level key each needs, so absent keys cost nothing."""
    by_key: dict[str, list[_Plan]] = {}
    composites: dict[str, list[_Composite]] = {}
    for param in params.values():
        if param.type == "composite":
            for base in param.paths:
                comp = _Composite(rt, param, base)
                group = composites.setdefault(comp.trigger, [])
                twin = next((c for c in group if c.signature == comp.signature), None)
                if twin is None:
                    group.append(comp)
                else:
                    twin.codes += comp.codes
            continue
        emitter = _SPECIAL.get((rt, param.code)) or _EMITTERS[param.type]
        for path in param.paths:
            steps = tuple(_compile_step(s) for s in split_steps(path))
            this = _emit_telecom if emitter is _emit_token and steps[-1][0] == "telecom" else emitter
            by_key.setdefault(steps[0][0], []).append((param.code, steps[0], steps[1:], this, frozenset(param.targets)))
    return by_key, composites


_COMMON_COMPILED = _compile("Resource", COMMON)
_COMPILED = {rt: _compile(rt, {**COMMON, **params}) for rt, params in REGISTRY.items()}


def extract_index(resource: dict[str, Any]) -> IndexRows:
    """Every search-index row for ``resource`` (parsed FHIR JSON), plus its patient compartments.

    A resource type without a table still gets the common parameters (``_id``, ``_lastUpdated``, ...).
    """
    rt = resource.get("resourceType")
    by_key, composites = _COMPILED.get(rt, _COMMON_COMPILED) if type(rt) is str else _COMMON_COMPILED
    rows = IndexRows()
    found: list[Any]
    for key, value in resource.items():
        plans = by_key.get(key)
        if plans is None or value is None:
            continue
        for code, (_name, fkey, fval), rest, emit, targets in plans:
            if fkey is None:
                found = value if type(value) is list else [value]
            else:
                found = []
                _select(value, fkey, fval, found)
            if rest and found:
                found = _walk(found, rest)
            if found:
                emit(code, found, rows, targets)
    for key, group in composites.items():
        if key in resource:
            for composite in group:
                composite.emit(resource, rows)
    if type(rt) is str:
        rid = resource.get("id")
        rows.compartments = patient_compartments(rt, rid if type(rid) is str else None, rows.references)
    return rows

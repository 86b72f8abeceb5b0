"""The index rows one element of a resource yields, per search parameter type (runs on every write).

What each parameter type indexes follows FHIR R4 search, http://hl7.org/fhir/R4/search.html:

- string: a plain string; HumanName -> family, given, text, prefix, suffix; Address -> line, city,
  district, state, postalCode, country, text (one row per part, ``norm`` from normalize_string).
- token: Coding (system|code, display as text); CodeableConcept (each coding, plus a code-less row
  carrying ``text`` unless a coding's display already says the same); Identifier (system|value,
  Identifier.type codings for ``:of-type``, type.text as text); ContactPoint (value only: the spec's
  token table gives ContactPoint no system); code / id / string / uri (value, no system); boolean
  ("true" / "false").
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

Patient.deceased (token) is derived as the spec's expression does: deceasedBoolean as written,
and "true" when deceasedDateTime is present.

Each emitter takes one element (``extract.py`` walks the paths and fans out over arrays) and appends
to the IndexRows list its type fills. Rows are built by ``tuple.__new__`` directly (see ``_FAST_ROWS``).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from ehrgate.fhir.search.normalize import (
    DATE_MAX,
    DATE_MIN,
    exact_string,
    normalize_string,
    parse_fhir_date_range,
)
from ehrgate.fhir.search.types import (
    CompositeRow,
    DateRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)

from ..jsonio import ExactNumber

__all__ = ["EMITTERS", "NUMBER_TYPES", "SPECIAL", "Emitter", "composite_row", "telecom_node", "token_node", "token_pairs"]

# --- row construction --------------------------------------------------------------------------
# The rows are NamedTuples (types.py), one C object each, no per-instance dict. Their generated
# ``__new__`` is a Python function that hands its arguments to ``tuple.__new__``; the builders
# below call ``tuple.__new__`` themselves, and extraction builds ~14 rows per resource. The row is
# the one the constructor makes (type, equality, hash, repr: tests/fhir/search/test_rows.py).
# Until 2026-12 the rows were frozen dataclasses, built by writing each field into the new
# instance's ``__dict__`` (a quarter of the cost of the dataclass __init__'s object.__setattr__
# per field) and read back by the store through that ``__dict__``. As NamedTuples they are cheaper
# to build, and the store takes a row as its column values (store/prepare.index_tuples): on the
# Synthea and converted-HL7 streams, extraction 1.10-1.12x and PreparedBatch.add (validate +
# extract + index tuples + JSON) 1.06-1.10x less CPU (medians of 40-resource chunks, old/new
# alternating in one process; A/A 0.98-1.04). If types.py changes a row's fields, _FAST_ROWS
# turns false and the real constructors are used.

_ROW_FIELDS: dict[type[Any], tuple[str, ...]] = {
    TokenRow: ("param", "system", "code", "text", "type_system", "type_code"),
    StringRow: ("param", "norm", "exact"),
    ReferenceRow: ("param", "target_type", "target_id", "url"),
    DateRow: ("param", "low", "high"),
    NumberRow: ("param", "value"),
    QuantityRow: ("param", "value", "system", "code", "unit"),
    UriRow: ("param", "uri"),
    CompositeRow: ("param", "system", "code", "value", "value_system", "value_code", "value_unit", "value_text"),
}
_FAST_ROWS = all(getattr(cls, "_fields", None) == names and issubclass(cls, tuple) for cls, names in _ROW_FIELDS.items())
_tuple = tuple.__new__


def _token(param: str, system: Any, code: Any, text: Any = None, ts: Any = None, tc: Any = None) -> TokenRow:
    return _tuple(TokenRow, (param, system, code, text, ts, tc))


def _string(param: str, norm: str, exact: str) -> StringRow:
    return _tuple(StringRow, (param, norm, exact))


def _reference(param: str, target_type: Any, target_id: Any, url: Any) -> ReferenceRow:
    return _tuple(ReferenceRow, (param, target_type, target_id, url))


def _date(param: str, low: int, high: int) -> DateRow:
    return _tuple(DateRow, (param, low, high))


def _quantity(param: str, value: float, system: Any, code: Any, unit: Any) -> QuantityRow:
    return _tuple(QuantityRow, (param, value, system, code, unit))


def _number(param: str, value: float) -> NumberRow:
    return _tuple(NumberRow, (param, value))


def _uri(param: str, uri: str) -> UriRow:
    return _tuple(UriRow, (param, uri))


def composite_row(param: str, system: Any, code: Any, value: Any, value_system: Any = None,
                  value_code: Any = None, value_unit: Any = None, value_text: Any = None) -> CompositeRow:
    return _tuple(CompositeRow, (param, system, code, value, value_system, value_code, value_unit, value_text))


if not _FAST_ROWS:  # pragma: no cover - only when the contract in types.py changes
    _token, _string, _reference, _date = TokenRow, StringRow, ReferenceRow, DateRow  # type: ignore[assignment]
    _number, _quantity, _uri, composite_row = NumberRow, QuantityRow, UriRow, CompositeRow


# --- emitters: (param code, one node, the row list, targets) -> None ---------------------------
# One call per node found; the caller fans out over arrays. ``out`` is the IndexRows list the
# parameter's type fills (the second item of its EMITTERS entry).

_NAME_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
               "postalCode", "country")


def _norm_or_none(text: Any) -> str | None:
    return normalize_string(text) if type(text) is str and text else None


def token_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    t = type(v)
    if t is str:
        out.append(_token(code, None, v))
    elif t is bool:
        out.append(_token(code, None, "true" if v else "false"))
    elif t is not dict:
        return
    elif "coding" in v or ("text" in v and "code" not in v and "value" not in v):  # CodeableConcept
        text = v.get("text")
        norm_text = normalize_string(text) if type(text) is str and text else None
        for coding in _listed(v.get("coding")):
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
        codings = [c for c in _listed(id_type.get("coding")) if type(c) is dict]
        for c in codings:
            out.append(_token(code, system, value, type_text, c.get("system"), c.get("code")))
        if not codings:
            out.append(_token(code, system, value, type_text))
    elif "code" in v or "system" in v:  # Coding
        out.append(_token(code, v.get("system"), v.get("code"), _norm_or_none(v.get("display"))))


def telecom_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    if type(v) is dict:  # ContactPoint: the value only (the spec's token table gives it no system)
        value = v.get("value")
        if value is not None:
            out.append(_token(code, None, value))
    else:
        token_node(code, v, out, _t)


def _deceased_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    flag = v if type(v) is bool else type(v) is str
    out.append(_token(code, None, "true" if flag else "false"))


def _string_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    if type(v) is str:
        if v:
            out.append(_string(code, normalize_string(v), exact_string(v)))
    elif type(v) is dict:  # HumanName, Address
        for part in _NAME_PARTS:
            p = v.get(part)
            if p is not None:
                for s in p if type(p) is list else (p,):
                    if type(s) is str and s:
                        out.append(_string(code, normalize_string(s), exact_string(s)))


@lru_cache(maxsize=16_384)
def _cached_range(text: str) -> tuple[int, int] | None:
    try:
        return parse_fhir_date_range(text)
    except ValueError:
        return None


def _date_range(text: Any) -> tuple[int, int] | None:
    # Cached: in bulk loads many resources share timestamps (an encounter's observations, meta).
    return _cached_range(text) if type(text) is str else None


def _date_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    if type(v) is str:
        r = _cached_range(v)
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
            for event in _listed(v.get("event")):
                r = _date_range(event)
                if r is not None:
                    out.append(_date(code, r[0], r[1]))


def _listed(value: Any) -> list[Any] | tuple[()]:
    """``value`` when it is a JSON array, else nothing to iterate: a repeating element written as a
    number or ``true`` (invalid, so validation refuses it before a write, but extraction also runs
    on what it is given) raised TypeError here, and the index must never make a write fail. A
    string or an object gave no rows before either (none of their items is an object)."""
    return value if type(value) is list else ()


@lru_cache(maxsize=16_384)
def _parse_reference(ref: str) -> tuple[str | None, str | None, str | None] | None:
    """``(target_type, target_id, url)`` for a Reference.reference, or None when not indexable.
    Cached: a subject or encounter reference recurs in every resource about it."""
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


def _reference_node(code: str, v: Any, out: list[Any], targets: frozenset[str]) -> None:
    if type(v) is dict:
        ref = v.get("reference")
        if type(ref) is str:
            parsed = _parse_reference(ref)
            if parsed is not None:
                rtype = parsed[0]
                if rtype is None or not targets or rtype in targets:
                    out.append(_reference(code, rtype, parsed[1], parsed[2]))
    elif type(v) is str and v:  # a canonical
        out.append(_reference(code, None, None, v))
        if "|" in v:
            out.append(_reference(code, None, None, v.split("|", 1)[0]))


NUMBER_TYPES = (float, int, Decimal, ExactNumber)
"""What a JSON number is parsed as: a float or int, or a ``Decimal`` where a float would change its
digits (``jsonio.loads``: ``13.20``; the HL7 converter writes OBX-5 so too). Not bool, not a string."""


def _quantity_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    if type(v) is dict:
        value: Any = v.get("value")
        if type(value) in NUMBER_TYPES:
            out.append(_quantity(code, float(value), v.get("system"), v.get("code"), v.get("unit")))


def _number_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    if type(v) in NUMBER_TYPES:
        out.append(_number(code, float(v)))


def _uri_node(code: str, v: Any, out: list[Any], _t: frozenset[str]) -> None:
    if type(v) is str and v:
        out.append(_uri(code, v))
        if "|" in v:
            out.append(_uri(code, v.split("|", 1)[0]))


Emitter = Callable[[str, Any, list[Any], frozenset[str]], None]
# Parameter type -> (node function, the IndexRows list it fills)
EMITTERS: dict[str, tuple[Emitter, str]] = {
    "string": (_string_node, "strings"),
    "token": (token_node, "tokens"),
    "reference": (_reference_node, "references"),
    "date": (_date_node, "dates"),
    "quantity": (_quantity_node, "quantities"),
    "number": (_number_node, "numbers"),
    "uri": (_uri_node, "uris"),
}
# Parameters whose index value is derived rather than read (see module docstring).
SPECIAL: dict[tuple[str, str], Emitter] = {("Patient", "deceased"): _deceased_node}


def token_pairs(v: Any) -> list[tuple[Any, Any]]:
    """``(system, code)`` of each row ``token_node`` makes of ``v`` that has a code: the token
    part of a composite."""
    t = type(v)
    if t is str:
        return [(None, v)]
    if t is bool:
        return [(None, "true" if v else "false")]
    if t is not dict:
        return []
    if "coding" in v or ("text" in v and "code" not in v and "value" not in v):  # CodeableConcept
        return [(c.get("system"), c.get("code")) for c in _listed(v.get("coding"))
                if type(c) is dict and c.get("code") is not None]
    if "value" in v or "type" in v or "assigner" in v:  # Identifier: one row per type coding
        value = v.get("value")
        if value is None:
            return []
        id_type = v.get("type")
        codings = sum(1 for c in _listed(id_type.get("coding")) if type(c) is dict) if type(id_type) is dict else 0
        return [(v.get("system"), value)] * max(1, codings)
    if "code" in v or "system" in v:  # Coding
        return [(v.get("system"), v.get("code"))] if v.get("code") is not None else []
    return []

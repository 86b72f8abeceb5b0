"""Parse a FHIR search query string into typed clauses (http://hl7.org/fhir/R4/search.html).

Pure: no database. The SQL builder (``engine.py``) turns clauses into index-table queries.
Parameters are AND-ed across repetitions and OR-ed across comma-separated values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import InvalidSearch, Issue
from .normalize import exact_string, normalize_string, parse_fhir_date_range
from .results import check_result
from .types import SearchParam

__all__ = [
    "Clause",
    "ParsedQuery",
    "RESULT_PARAMS",
    "parse_query",
    "split_values",
]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format", "_pretty",
     "_cursor", "_contained", "_containedType", "_getpages", "_since", "_type", "_outputFormat"}
)
_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "of-type", "missing"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"missing", "below", "above"},
    "composite": {"missing"},
}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


@dataclass(frozen=True)
class Value:
    """One OR-alternative of a parameter, already interpreted for its type."""

    prefix: str = "eq"
    text: str = ""
    system: str | None = None
    code: str | None = None
    low: float = 0.0
    high: float = 0.0
    number: float = 0.0
    target_type: str | None = None
    target_id: str | None = None
    url: str | None = None
    any_system: bool = True
    # composite: the token part and the value part
    parts: tuple[Value, ...] = ()


@dataclass
class Clause:
    param: SearchParam
    modifier: str | None
    values: list[Value]
    missing: bool | None = None
    chain: ParsedQuery | None = None
    """For ``subject:Patient.name=x``: the query on the referenced type."""
    chain_types: tuple[str, ...] = ()
    has: tuple[str, str] | None = None
    """For ``_has:Observation:patient:code=x``: (source type, reference param); chain holds the query."""


@dataclass
class ParsedQuery:
    res_type: str
    clauses: list[Clause] = field(default_factory=list)
    result: dict[str, list[str]] = field(default_factory=dict)
    """Result parameters (``_count``, ``_include``, ...) by name, without values that are ignored."""
    unknown: list[str] = field(default_factory=list)
    ignored: list[Issue] = field(default_factory=list)
    """Result parameter values ignored under lenient handling, one warning each (``results.py``)."""


def split_values(raw: str) -> list[str]:
    """Split on commas not escaped as ``\\,`` (search.html#escaping)."""
    out, cur, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            cur.append(raw[i : i + 2])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\,$|])", r"\1", text)


def _split_unescaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    parts, cur, i, n = [], [], 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or n < maxsplit):
            parts.append("".join(cur))
            cur = []
            n += 1
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _prefix(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[2].isalpha():
        return text[:2], text[2:]
    return "eq", text


def _date_value(code: str, text: str) -> Value:
    prefix, rest = _prefix(text)
    try:
        low, high = parse_fhir_date_range(rest)
    except ValueError:
        raise InvalidSearch(
            f"Search parameter '{code}' has value {text!r}, which is not a valid date "
            "(expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.sss]][Z|+hh:mm]]]])."
        ) from None
    return Value(prefix=prefix, text=rest, low=low, high=high)


def _number(code: str, text: str) -> tuple[float, float, float]:
    """(value, low, high): the implicit range of a number's significant precision (search.html#number)."""
    if not _NUMBER.match(text):
        raise InvalidSearch(f"Search parameter '{code}' has value {text!r}, which is not a number.")
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise InvalidSearch(f"Search parameter '{code}' has value {text!r}, which is not a number.") from None
    value = float(dec)
    if not math.isfinite(value):
        raise InvalidSearch(f"Search parameter '{code}' has value {text!r}, which is out of range.")
    exponent = dec.as_tuple().exponent
    half = 0.5 * 10 ** (exponent if isinstance(exponent, int) else 0)
    return value, value - half, value + half


def _number_value(code: str, text: str) -> Value:
    prefix, rest = _prefix(text)
    value, low, high = _number(code, rest)
    return Value(prefix=prefix, text=rest, number=value, low=low, high=high)


def _quantity_value(code: str, text: str) -> Value:
    parts = _split_unescaped(text, "|", 2)
    prefix, num = _prefix(parts[0])
    value, low, high = _number(code, num)
    system = _unescape(parts[1]) if len(parts) > 1 and parts[1] else None
    unit = _unescape(parts[2]) if len(parts) > 2 and parts[2] else None
    return Value(prefix=prefix, text=num, number=value, low=low, high=high, system=system, code=unit)


def _token_value(text: str) -> Value:
    if "|" in text.replace("\\|", ""):
        system, code = _split_unescaped(text, "|", 1)
        return Value(
            text=text,
            system=_unescape(system) if system else None,
            code=_unescape(code) if code else None,
            any_system=False,
        )
    return Value(text=text, code=_unescape(text), any_system=True)


def _reference_value(text: str, base_url: str) -> Value:
    text = _unescape(text)
    if base_url and text.startswith(base_url.rstrip("/") + "/"):
        text = text[len(base_url.rstrip("/")) + 1 :]
    if "://" in text or text.startswith("urn:"):
        return Value(text=text, url=text)
    pieces = text.split("/")
    if len(pieces) == 2 and pieces[0][:1].isupper():
        return Value(text=text, target_type=pieces[0], target_id=pieces[1])
    if len(pieces) == 4 and pieces[2] == "_history":
        return Value(text=text, target_type=pieces[0], target_id=pieces[1])
    return Value(text=text, target_id=text)


def _value(param: SearchParam, modifier: str | None, text: str, base_url: str) -> Value:
    kind = param.type
    if kind == "string" or (kind == "token" and modifier == "text"):
        return Value(text=normalize_string(_unescape(text)) if modifier != "exact" else exact_string(_unescape(text)))
    if kind == "token":
        return _token_value(text)
    if kind == "reference":
        if modifier == "identifier":
            return _token_value(text)
        return _reference_value(text, base_url)
    if kind == "date":
        return _date_value(param.code, text)
    if kind == "number":
        return _number_value(param.code, text)
    if kind == "quantity":
        return _quantity_value(param.code, text)
    if kind == "uri":
        return Value(text=_unescape(text))
    if kind == "composite":
        pieces = _split_unescaped(text, "$", 1)
        if len(pieces) != 2:
            raise InvalidSearch(
                f"Search parameter '{param.code}' has value {text!r}; a composite value is 'code$value'."
            )
        token = _token_value(pieces[0])
        second = pieces[1]
        if "|" in second.replace("\\|", "") or _NUMBER.match(_prefix(second)[1]):
            try:
                other = _quantity_value(param.code, second)
            except InvalidSearch:
                other = _token_value(second)
        else:
            other = _token_value(second)
        return Value(text=text, parts=(token, other))
    raise InvalidSearch(f"Search parameter '{param.code}' of type {kind} is not supported.")


def parse_query(
    res_type: str,
    items: list[tuple[str, str]],
    *,
    base_url: str = "",
    strict: bool = False,
    _depth: int = 0,
) -> ParsedQuery:
    """Parse query pairs for ``res_type``. Unknown parameters go to ``unknown``, result parameter
    values EHRGate cannot honour to ``ignored`` (400 for either if strict)."""
    from .params import params_for

    known = params_for(res_type)
    query = ParsedQuery(res_type)
    for key, raw in items:
        if "\x00" in raw or "\x00" in key:  # no stored value holds U+0000 (validation refuses it)
            raise InvalidSearch(f"Search parameter {key!r} has a NUL character (%00) in it; remove it.")
        if key in RESULT_PARAMS:
            issue = check_result(key, raw, strict=strict, searched=res_type or None)
            if issue is not None:
                query.ignored.append(issue)
                continue
            query.result.setdefault(key, []).append(raw)
            continue
        if key in ("_include:iterate", "_revinclude:iterate", "_include:recurse", "_revinclude:recurse"):
            issue = check_result(key, raw, strict=strict)
            if issue is not None:
                query.ignored.append(issue)
                continue
            # R4 spells it _include:iterate=Type:param; keep one internal form: Type:param:iterate
            query.result.setdefault(key.split(":")[0], []).append(raw + ":iterate")
            continue
        if key.startswith("_has:"):
            query.clauses.append(_parse_has(res_type, key, raw, base_url, strict, _depth))
            continue
        name, _, rest = key.partition(":")
        chain_text = ""
        if "." in name:
            name, _, chain_text = name.partition(".")
        modifier: str | None = rest or None
        if modifier and "." in modifier:
            modifier, _, chain_text = modifier.partition(".")
        param = known.get(name)
        if param is None:
            query.unknown.append(key)
            if strict:
                raise InvalidSearch(f"Search parameter '{name}' is not supported for {res_type}.")
            continue
        if chain_text:
            query.clauses.append(_parse_chain(param, modifier, chain_text, raw, base_url, strict, _depth))
            continue
        if modifier and modifier[:1].isupper() and param.type == "reference":
            # :Type modifier (search.html#reference): restrict the target type.
            if param.targets and modifier not in param.targets:
                raise InvalidSearch(f"Modifier ':{modifier}' on '{name}' names no type it refers to; "
                                    f"expected one of {', '.join(param.targets)}.")
            values = [_reference_value(v, base_url) for v in split_values(raw)]
            values = [
                Value(text=v.text, target_type=modifier, target_id=v.target_id or v.text, url=None) for v in values
            ]
            query.clauses.append(Clause(param, None, values))
            continue
        if modifier and modifier not in _MODIFIERS.get(param.type, set()):
            raise InvalidSearch(f"Modifier ':{modifier}' is not supported on search parameter '{name}' ({param.type}).")
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise InvalidSearch(f"Search parameter '{key}' takes true or false, not {raw!r}.")
            query.clauses.append(Clause(param, modifier, [], missing=raw == "true"))
            continue
        values = [_value(param, modifier, v, base_url) for v in split_values(raw) if v != ""]
        if not values:
            continue
        query.clauses.append(Clause(param, modifier, values))
    return query


def _parse_chain(
    param: SearchParam, type_modifier: str | None, chain_text: str, raw: str, base_url: str, strict: bool, depth: int
) -> Clause:
    if depth >= 1:
        raise InvalidSearch("Only one level of chaining is supported.")
    if param.type != "reference":
        raise InvalidSearch(f"Search parameter '{param.code}' is not a reference; it cannot be chained.")
    from .params import params_for

    targets = (type_modifier,) if type_modifier else tuple(t for t in param.targets if chain_text.split(":")[0] in params_for(t))
    if not targets:
        raise InvalidSearch(
            f"Chained parameter '{param.code}.{chain_text}': no target type of '{param.code}' has a search parameter "
            f"'{chain_text}'. Name the type, e.g. '{param.code}:Patient.{chain_text}'."
        )
    inner = parse_query(targets[0], [(chain_text, raw)], base_url=base_url, strict=True, _depth=depth + 1)
    return Clause(param, None, [], chain=inner, chain_types=targets)


def _parse_has(res_type: str, key: str, raw: str, base_url: str, strict: bool, depth: int) -> Clause:
    # _has:Observation:patient:code=1234-5 (search.html#has)
    parts = key.split(":", 3)
    if len(parts) != 4 or not parts[1] or not parts[2] or not parts[3]:
        raise InvalidSearch(f"'{key}' is not a valid _has parameter; expected _has:Type:reference:parameter.")
    if depth >= 1:
        raise InvalidSearch("Only one level of _has is supported.")
    from .params import params_for

    source, ref_code, inner_key = parts[1], parts[2], parts[3]
    ref = params_for(source).get(ref_code)
    if ref is None or ref.type != "reference":
        raise InvalidSearch(f"'{key}': {source} has no reference search parameter '{ref_code}'.")
    inner = parse_query(source, [(inner_key, raw)], base_url=base_url, strict=True, _depth=depth + 1)
    return Clause(ref, None, [], chain=inner, has=(source, ref_code))


def result_int(query: ParsedQuery, name: str, default: int, maximum: int) -> int:
    raw = query.result.get(name)
    if not raw:
        return default
    try:
        value = int(raw[-1])
    except ValueError:
        raise InvalidSearch(f"'{name}' has value {raw[-1]!r}; expected a whole number.") from None
    if value < 0:
        raise InvalidSearch(f"'{name}' has value {value}; expected zero or more.")
    return min(value, maximum)


def describe(query: ParsedQuery) -> dict[str, Any]:  # pragma: no cover - debugging aid
    return {"type": query.res_type, "clauses": [(c.param.code, c.modifier, c.values) for c in query.clauses]}

"""JSON in and out of the store.

The store keeps the client's JSON, not a model's re-serialisation. orjson (fast) parses bodies,
but it reads ``1.50`` as the float 1.5, and FHIR decimals carry their precision
(http://hl7.org/fhir/R4/datatypes.html#decimal). So a body whose text holds a number that a float
would change is parsed with simplejson into ``Decimal`` values instead (``ExactNumber``: a
``Decimal`` that remembers the text it was read from), and orjson writes each back as that text -
``1e5`` stays ``1e5``, ``13.20`` stays ``13.20`` - (a ``Fragment``); a ``Decimal`` made elsewhere
goes out as its own digits. Validation and indexing accept ``Decimal`` as a
number. Search results embed the stored bytes as they are, without parsing them again.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import simplejson

from .errors import BadRequest

__all__ = ["ExactNumber", "dumps", "is_number", "json_depth", "loads", "needs_exact", "parse_body"]

# Numbers whose float round trip would change their text: trailing zeros after the point,
# exponents, or more digits than a double keeps - each followed by what may follow a JSON number
# (space, comma, bracket or brace). False positives (inside strings) only cost speed; the follower
# keeps the commonest ones out: milliseconds of a timestamp ("10:20:30.530+00:00") and OIDs
# ("urn:oid:2.16.840.1.113883.19.4.6"), which sent 90% of the lines of a Bulk Data NDJSON export to
# the slow parser. One leading digit for all three (then the alternatives) is ~4x faster to scan.
_RISKY_NUMBER = re.compile(rb"[0-9](?:\.[0-9]*0|[eE][+-]?[0-9]+|[0-9.]{16,})(?=[\s,}\]]|$)")


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of objects and arrays, stopping as soon as ``limit`` is exceeded."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return deepest


def needs_exact(raw: bytes) -> bool:
    """True when a float round trip could change a number in ``raw`` (then parse with ``loads``)."""
    return _RISKY_NUMBER.search(raw) is not None


def loads(raw: bytes | str) -> Any:
    """Parse JSON keeping decimal precision where a float would lose it. Raises ValueError.

    Compact JSON (an NDJSON line, the engine's own Bundles, most machine-made bodies) is parsed by
    orjson first and written back: when that gives the same bytes, every number kept its text and
    the value stands. That costs a fraction of the ``_RISKY_NUMBER`` scan, which Python's regex
    engine runs at ~70 MB/s (a bundle of a converted HL7 message: ~0.3 ms, more than orjson's
    parse) and which also flags numbers a float keeps (Synthea's 17-digit measurements). When the
    bytes differ (a number like ``13.20``, an escape orjson writes otherwise), simplejson parses
    exactly, without the scan. Other JSON (pretty-printed, ``": "`` separators) takes the scan."""
    data = raw.encode() if isinstance(raw, str) else raw
    if _looks_compact(data):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the path below reports it as before
        else:
            if orjson.dumps(value) == data.strip():
                return value
            return simplejson.loads(data, parse_float=_exact_number)
    if _RISKY_NUMBER.search(data):
        return simplejson.loads(data, parse_float=_exact_number)
    return orjson.loads(data)


def _looks_compact(data: bytes) -> bool:
    """No line break or ``": "`` / ``", "`` separator in the first 256 bytes (a line's own end
    aside): JSON written without spaces, which orjson writes back byte for byte when its numbers
    survive a float."""
    head = data[:256].rstrip()
    return b"\n" not in head and b'": ' not in head and b'", ' not in head


class ExactNumber(Decimal):
    """A JSON number as a ``Decimal`` (its value) that keeps the text it was written as (``dumps``
    writes that text back: ``Decimal("1e5")`` alone prints ``1E+5``). Arithmetic gives plain
    ``Decimal``; pickling keeps the text."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> ExactNumber:
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExactNumber, (self.text,))


def _exact_number(text: str) -> float | Decimal:
    """A float when it prints back as written (most numbers), else the exact number, with its text.
    Keeping floats where they are exact lets those resources take orjson's fast path when dumped."""
    value = float(text)
    return value if repr(value) == text else ExactNumber(text)


def parse_body(raw: bytes, max_depth: int = 64) -> Any:
    """Parse a request body; raise BadRequest naming the problem on malformed or too-deep JSON."""
    if not raw or not raw.strip():
        raise BadRequest("The request body is empty; expected a FHIR resource in JSON.")
    try:
        value = loads(raw)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).split("\n")[0] if not isinstance(exc, RecursionError) else "nesting too deep"
        raise BadRequest(f"The request body is not valid JSON: {reason}.") from None
    if json_depth(value, max_depth) > max_depth:
        raise BadRequest(f"The request body nests JSON deeper than {max_depth} levels.")
    return value


def _exact(value: Any) -> Any:
    """orjson's hook for what it cannot serialise: a ``Decimal`` goes out as its own digits."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment((value.text if type(value) is ExactNumber else str(value)).encode())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, pretty: bool = False) -> bytes:
    """Serialise with orjson; a ``Decimal`` keeps its exact digits (``13.20`` stays ``13.20``)."""
    try:
        return orjson.dumps(value, default=_exact, option=orjson.OPT_INDENT_2 if pretty else 0)
    except TypeError:
        return simplejson.dumps(
            value,
            use_decimal=True,
            ensure_ascii=False,
            indent=2 if pretty else None,
            separators=(",", ": ") if pretty else (",", ":"),
        ).encode()


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)

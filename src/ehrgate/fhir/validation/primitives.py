"""Checks for the R4 primitive datatypes, as they arrive from a JSON parser.

Each check takes the parsed JSON value and returns ``None`` when it is valid, or a short phrase
saying what was expected (the caller adds the element path and the bad value). The formats are the
regular expressions and value domains of http://hl7.org/fhir/R4/datatypes.html#primitive, with the
JSON representation of http://hl7.org/fhir/R4/json.html#primitive: booleans and numbers are JSON
booleans and numbers, everything else is a JSON string, and no string may be empty.

``WRONG_JSON_TYPE`` marks a failure of JSON shape (an ``"active": "true"`` string where a boolean
belongs) rather than of format, so the caller can report ``structure`` instead of ``value``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..jsonio import ExactNumber

__all__ = ["CHECKS", "MEMO_TYPES", "PRIMITIVE_TYPES", "WRONG_JSON_TYPE", "Memo", "check_date_parts"]

Check = Callable[[Any], "str | None"]

WRONG_JSON_TYPE = "\x00"  # prefix of a message that is about JSON shape, stripped before use

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_STRING = 1024 * 1024  # datatypes.html#string: strings SHALL NOT exceed 1MB

_YEAR = r"(?P<y>[0-9]{4})"
_MONTH = r"(?P<m>0[1-9]|1[0-2])"
_DAY = r"(?P<d>0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"

DATE_RE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?")
DATETIME_RE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?")
INSTANT_RE = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}")
TIME_RE = re.compile(_TIME)
CODE_RE = re.compile(r"[^\s]+(\s[^\s]+)*")
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
OID_RE = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NO_SPACE_RE = re.compile(r"\S+")
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_DELETE = str.maketrans("", "", _B64_ALPHABET)
_WS_DELETE = str.maketrans("", "", " \t\r\n\f\v")

_DATE_EXPECTED = "a date YYYY, YYYY-MM or YYYY-MM-DD"
_DATETIME_EXPECTED = "a dateTime YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm|-hh:mm)"
_INSTANT_EXPECTED = "an instant YYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm|-hh:mm)"
# datatypes.html#string: no control characters below U+0020 but tab, CR and LF. U+0000 is refused
# outright: it means nothing in clinical text and PostgreSQL cannot store it in a text column.
_NO_NUL = "{} without the NUL character U+0000"


def check_date_parts(match: re.Match[str]) -> str | None:
    """Dates SHALL be valid dates (datatypes.html#date): no year 0000, no 30 February."""
    year = int(match["y"])
    if year == 0:
        return "a year from 0001"
    day = match["d"]
    if day is not None and int(day) > 28 and int(day) > calendar.monthrange(year, int(match["m"]))[1]:
        return "a real calendar day"
    return None


def _string_like(expected: str) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not str:
            return WRONG_JSON_TYPE + f"a JSON string ({expected})"
        if not value:
            return f"{expected}, not an empty string"
        if len(value) > MAX_STRING:
            return f"{expected} of at most 1MB"
        if "\x00" in value:
            return _NO_NUL.format(expected)
        return None

    return check


def _regex(pattern: re.Pattern[str], expected: str) -> Check:
    fullmatch = pattern.fullmatch

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return WRONG_JSON_TYPE + f"a JSON string ({expected})"
        if fullmatch(value) is None:
            return expected
        if "\x00" in value:
            return _NO_NUL.format(expected)
        return None

    return check


def _dated(pattern: re.Pattern[str], expected: str) -> Check:
    fullmatch = pattern.fullmatch

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return WRONG_JSON_TYPE + f"a JSON string ({expected})"
        match = fullmatch(value)
        if match is None:
            return expected
        problem = check_date_parts(match)
        return f"{expected} with {problem}" if problem else None

    return check


def _integer(low: int, expected: str) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not int:  # bool is a subclass of int: `type` keeps it out
            return WRONG_JSON_TYPE + f"a JSON number ({expected})"
        if not low <= value <= INT32_MAX:
            return f"{expected} in {low}..{INT32_MAX}"
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if type(value) is bool else WRONG_JSON_TYPE + "a JSON boolean true or false"


def _decimal(value: Any) -> str | None:
    kind = type(value)
    if kind is float or kind is int:
        return None
    # Bodies whose decimals a float would change are parsed into Decimal (see fhir/jsonio.py).
    if (kind is Decimal or kind is ExactNumber) and value.is_finite():
        return None
    return WRONG_JSON_TYPE + "a JSON number (decimal)"


def _base64(value: Any) -> str | None:
    """RFC 4648 base64; whitespace is tolerated, as the R4 regex ``(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+`` does."""
    if type(value) is not str:
        return WRONG_JSON_TYPE + "a JSON string (base64Binary)"
    compact = value.translate(_WS_DELETE)
    if not compact or len(compact) % 4 or compact.translate(_B64_DELETE):
        return "base64Binary: groups of 4 characters from A-Z a-z 0-9 + / ="
    return None


def _xhtml(value: Any) -> str | None:
    """narrative.html#xhtml: the content is an XHTML <div> element in the XHTML namespace."""
    if type(value) is not str:
        return WRONG_JSON_TYPE + "a JSON string (xhtml)"
    stripped = value.lstrip()
    if not stripped.startswith("<div"):
        return "XHTML whose root element is <div xmlns=\"http://www.w3.org/1999/xhtml\">"
    tag_end = stripped.find(">")
    if "http://www.w3.org/1999/xhtml" not in stripped[: tag_end if tag_end > 0 else len(stripped)]:
        return "a <div> root element with xmlns=\"http://www.w3.org/1999/xhtml\""
    return None


CHECKS: dict[str, Check] = {
    "boolean": _boolean,
    "integer": _integer(INT32_MIN, "a 32-bit integer"),
    "positiveInt": _integer(1, "a positiveInt"),
    "unsignedInt": _integer(0, "an unsignedInt"),
    "decimal": _decimal,
    "string": _string_like("a string"),
    "markdown": _string_like("markdown"),
    "code": _regex(CODE_RE, "a code: no leading, trailing or repeated whitespace"),
    "id": _regex(ID_RE, "an id: 1-64 characters from A-Z a-z 0-9 - ."),
    "uri": _regex(_NO_SPACE_RE, "a uri without whitespace"),
    "url": _regex(_NO_SPACE_RE, "a url without whitespace"),
    "canonical": _regex(_NO_SPACE_RE, "a canonical URL without whitespace"),
    "oid": _regex(OID_RE, "an oid: urn:oid: followed by a dotted OID such as 2.16.840.1"),
    "uuid": _regex(UUID_RE, "a uuid: urn:uuid: followed by a lower-case RFC 4122 UUID"),
    "date": _dated(DATE_RE, _DATE_EXPECTED),
    "dateTime": _dated(DATETIME_RE, _DATETIME_EXPECTED),
    "instant": _dated(INSTANT_RE, _INSTANT_EXPECTED),
    "time": _regex(TIME_RE, "a time hh:mm:ss[.sss]"),
    "base64Binary": _base64,
    "xhtml": _xhtml,
}

PRIMITIVE_TYPES = frozenset(CHECKS)

# String types whose check is a regex: worth remembering valid values (system URIs, extension URLs,
# codes and profile URLs repeat across nearly every resource written).
MEMO_TYPES = frozenset({"code", "id", "uri", "url", "canonical", "oid", "uuid", "date", "dateTime", "instant", "time"})


class Memo:
    """A bounded set of values already found valid: strings of one primitive type, or (definitions.py,
    ``TypeDef.valid``) the serialised JSON of one datatype's values.

    Checks are pure functions of the value, so a hit is as good as a check. The set is cleared when
    full rather than evicting one by one: a simple bound that keeps the frequent values warm.
    ``set`` operations are atomic, so concurrent validations may share it.
    """

    __slots__ = ("limit", "max_length", "values")

    MAX_LENGTH = 256  # longer values are rare and not worth keeping

    def __init__(self, limit: int = 4096, max_length: int = MAX_LENGTH) -> None:
        self.limit = limit
        self.max_length = max_length
        self.values: set[Any] = set()

    def add(self, value: str | bytes) -> None:
        if len(value) <= self.max_length:
            if len(self.values) >= self.limit:
                self.values.clear()
            self.values.add(value)

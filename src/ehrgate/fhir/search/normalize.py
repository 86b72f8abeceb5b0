"""Value normalisation shared by index extraction (write time) and the query builder (read time).

Both sides must call the same functions, or a value written one way is searched for another way.

- ``normalize_string``: the comparison form for string parameters. FHIR R4 search
  (http://hl7.org/fhir/R4/search.html#string) says string matching is case- and
  accent-insensitive and "SHOULD ignore ... combining characters"; we fold case, drop combining
  marks after compatibility decomposition and collapse runs of whitespace.
- ``exact_string``: the form ``:exact`` compares, the value in Unicode NFC: exact matching is case-
  and accent-sensitive, but a composed "ñ" and "n" + U+0303 are the same text.
- ``parse_fhir_date_range``: a FHIR ``date`` / ``dateTime`` / ``instant``
  (http://hl7.org/fhir/R4/datatypes.html#dateTime) or a search date value
  (http://hl7.org/fhir/R4/search.html#date) as the inclusive range of milliseconds since the
  epoch that its precision covers: ``2023`` is the whole year, ``2023-05-01T10:00:00+02:00`` is
  that one second. A value with a time but no offset, and every date without a time, is taken as
  UTC: the spec leaves the zone of such values to the server, and UTC keeps the index independent
  of the machine's clock settings.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, timedelta
from datetime import date as _date
from datetime import datetime as _datetime
from functools import lru_cache

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "exact_string",
    "normalize_string",
    "parse_fhir_date_range",
]

# Open ends of a Period (no start / no end). Outside every real date (years 0001-9999) yet exact
# in a double and a 64-bit integer, so SQLite, PostgreSQL and JSON all carry them unchanged.
DATE_MIN = -(2**53)
DATE_MAX = 2**53

_EXPECTED = "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm|-hh:mm]"
_MS_PER_DAY = 86_400_000
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH_ORDINAL = _date(1970, 1, 1).toordinal()
_EPOCH_UTC = _datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = _datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)


@lru_cache(maxsize=65_536)
def normalize_string(value: str) -> str:
    """Return the comparison form of ``value``: case-folded, accents removed, whitespace collapsed.

    The fold is Unicode's compatibility caseless form, NFKD(casefold(NFKD(casefold(NFD(s))))),
    (Unicode 15, section 3.13, D146): it splits precomposed letters (``ñ`` -> ``n`` + U+0303) and
    compatibility forms (``ﬁ`` -> ``fi``, ``℠`` -> ``sm``) and folds what they decompose to; the
    combining marks are then dropped.
    """
    if value.isascii():
        return " ".join(value.lower().split())
    nfkd = unicodedata.normalize
    decomposed = nfkd("NFKD", nfkd("NFKD", nfkd("NFD", value).casefold()).casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.split())


def exact_string(value: str) -> str:
    """``value`` in NFC (UAX #15); ASCII text, nearly every value, is returned as it is."""
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _month_days(year: int, month: int) -> int:
    return 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month]


def _day_ms(year: int, month: int, day: int, text: str) -> int:
    """Milliseconds from the epoch to the start of a (proleptic Gregorian) day, validating it."""
    try:
        return (_date(year, month, day).toordinal() - _EPOCH_ORDINAL) * _MS_PER_DAY
    except ValueError:
        raise _bad(text) from None


def _bad(text: str) -> ValueError:
    return ValueError(f"{text!r} is not a valid FHIR date ({_EXPECTED})")


def _digits(text: str) -> bool:
    return text.isdigit() and text.isascii()


def parse_fhir_date_range(text: str) -> tuple[int, int]:
    """Return the inclusive ``(low, high)`` range, in ms since the epoch, that ``text`` denotes.

    The precision of the value sets the width of the range (FHIR R4 search: date parameters are
    always ranges): a year, a month, a day, a minute, a second, or the fraction of a second written
    (``.5`` covers 500-599 ms; digits past milliseconds are truncated). Offsets run to +/-14:00
    and a leap second (``:60``) is accepted, as in the FHIR dateTime regex.

    Raises ``ValueError`` naming the value and the accepted formats.
    """
    n = len(text)
    if n < 4 or not _digits(text[:4]) or text[:4] == "0000":
        raise _bad(text)
    year = int(text[:4])
    if n == 4:
        low = _day_ms(year, 1, 1, text)
        return low, low + (366 if _is_leap(year) else 365) * _MS_PER_DAY - 1
    if n < 7 or text[4] != "-" or not _digits(text[5:7]):
        raise _bad(text)
    if n == 7:
        month = int(text[5:7])
        low = _day_ms(year, month, 1, text)
        return low, low + _month_days(year, month) * _MS_PER_DAY - 1
    if n < 10 or text[7] != "-" or not _digits(text[8:10]):
        raise _bad(text)
    if n == 10:
        low = _day_ms(year, int(text[5:7]), int(text[8:10]), text)
        return low, low + _MS_PER_DAY - 1
    return _parse_date_time(text, n)


def _parse_date_time(text: str, n: int) -> tuple[int, int]:
    """The ``YYYY-MM-DDThh:mm[:ss[.f+]][Z|+hh:mm|-hh:mm]`` case, checked by position, converted in C."""
    # Split off the zone, then check the shape of what is left; datetime.fromisoformat converts
    # (and range-checks) but accepts more ISO 8601 forms than FHIR does, so the shape is ours.
    if text[-1] == "Z":
        core = text[:-1]
    elif n >= 22 and text[-6] in "+-" and text[-3] == ":":
        core = text[:-6]
        if not (_digits(text[-5:-3]) and _digits(text[-2:])) or int(text[-5:-3]) > 14 or int(text[-2:]) > 59:
            raise _bad(text)
    else:
        core = text
    m = len(core)
    if m < 16 or core[10] != "T" or core[13] != ":" or not _digits(core[11:13]) or not _digits(core[14:16]):
        raise _bad(text)
    width = 60_000  # minute precision unless seconds follow
    leap = False
    iso = text
    if m > 16:
        if m < 19 or core[16] != ":" or not _digits(core[17:19]):
            raise _bad(text)
        width = 1000
        if core[17:19] == "60":  # a leap second: parse as :59 and add the second back
            leap = True
            iso = iso[:17] + "59" + iso[19:]
        if m > 19:
            digits = core[20:]
            if core[19] != "." or not _digits(digits):
                raise _bad(text)
            width = 10 ** (3 - len(digits)) if len(digits) < 3 else 1
            if len(digits) > 6:  # fromisoformat takes at most microseconds
                iso = iso[:26] + iso[20 + len(digits) :]
    try:
        moment = _datetime.fromisoformat(iso)
    except ValueError:
        raise _bad(text) from None
    epoch = _EPOCH_NAIVE if moment.tzinfo is None else _EPOCH_UTC  # no zone: taken as UTC
    low = (moment - epoch) // _ONE_MS + (1000 if leap else 0)
    if width > 1:
        low -= low % width  # drop sub-precision digits (e.g. the 4th+ fraction digits)
    return low, low + width - 1

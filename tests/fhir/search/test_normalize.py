"""normalize.py: string folding and FHIR date ranges (search.html#string, #date; datatypes.html#dateTime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehrgate.fhir.search.normalize import DATE_MAX, DATE_MIN, normalize_string, parse_fhir_date_range


def ms(*args: int, tz: timezone = UTC) -> int:
    """Milliseconds since the epoch of a datetime, computed independently with the stdlib."""
    moment = datetime(*args, tzinfo=tz)  # type: ignore[misc,arg-type]
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# --- strings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ñúñez", "nunez"),
        ("nunez", "nunez"),
        ("NUÑEZ", "nunez"),
        ("Zoë  Saldaña", "zoe saldana"),
        ("  Chalmers\t\nPeter  ", "chalmers peter"),
        ("Straße", "strasse"),  # casefold, not lower
        ("İstanbul", "istanbul"),  # the dot left by casefolding İ is a combining mark too
        ("ﬁnn", "finn"),  # NFKD compatibility decomposition
        ("Ångström", "angstrom"),
        ("O'Brien-Smith", "o'brien-smith"),  # punctuation is kept
        ("", ""),
        ("Дмитрий", "дмитрии"),  # й is и + combining breve
        ("Łukasz", "łukasz"),  # Ł has no decomposition; left as is
    ],
)
def test_normalize_string(raw: str, expected: str) -> None:
    assert normalize_string(raw) == expected


def test_accented_and_plain_spellings_meet() -> None:
    assert normalize_string("Ñúñez") == normalize_string("nunez") == normalize_string("NUNEZ")


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_string(text)
    assert normalize_string(once) == once
    assert once == " ".join(once.split())


# --- dates -------------------------------------------------------------------------------------

PLUS2 = timezone(timedelta(hours=2))
MINUS5 = timezone(timedelta(hours=-5))


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        # precision: year, month, day
        ("2023", ms(2023, 1, 1), ms(2024, 1, 1) - 1),
        ("2024-02", ms(2024, 2, 1), ms(2024, 3, 1) - 1),  # leap February
        ("2023-02", ms(2023, 2, 1), ms(2023, 3, 1) - 1),
        ("2023-12", ms(2023, 12, 1), ms(2024, 1, 1) - 1),
        ("2023-05-01", ms(2023, 5, 1), ms(2023, 5, 2) - 1),
        ("2000-02-29", ms(2000, 2, 29), ms(2000, 3, 1) - 1),
        # minutes, seconds, fractions
        ("2023-05-01T10:00", ms(2023, 5, 1, 10, 0), ms(2023, 5, 1, 10, 1) - 1),
        ("2023-05-01T10:00:00Z", ms(2023, 5, 1, 10), ms(2023, 5, 1, 10) + 999),
        ("2023-05-01T10:00:00+02:00", ms(2023, 5, 1, 10, tz=PLUS2), ms(2023, 5, 1, 10, tz=PLUS2) + 999),
        ("2023-05-01T10:00:00-05:00", ms(2023, 5, 1, 15), ms(2023, 5, 1, 15) + 999),
        ("2023-05-01T10:00:00+14:00", ms(2023, 4, 30, 20), ms(2023, 4, 30, 20) + 999),
        ("2023-05-01T10:00:00.5Z", ms(2023, 5, 1, 10) + 500, ms(2023, 5, 1, 10) + 599),
        ("2023-05-01T10:00:00.12Z", ms(2023, 5, 1, 10) + 120, ms(2023, 5, 1, 10) + 129),
        ("2023-05-01T10:00:00.123Z", ms(2023, 5, 1, 10) + 123, ms(2023, 5, 1, 10) + 123),
        ("2023-05-01T10:00:00.123456789+00:00", ms(2023, 5, 1, 10) + 123, ms(2023, 5, 1, 10) + 123),
        ("2016-12-31T23:59:60Z", ms(2017, 1, 1), ms(2017, 1, 1) + 999),  # leap second
        # no zone: UTC
        ("2023-05-01T10:00:00", ms(2023, 5, 1, 10), ms(2023, 5, 1, 10) + 999),
        ("2023-05-01T10:30Z", ms(2023, 5, 1, 10, 30), ms(2023, 5, 1, 10, 31) - 1),
        # the ends of the range FHIR allows
        ("0001", ms(1, 1, 1), ms(2, 1, 1) - 1),
        ("0001-01-01T00:00:00Z", ms(1, 1, 1), ms(1, 1, 1) + 999),
        ("9999", ms(9999, 1, 1), ms(9999, 12, 31, 23, 59, 59) + 999),
        ("9999-12-31T23:59:59.999Z", ms(9999, 12, 31, 23, 59, 59) + 999, ms(9999, 12, 31, 23, 59, 59) + 999),
        ("1969-12-31T23:59:59.999Z", -1, -1),
    ],
)
def test_parse_fhir_date_range(text: str, low: int, high: int) -> None:
    assert parse_fhir_date_range(text) == (low, high)


@pytest.mark.parametrize(
    "text",
    [
        "", "202", "20230", "2023-", "2023-5", "2023-13", "2023-00", "2023-02-29", "2023-04-31",
        "2023-05-01T", "2023-05-01T10", "2023-05-01T24:00:00Z", "2023-05-01T10:60Z",
        "2023-05-01T10:00:61Z", "2023-05-01 10:00:00Z", "2023-05-01T10:00:00.Z",
        "2023-05-01T10:00:00+0200", "2023-05-01T10:00:00+15:00", "2023-05-01T10:00:00+02",
        "2023-05-01T10:00:00ZZ", "20230501", "2023-W18", "0000", "abcd", "２０２３", "2023-05-01T1O:00Z",
        "2023-05-01T10:00:00+02:00Z",
    ],
)
def test_invalid_dates_name_the_value_and_the_format(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_fhir_date_range(text)
    message = str(info.value)
    assert repr(text) in message
    assert "YYYY-MM-DD" in message


def test_open_period_sentinels_lie_outside_every_date() -> None:
    assert DATE_MIN < parse_fhir_date_range("0001-01-01T00:00:00+14:00")[0]
    assert DATE_MAX > parse_fhir_date_range("9999-12-31T23:59:59-14:00")[1]


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_seconds_precision_matches_stdlib(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z"
    low, high = parse_fhir_date_range(text)
    assert low == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert high == low + 999


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_coarser_precision_contains_finer(moment: datetime, offset_minutes: int) -> None:
    sign = "+" if offset_minutes >= 0 else "-"
    hh, mm = divmod(abs(offset_minutes), 60)
    zone = f"{sign}{hh:02d}:{mm:02d}"
    year = f"{moment.year:04d}"
    texts = [
        f"{year}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}{zone}",
        f"{year}-{moment:%m-%dT%H:%M:%S}{zone}",
        f"{year}-{moment:%m-%dT%H:%M}{zone}",
    ]
    ranges = [parse_fhir_date_range(t) for t in texts]
    for (lo_fine, hi_fine), (lo_coarse, hi_coarse) in zip(ranges, ranges[1:], strict=False):
        assert lo_coarse <= lo_fine <= hi_fine <= hi_coarse
    day_lo, day_hi = parse_fhir_date_range(f"{year}-{moment:%m-%d}")
    year_lo, year_hi = parse_fhir_date_range(year)
    assert year_lo <= day_lo <= day_hi <= year_hi

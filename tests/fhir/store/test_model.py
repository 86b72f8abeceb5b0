"""Stored-version helpers: HTTP dates and FHIR instants."""

from __future__ import annotations

from email.utils import format_datetime

import pytest

from ehrgate.fhir.store.model import http_date, iso_instant, ms_to_datetime


@pytest.mark.parametrize("ms", [0, 951782400000, 1763780000123, 4102444799999, -86400000])
def test_http_date_matches_email_utils(ms: int) -> None:
    assert http_date(ms) == format_datetime(ms_to_datetime(ms), usegmt=True)


def test_iso_instant_has_milliseconds_and_offset() -> None:
    assert iso_instant(1763780000123) == "2025-11-22T02:53:20.123+00:00"

"""Values the store hands out: a stored version and the result of a write."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["Stored", "WriteResult", "iso_instant", "ms_to_datetime"]


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(ms: int) -> str:
    """RFC 9110 IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), without locale or email.utils."""
    t = time.gmtime(ms // 1000)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


@lru_cache(maxsize=256)  # a write session stamps every resource it writes with the same instant
def iso_instant(ms: int) -> str:
    """FHIR ``instant`` with millisecond precision in UTC, e.g. 2026-11-22T02:40:00.123+00:00."""
    return ms_to_datetime(ms).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Stored:
    res_type: str
    res_id: str
    version: int
    last_updated: int
    """Milliseconds since the epoch."""
    deleted: bool
    raw: bytes | None
    """The stored JSON of this version (None for a deletion)."""
    method: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return http_date(self.last_updated)

    @property
    def last_updated_iso(self) -> str:
        return iso_instant(self.last_updated)

    @property
    def location(self) -> str:
        return f"{self.res_type}/{self.res_id}/_history/{self.version}"


@dataclass(frozen=True)
class WriteResult:
    stored: Stored
    status: int
    """HTTP status of the interaction: 201 created, 200 updated/matched, 204 deleted."""
    outcome: str
    """created | updated | unchanged | matched | deleted | not-found"""

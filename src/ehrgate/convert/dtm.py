"""HL7 date/time values (DTM, TS, DT; HL7 v2.5 section 2.A.22) → FHIR date, dateTime and instant
(IG datatype maps DTM[dateTime], TS[dateTime]: "convert v2 date time format to FHIR date time format").

FHIR keeps precision down to the day; a time needs seconds and an offset, so minutes and seconds are
padded with zeros and a missing offset is the channel's time zone (``ConversionOptions.timezone``,
an IANA zone so daylight saving is applied per date, or a fixed offset).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConversionError

if TYPE_CHECKING:
    from .datatypes import Ctx

__all__ = ["DATE_EXPECTED", "date", "datetime_", "has_time", "instant", "is_null_date", "shifted", "zone"]

DATE_EXPECTED = "expected YYYY[MM[DD[HH[MM[SS]]]]]"

_DTM = re.compile(r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,9})?)?)?)?)?)?([+-]\d{4}|Z)?")


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo | timedelta:
    text = (name or "UTC").strip()
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3))
        if minutes > 59 or hours * 60 + minutes > 14 * 60:  # FHIR's dateTime pattern ends at ±14:00
            raise ValueError(f"Time zone offset {name!r} is out of range (expected -14:00 to +14:00 with "
                             "minutes below 60, or an IANA name such as 'America/New_York')")
        delta = timedelta(hours=hours, minutes=minutes)
        return -delta if m.group(1) == "-" else delta
    if text.upper() in ("UTC", "Z", "GMT"):
        return timedelta(0)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Time zone {name!r} is not known (expected an IANA name such as 'America/New_York', "
                         "'UTC' or an offset such as '+05:30')") from None


def _offset_text(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _parse(raw: str, where: str) -> tuple[str, ...]:
    text = raw.strip()
    digits = len(text) - len(text.lstrip("0123456789"))
    if 14 < digits <= 18 and text[digits:digits + 1] != ".":
        # a common sender slip: fractional seconds without the point ('20110613122406637')
        text = text[:14] + "." + text[14:]
    m = _DTM.fullmatch(text)
    if m is None:
        raise ConversionError(where, f"{raw!r} is not a valid HL7 date ({DATE_EXPECTED})")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    ok = (not month or 1 <= int(month) <= 12) and (
        not day or 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]) and (
        not hour or int(hour) <= 23) and (not minute or int(minute) <= 59) and (not second or int(second) <= 59)
    if ok and offset and offset != "Z":
        ok = int(offset[1:3]) <= 14 and int(offset[3:]) <= 59
    if not ok or year == "0000":
        raise ConversionError(where, f"{raw!r} is not a valid HL7 date ({DATE_EXPECTED})")
    return year, month or "", day or "", hour or "", minute or "", second or "", frac or "", offset or ""


def _time_part(p: tuple[str, ...], ctx: Ctx) -> str:
    year, month, day, hour, minute, second, frac, offset = p
    clock = f"T{hour}:{minute or '00'}:{second or '00'}{frac}"
    if offset == "Z":
        return clock + "Z"
    if offset:
        return clock + ("Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}")
    tz = ctx.tz
    if isinstance(tz, timedelta):
        return clock + _offset_text(tz)
    local = datetime(int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0), tzinfo=tz)
    return clock + _offset_text(local.utcoffset() or timedelta(0))


def datetime_(raw: str, where: str, ctx: Ctx) -> str:
    """HL7 DTM → FHIR dateTime, keeping the precision down to the day and the offset when a time is
    given. FHIR needs seconds and an offset with any time: minutes/seconds are padded with zeros and
    a missing offset is the channel's time zone (``ConversionOptions.timezone``)."""
    p = _parse(raw, where)
    year, month, day, hour = p[:4]
    if not month:
        return year
    if not day:
        return f"{year}-{month}"
    out = f"{year}-{month}-{day}"
    return out + _time_part(p, ctx) if hour else out


def date(raw: str, where: str) -> str:
    """HL7 DT/DTM → FHIR date (the time, if any, is dropped)."""
    year, month, day = _parse(raw, where)[:3]
    return "-".join(x for x in (year, month, day) if x)


def instant(raw: str, where: str, ctx: Ctx) -> str:
    """HL7 DTM → FHIR instant (time padded to midnight when only a date is given)."""
    p = _parse(raw, where)
    year, month, day, hour = p[:4]
    if not hour:
        p = (year, month or "01", day or "01", "00", "00", "00", "", p[7])
    return f"{p[0]}-{p[1]}-{p[2]}" + _time_part(p, ctx)


def is_null_date(raw: str) -> bool:
    """'0000', '00000000'...: the 'unknown date' some senders put where HL7 means an empty field."""
    text = raw.strip()
    return bool(text) and set(text) <= {"0"}


def has_time(raw: str) -> bool:
    return len(raw.strip()) > 8 and raw.strip()[8:10].isdigit()


def shifted(raw: str, where: str, ctx: Ctx, minutes: float) -> str:
    """HL7 DTM plus ``minutes`` → FHIR dateTime at seconds precision (an appointment's end from its
    start and duration)."""
    p = _parse(raw, where)
    year, month, day, hour, minute, second, _frac, offset = p
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        tz: ZoneInfo | timedelta = sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:]))
    elif offset == "Z":
        tz = timedelta(0)
    else:
        tz = ctx.tz
    start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0))
    try:
        if isinstance(tz, timedelta):
            end, off = start + timedelta(minutes=minutes), tz
        else:  # elapsed time across a daylight-saving change: add in UTC, read back in the zone
            aware = (start.replace(tzinfo=tz).astimezone(UTC) + timedelta(minutes=minutes)).astimezone(tz)
            end, off = aware.replace(tzinfo=None), aware.utcoffset() or timedelta(0)
    except OverflowError:
        raise ConversionError(where, f"{raw!r} plus {minutes:g} minutes is past the year 9999") from None
    return end.strftime("%Y-%m-%dT%H:%M:%S") + _offset_text(off)

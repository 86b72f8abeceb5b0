"""``--since 2h`` / ``30m`` / ``7d`` / ``2024-05-01`` / ``2024-05-01T10:00:00Z`` → epoch milliseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["TimeError", "parse_duration", "parse_since"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Durations back from now are capped at ~31,700 years (what prune caps them at too): a longer one
# means "since ever", and unbounded it overflowed (an infinite float, a database integer) into a 500.
_LONGEST = 1e12


class TimeError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in '90s', '15m', '2h', '30d', '1w'."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise TimeError(f"Duration {text!r} is not valid. Expected a number and a unit: 90s, 15m, 2h, 30d or 1w.")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_since(text: str, now_ms: int) -> int:
    """A moment: a duration back from now ('2h') or an ISO date/time (UTC when no offset is given)."""
    text = text.strip()
    if _DURATION.match(text.lower()):
        return now_ms - int(min(parse_duration(text), _LONGEST) * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(f"Time {text!r} is not valid. Expected a duration back from now (2h, 30m, 7d) or an "
                        "ISO date or time (2024-05-01, 2024-05-01T10:00:00Z).") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)

"""A per-key sliding-window rate limiter (the token endpoint, per client; failed sign-ins, per
address). In-process, so the limit applies per EHRGate process; pure apart from the clock that is
passed in."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter", "client_key"]


def client_key(address: str) -> str:
    """The key of a client address: an IPv4 address as it is, an IPv6 address by its /64 network
    (one host holds a whole /64 and can pick a new address per request)."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    except ValueError:
        return address


class RateLimiter:
    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str) -> int:
        """Record a hit; returns 0 if allowed, else the seconds to wait."""
        wait = self.wait(key)
        if not wait:
            self.hit(key)
        return wait

    def wait(self, key: str) -> int:
        """Seconds until ``key`` may go on (0: now), recording nothing."""
        if self.limit <= 0:
            return 0
        hits = self._hits.get(key)
        if not hits:
            return 0
        now = self.clock()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1, math.ceil(hits[0] + self.window - now))
        return 0

    def forgive(self, key: str) -> None:
        """Take back one counted event of ``key`` (an attempt counted before its outcome was known,
        that succeeded): count first, so attempts running at once are all counted."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    def hit(self, key: str) -> None:
        """Count one event of ``key`` (what is limited: requests, or only failures)."""
        if self.limit <= 0:
            return
        self._hits.setdefault(key, deque()).append(self.clock())
        if len(self._hits) > 10000:  # forget idle keys
            now = self.clock()
            for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                del self._hits[k]

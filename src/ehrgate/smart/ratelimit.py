"""A per-key sliding-window rate limiter (the token endpoint, per client). In-process, so the limit
applies per EHRGate process; pure apart from the clock that is passed in."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str) -> int:
        """Record a hit; returns 0 if allowed, else the seconds to wait."""
        if self.limit <= 0:
            return 0
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1, math.ceil(hits[0] + self.window - now))
        hits.append(now)
        if len(self._hits) > 10000:  # forget idle keys
            for k in [k for k, v in self._hits.items() if not v]:
                del self._hits[k]
        return 0

"""Retry policy of a destination queue: exponential backoff with full jitter, bounded.

The delay before attempt n+1 is uniform in [base * 2**(n-1) / 2, base * 2**(n-1)], capped at
``max_delay`` ("equal jitter": never zero, so a down peer is not hammered, yet spread out so
queued messages do not retry in lock-step). A delivery gives up - status ERROR with its last
error - after ``max_attempts`` attempts or once it has been queued for ``max_age`` seconds,
whichever comes first (0 means no limit for either; at least one limit must be set).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 10
    max_age: float = 24 * 3600.0
    base_delay: float = 1.0
    max_delay: float = 300.0

    def delay(self, attempts: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after ``attempts`` failed attempts (1 or more)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, attempts - 1)))
        r = (rand or random).random()
        return ceiling / 2 + r * ceiling / 2

    def gives_up(self, attempts: int, queued_for: float) -> bool:
        """True when a delivery that has failed ``attempts`` times, queued ``queued_for`` s ago, is done."""
        if self.max_attempts and attempts >= self.max_attempts:
            return True
        return bool(self.max_age) and queued_for >= self.max_age

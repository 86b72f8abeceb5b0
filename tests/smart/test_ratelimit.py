"""The sliding-window limiter: ``check`` counts every call; ``wait``/``hit`` count only what the
caller says (failed sign-ins), and waiting ends when the oldest counted event leaves the window."""

from __future__ import annotations

from ehrgate.smart.ratelimit import RateLimiter


def test_failures_only_count_and_the_window_slides() -> None:
    now = [1000.0]
    limiter = RateLimiter(3, window=60, clock=lambda: now[0])
    assert limiter.wait("10.0.0.1") == 0
    for step in range(3):
        assert limiter.wait("10.0.0.1") == 0
        limiter.hit("10.0.0.1")
        now[0] += 10 * (step + 1)  # failures at 1000, 1010, 1030
    now[0] = 1050
    assert limiter.wait("10.0.0.1") == 10  # the first failure leaves the window at 1060
    assert limiter.wait("10.0.0.2") == 0  # another address
    now[0] = 1060
    assert limiter.wait("10.0.0.1") == 0
    off = RateLimiter(0)
    off.hit("x")
    assert off.wait("x") == 0 and off.check("x") == 0


def test_check_counts_every_call() -> None:
    now = [0.0]
    limiter = RateLimiter(2, window=60, clock=lambda: now[0])
    assert [limiter.check("c") for _ in range(3)] == [0, 0, 60]

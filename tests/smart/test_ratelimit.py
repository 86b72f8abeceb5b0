"""The sliding-window limiter (ehrgate.ratelimit): ``check`` counts every call; ``wait``/``hit`` count only what the
caller says (failed sign-ins), and waiting ends when the oldest counted event leaves the window."""

from __future__ import annotations

from ehrgate.ratelimit import RateLimiter


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


def test_client_keys_group_an_ipv6_host_by_its_64() -> None:
    from ehrgate.ratelimit import client_key

    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("") == "" and client_key("not:an:address") == "not:an:address"

"""BearerPolicy on its own: the per-request token check the FHIR API runs (smart/bearer.py).

Most requests are answered from the token cache without decoding the header; these tests pin what
that shortcut must still honour: expiry, the periodic revocation check, a grant forgotten in this
process, and the same answers for every header form the full path accepts or refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ehrgate.fhir.errors import Unauthorized
from ehrgate.smart.bearer import BearerPolicy
from ehrgate.smart.keys import KeyRing
from ehrgate.smart.policy import TokenContext
from ehrgate.smart.tokens import TokenIssuer


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Grants:
    """grant_active as the server has it: counts the database checks, answers from a set."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.checks = 0

    async def __call__(self, grant_id: str) -> bool:
        self.checks += 1
        return grant_id not in self.revoked


class Req:
    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.scope = {"headers": headers}


@pytest.fixture()
def world(tmp_path: Any) -> dict[str, Any]:
    clock = Clock(1_800_000_000.0)
    issuer = TokenIssuer(KeyRing(tmp_path / "keys"), "http://127.0.0.1/fhir", clock=clock)
    grants = Grants()
    policy = BearerPolicy(issuer, grants, recheck=2.0, realm="http://127.0.0.1/fhir", clock=clock)
    token, exp = issuer.access_token(TokenContext(client_id="app", scope="system/*.rs", grant_id="g1", sub="app"), 300)
    return {"clock": clock, "issuer": issuer, "grants": grants, "policy": policy, "token": token, "exp": exp}


def check(policy: BearerPolicy, header: bytes | None) -> Any:
    headers = [(b"host", b"x")] + ([(b"authorization", header)] if header is not None else [])
    return asyncio.run(policy(Req(headers)))  # type: ignore[arg-type]


def test_a_cached_token_is_not_checked_again_until_the_recheck_interval(world: dict[str, Any]) -> None:
    policy, grants, clock, token = world["policy"], world["grants"], world["clock"], world["token"]
    first = check(policy, b"Bearer " + token.encode())
    assert first.client_id == "app" and grants.checks == 1
    for _ in range(5):
        assert check(policy, b"Bearer " + token.encode()) is first
    assert grants.checks == 1
    clock.now += 2.5  # past the recheck interval: the grant is read again
    assert check(policy, b"Bearer " + token.encode()) is first
    assert grants.checks == 2


def test_a_revoked_grant_is_refused_at_the_next_check(world: dict[str, Any]) -> None:
    policy, grants, clock, token = world["policy"], world["grants"], world["clock"], world["token"]
    check(policy, b"Bearer " + token.encode())
    grants.revoked.add("g1")
    check(policy, b"Bearer " + token.encode())  # inside the interval: still the cached answer
    clock.now += 2.5
    with pytest.raises(Unauthorized, match="revoked"):
        check(policy, b"Bearer " + token.encode())


def test_a_grant_forgotten_in_this_process_is_checked_at_once(world: dict[str, Any]) -> None:
    policy, grants, token = world["policy"], world["grants"], world["token"]
    check(policy, b"Bearer " + token.encode())
    grants.revoked.add("g1")
    policy.forget_grant("g1")  # what revocation in this process does
    with pytest.raises(Unauthorized, match="revoked"):
        check(policy, b"Bearer " + token.encode())


def test_an_expired_cached_token_is_refused(world: dict[str, Any]) -> None:
    policy, clock, token = world["policy"], world["clock"], world["token"]
    check(policy, b"Bearer " + token.encode())
    clock.now = world["exp"] + 0.5
    with pytest.raises(Unauthorized, match="expired") as err:
        check(policy, b"Bearer " + token.encode())
    assert 'error="invalid_token"' in err.value.headers["WWW-Authenticate"]


@pytest.mark.parametrize("form", [b"Bearer {t}", b"bearer {t}", b"BEARER {t}", b"Bearer   {t}  ", b"Bearer \t{t}"])
def test_header_forms_the_full_path_accepts_give_the_same_access(world: dict[str, Any], form: bytes) -> None:
    policy, token = world["policy"], world["token"]
    header = form.replace(b"{t}", token.encode())
    cold = check(policy, header)  # first use: the full path verifies and caches
    warm = check(policy, header)  # then the cached answer
    assert cold is warm and cold.client_id == "app"


@pytest.mark.parametrize("header", [b"Basic {t}", b"Bearer", b"Bearer ", b"Token {t}", b"Bearer{t}"])
def test_malformed_headers_are_refused_even_when_the_token_is_cached(world: dict[str, Any], header: bytes) -> None:
    policy, token = world["policy"], world["token"]
    check(policy, b"Bearer " + token.encode())  # the token is in the cache
    with pytest.raises(Unauthorized) as err:
        check(policy, header.replace(b"{t}", token.encode()))
    assert "Bearer" in err.value.headers["WWW-Authenticate"]


def test_a_token_that_differs_in_one_byte_is_verified_not_served_from_the_cache(world: dict[str, Any]) -> None:
    policy, token = world["policy"], world["token"]
    check(policy, b"Bearer " + token.encode())
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(Unauthorized, match="signature"):
        check(policy, b"Bearer " + tampered.encode())


def test_no_header_is_open_only_when_auth_is_not_required(world: dict[str, Any]) -> None:
    policy = world["policy"]
    with pytest.raises(Unauthorized):
        check(policy, None)
    policy.required = False
    assert check(policy, None).client_id == ""

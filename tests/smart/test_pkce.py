"""PKCE S256 (RFC 7636); plain is refused (SMART App Launch 2.2)."""

from __future__ import annotations

import pytest

from ehrgate.smart.pkce import PkceError, check_challenge, s256_challenge, verify

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


def test_rfc7636_appendix_b_vector() -> None:
    assert s256_challenge(VERIFIER) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_good_verifier_passes() -> None:
    challenge = s256_challenge(VERIFIER)
    check_challenge(challenge, "S256")
    verify(VERIFIER, challenge, "S256")


@pytest.mark.parametrize(
    ("challenge", "method", "message"),
    [(None, "S256", "Missing 'code_challenge'"), ("x" * 43, None, "Missing 'code_challenge_method'"),
     (VERIFIER, "plain", "'plain' is refused"), ("short", "S256", "43 characters"),
     (s256_challenge(VERIFIER) + "\n", "S256", "43 characters")],
)
def test_bad_challenges(challenge: str | None, method: str | None, message: str) -> None:
    with pytest.raises(PkceError, match=message):
        check_challenge(challenge, method)


@pytest.mark.parametrize(
    ("verifier", "message"),
    [(None, "Missing 'code_verifier'"), ("", "Missing 'code_verifier'"), ("a" * 50, "does not match"),
     ("bad verifier with spaces and more than forty three chars", "43-128"),
     ("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "equals the code_challenge"),
     ("a" * 42, "43-128"), ("a" * 129, "43-128"), (VERIFIER + "\n", "43-128")],
)
def test_bad_verifiers(verifier: str | None, message: str) -> None:
    """RFC 7636 §4.1: 43-128 characters of the unreserved set, nothing else (not even a newline)."""
    with pytest.raises(PkceError, match=message):
        verify(verifier, s256_challenge(VERIFIER), "S256")


@pytest.mark.parametrize("length", [43, 128])
def test_verifier_length_bounds_are_inclusive(length: int) -> None:
    verifier = ("abcdefghij" * 13)[:length]
    verify(verifier, s256_challenge(verifier), "S256")

"""PKCE (RFC 7636), S256 only: SMART App Launch 2.2 requires S256 and forbids ``plain``.

Table-driven like authlib's ``CODE_CHALLENGE_METHODS``: adding a method is one entry. ``plain`` is
deliberately absent, so a request naming it fails validation with a message saying so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

__all__ = ["CHALLENGE_METHODS", "PkceError", "check_challenge", "s256_challenge", "verify"]

# RFC 7636 §4.1: 43–128 characters of [A-Z a-z 0-9 - . _ ~].
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# §4.2: BASE64URL(SHA256(verifier)) without padding is exactly 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


class PkceError(ValueError):
    """The PKCE parameters are missing or wrong; the message says which and what is expected."""


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _compare_s256(verifier: str, challenge: str) -> bool:
    return hmac.compare_digest(s256_challenge(verifier), challenge)


CHALLENGE_METHODS: dict[str, Callable[[str, str], bool]] = {"S256": _compare_s256}


def check_challenge(challenge: str | None, method: str | None) -> None:
    """Validate the authorization request's ``code_challenge`` and ``code_challenge_method``."""
    if not challenge:
        raise PkceError("Missing 'code_challenge': this server requires PKCE with S256 for every client.")
    if not method:
        raise PkceError("Missing 'code_challenge_method': send code_challenge_method=S256.")
    if method not in CHALLENGE_METHODS:
        raise PkceError(f"'code_challenge_method' {method!r} is not supported; use S256 ('plain' is refused).")
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise PkceError("'code_challenge' is not a base64url SHA-256 digest (43 characters).")


def verify(verifier: str | None, challenge: str, method: str) -> None:
    """Check the token request's ``code_verifier`` against the stored challenge."""
    if not verifier:
        raise PkceError("Missing 'code_verifier'.")
    if not _VERIFIER.fullmatch(verifier):  # fullmatch: "$" would let a trailing newline through
        raise PkceError("'code_verifier' must be 43-128 characters of A-Z a-z 0-9 - . _ ~.")
    if verifier == challenge:
        raise PkceError("'code_verifier' equals the code_challenge: 'plain' PKCE is refused; send the verifier.")
    compare = CHALLENGE_METHODS.get(method)
    if compare is None or not compare(verifier, challenge):
        raise PkceError("'code_verifier' does not match the code_challenge sent to the authorize endpoint.")

"""Random values and their stored forms.

Codes, refresh tokens, launch handles, session ids and generated client secrets are 256-bit random
values, so a SHA-256 digest is a safe stored form (nothing to brute-force) and cheap to look up.
Passwords are chosen by people and get argon2id (argon2-cffi, its recommended parameters).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["digest", "digest_matches", "hash_password", "new_token", "verify_password"]

_HASHER = PasswordHasher()
# Verifying against this keeps unknown-user sign-ins as slow as known ones.
_DUMMY = _HASHER.hash("ehrgate-no-such-user")


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def digest_matches(value: str, stored: str) -> bool:
    return hmac.compare_digest(digest(value), stored)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False

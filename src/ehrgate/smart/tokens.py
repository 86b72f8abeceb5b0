"""JWTs this server signs (access tokens, id_tokens) and the client assertions it verifies.

All signing and verification is joserfc (RFC 7515/7519); this module only decides which algorithms
and claims are acceptable:

- access tokens: ES256 (setting ``access_token_alg``; RS256 also possible) with the server's key
  ring; ``iss`` and ``aud`` = this server's FHIR base. Both algorithms verify, so tokens signed
  before the setting changed stay valid until they expire. P-256 signatures cost a seventh of
  RSA-2048 ones, the largest single cost of a token request;
- id_tokens: RS256 (OpenID Connect Core §2; SMART requires RS256 support);
- client assertions (RFC 7523, SMART Backend Services §Authenticating): RS384 or ES384 with a key
  from the client's JWKS, ``iss = sub = client_id``, ``aud`` = the token URL, ``exp`` at most five
  minutes ahead, a ``jti``. ``alg: none`` and HMAC algorithms are never accepted, so an HS256 token
  "signed" with a public key cannot pass.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .keys import ALG, ALGS, KeyRing
from .policy import TokenContext

__all__ = ["ACCESS_TOKEN_ALGS", "ASSERTION_ALGS", "TokenError", "TokenIssuer", "verify_client_assertion"]

ACCESS_TOKEN_ALGS = ALGS
"""Algorithms access tokens may be signed with (``access_token_alg``) and are verified with."""
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 30


class TokenError(ValueError):
    """A JWT failed verification; the message says why (never the token itself)."""



def _segment(token: str, index: int) -> dict[str, Any]:
    try:
        part = token.split(".")[index]
        part += "=" * (-len(part) % 4)
        data = json.loads(base64.urlsafe_b64decode(part))
    except Exception:  # noqa: BLE001 - any garbage is simply "not a JWT"
        raise TokenError("The value is not a JWT.") from None
    if not isinstance(data, dict):
        raise TokenError("The value is not a JWT.")
    return data


def _unverified_header(token: str) -> dict[str, Any]:
    return _segment(token, 0)


def _unverified_claims(token: str) -> dict[str, Any]:
    """Claims read WITHOUT verification — only to find which client's keys to verify with."""
    try:
        return _segment(token, 1)
    except TokenError:
        return {}


class TokenIssuer:
    def __init__(
        self, keys: KeyRing, issuer: str, *, clock: Callable[[], float] = time.time, access_alg: str = "ES256"
    ) -> None:
        if access_alg not in ACCESS_TOKEN_ALGS:
            raise ValueError(f"access_token_alg {access_alg!r} is not one of {', '.join(ACCESS_TOKEN_ALGS)}.")
        self.keys = keys
        self.issuer = issuer
        self.clock = clock
        self.access_alg = access_alg

    def _sign(self, claims: dict[str, Any], alg: str) -> str:
        self.keys.maybe_reload()
        active = self.keys.active_for(alg)
        return jwt.encode({"alg": alg, "kid": active.kid, "typ": "JWT"}, claims, active.key, algorithms=[alg])

    def access_token(self, ctx: TokenContext, lifetime: int) -> tuple[str, int]:
        """Sign an access token; returns (token, exp)."""
        now = int(self.clock())
        exp = now + lifetime
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.issuer, "sub": ctx.sub or ctx.client_id, "client_id": ctx.client_id,
            "scope": ctx.scope, "iat": now, "exp": exp, "jti": secrets.token_urlsafe(12),
        }
        if ctx.grant_id:
            claims["grant"] = ctx.grant_id
        if ctx.role:
            claims["role"] = ctx.role
        if ctx.fhir_user:
            claims["fhirUser"] = ctx.fhir_user
        if ctx.patient:
            claims["patient"] = ctx.patient
        if ctx.encounter:
            claims["encounter"] = ctx.encounter
        return self._sign(claims, self.access_alg), exp

    def id_token(
        self, *, client_id: str, sub: str, fhir_user: str, nonce: str | None, lifetime: int, auth_time: int | None = None
    ) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": sub, "aud": client_id, "iat": now, "exp": now + lifetime}
        if fhir_user:
            claims["fhirUser"] = fhir_user
        if nonce:
            claims["nonce"] = nonce
        if auth_time:
            claims["auth_time"] = auth_time
        return self._sign(claims, ALG)

    def verify_access_token(self, token: str) -> TokenContext:
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in ACCESS_TOKEN_ALGS:
            raise TokenError(f"The access token's algorithm {alg!r} is not one of {', '.join(ACCESS_TOKEN_ALGS)}.")
        self.keys.maybe_reload()
        try:
            # One algorithm, the header's: joserfc then only accepts a key of its type (an ES256
            # header cannot be checked against an RSA key or the other way round).
            claims = jwt.decode(token, self.keys.keyset, algorithms=[alg]).claims
        except JoseError as exc:
            raise TokenError(f"The access token's signature does not verify ({exc.error}).") from None
        now = self.clock()
        if claims.get("iss") != self.issuer or claims.get("aud") != self.issuer:
            raise TokenError("The access token was issued for another server.")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            raise TokenError("The access token has expired; refresh it or launch the app again.")
        return TokenContext(
            client_id=str(claims.get("client_id", "")),
            scope=str(claims.get("scope", "")),
            grant_id=str(claims.get("grant", "")),
            sub=str(claims.get("sub", "")),
            role=str(claims.get("role", "")),
            fhir_user=str(claims.get("fhirUser", "")),
            patient=claims.get("patient"),
            encounter=claims.get("encounter"),
            exp=exp,
        )


def verify_client_assertion(
    assertion: str, jwks: KeySet, *, client_id: str, token_url: str, now: float | None = None
) -> dict[str, Any]:
    """Verify a ``private_key_jwt`` client assertion; returns its claims (the caller records ``jti``)."""
    header = _unverified_header(assertion)
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise TokenError(f"Client assertion algorithm {alg!r} is not accepted; sign with RS384 or ES384.")
    try:
        claims = jwt.decode(assertion, jwks, algorithms=list(ASSERTION_ALGS)).claims
    except JoseError as exc:
        raise TokenError(
            f"The client assertion's signature does not verify with the keys registered for client {client_id!r} ({exc.error})."
        ) from None
    now = time.time() if now is None else now
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise TokenError(f"The client assertion's iss and sub must both be the client_id {client_id!r}.")
    aud = claims.get("aud")
    if aud != token_url and not (isinstance(aud, list) and token_url in aud):
        raise TokenError(f"The client assertion's aud must be the token URL {token_url!r}.")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        raise TokenError("The client assertion has no numeric 'exp'.")
    if exp <= now - LEEWAY:
        raise TokenError("The client assertion has expired; sign a new one for each token request.")
    if exp > now + MAX_ASSERTION_LIFETIME + LEEWAY:
        raise TokenError("The client assertion's exp is more than five minutes ahead; use exp = now + at most 300 s.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise TokenError("The client assertion has no 'jti'; send a random, unique jti in every assertion.")
    return dict(claims)

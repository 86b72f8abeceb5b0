"""SMART Backend Services tokens for the ``fhir_http`` destination (SMART App Launch 2.2, Backend
Services; RFC 6749 section 4.4 client_credentials with RFC 7523 private_key_jwt client authentication).

The destination signs a short-lived JWT (iss = sub = client_id, aud = the token endpoint, exp in
4 minutes, a fresh jti) with its private key (RS384 for RSA keys, ES384 for EC keys, or ``alg``),
posts it to the token endpoint - ``token_url``, or the one the FHIR server names at
``{url}/.well-known/smart-configuration`` - and keeps the access token until 30 seconds before it
expires (or until the FHIR server answers 401). Concurrent workers share one token request.

The flow and claims are those of ``ehrgate.client``'s ``SmartClient.backend_token``; the engine has
its own asynchronous copy because it may not import ``ehrgate.client`` (tests/test_architecture.py).
Tokens and assertions never reach a log line or the message store.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from ..errors import ChannelConfigError

__all__ = ["BackendToken", "TokenError", "check_auth"]

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_KEYS = {"client_id", "key", "kid", "scope", "token_url", "alg"}


class TokenError(Exception):
    """No token could be had; the message says why (never the token)."""


def check_auth(value: Any) -> None:
    """Validate ``auth:`` of a fhir_http destination (raises ChannelConfigError)."""
    if not isinstance(value, Mapping):
        raise ChannelConfigError(f"option 'auth' has value {value!r}. Expected a mapping with client_id, key and "
                                 "scope (SMART Backend Services).")
    unknown = set(value) - _KEYS
    if unknown:
        raise ChannelConfigError(f"option 'auth' has unknown key(s) {', '.join(sorted(map(str, unknown)))}. "
                                 f"Expected: {', '.join(sorted(_KEYS))}.")
    for key in ("client_id", "key", "scope"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise ChannelConfigError(f"option 'auth.{key}' has value {value.get(key)!r}. Expected text "
                                     + {"client_id": "(the client id registered with the FHIR server).",
                                        "key": "(a file with the private key: a JWK with its kid, or PEM).",
                                        "scope": "(the scopes to ask for, e.g. 'system/*.cruds')."}[key])
    token_url = value.get("token_url")
    if token_url is not None and not (isinstance(token_url, str) and token_url.startswith(("http://", "https://"))):
        raise ChannelConfigError(f"option 'auth.token_url' has value {token_url!r}. Expected an http:// or https:// URL.")
    for key in ("kid", "alg"):
        if key in value and not isinstance(value[key], str):
            raise ChannelConfigError(f"option 'auth.{key}' has value {value[key]!r}. Expected text.")


def _load_key(path: Path, kid: str | None) -> Any:
    from joserfc.jwk import ECKey, JWKRegistry, RSAKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenError(f"The private key file {path} cannot be read: {exc.strerror}") from None
    extra: Any = {"kid": kid} if kid else None
    try:
        if data.lstrip().startswith(b"{"):
            jwk = json.loads(data)
            if kid:
                jwk["kid"] = kid
            key = JWKRegistry.import_key(jwk)
        else:
            try:
                key = RSAKey.import_key(data, extra)
            except Exception:  # noqa: BLE001 - not RSA: try EC
                key = ECKey.import_key(data, extra)
    except Exception:  # noqa: BLE001 - never echo key material
        raise TokenError(f"The private key file {path} is not a private JWK or PEM key (expected RSA or EC)") from None
    if not key.kid:
        key.ensure_kid()  # the RFC 7638 thumbprint, what a JWKS without explicit kids is matched by
    return key


class BackendToken:
    """The access token of one fhir_http destination."""

    def __init__(self, options: Mapping[str, Any], fhir_base: str, base_dir: Path, client: httpx.AsyncClient) -> None:
        self.client_id = str(options["client_id"])
        self.scope = str(options["scope"])
        key = Path(str(options["key"]))
        self.key_path = key if key.is_absolute() else base_dir / key
        self.kid = options.get("kid")
        self.alg = options.get("alg")
        self.token_url: str | None = options.get("token_url")
        self.fhir_base = fhir_base.rstrip("/")
        self.client = client
        self._key: Any = None
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def forget(self, token: str) -> None:
        """The FHIR server refused ``token`` (401): get a new one next time."""
        if self._token == token:
            self._token = None

    async def get(self) -> str:
        if self._token is not None and time.time() < self._expires:
            return self._token
        async with self._lock:
            if self._token is None or time.time() >= self._expires:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _endpoint(self) -> str:
        if self.token_url:
            return self.token_url
        url = self.fhir_base + "/.well-known/smart-configuration"
        try:
            resp = await self.client.get(url, headers={"accept": "application/json"})
            doc = resp.json() if resp.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            raise TokenError(f"SMART discovery at {url} failed (expected a JSON document; or set auth.token_url)") from None
        endpoint = doc.get("token_endpoint") if isinstance(doc, dict) else None
        if not isinstance(endpoint, str):
            raise TokenError(f"{url} names no token_endpoint (HTTP {resp.status_code}); set auth.token_url")
        self.token_url = endpoint
        return endpoint

    def _assertion(self, audience: str) -> str:
        from joserfc import jwt

        if self._key is None:
            self._key = _load_key(self.key_path, self.kid)
        alg = self.alg or ("ES384" if self._key.key_type == "EC" else "RS384")
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now, "exp": now + 240,
                  "jti": secrets.token_urlsafe(16)}
        return jwt.encode({"alg": alg, "kid": self._key.kid, "typ": "JWT"}, claims, self._key, algorithms=[alg])

    async def _fetch(self) -> None:
        endpoint = await self._endpoint()
        form = {"grant_type": "client_credentials", "scope": self.scope, "client_assertion_type": JWT_BEARER,
                "client_assertion": self._assertion(endpoint)}
        try:
            resp = await self.client.post(endpoint, data=form, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise TokenError(f"Cannot reach the token endpoint {endpoint}: {type(exc).__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            error = body.get("error", f"HTTP {resp.status_code}") if isinstance(body, dict) else f"HTTP {resp.status_code}"
            detail = body.get("error_description", "") if isinstance(body, dict) else ""
            raise TokenError(f"The token endpoint {endpoint} refused client '{self.client_id}': {error}"
                             + (f" ({detail})" if detail else ""))
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool) else 300.0
        self._token = body["access_token"]
        self._expires = time.time() + max(0.0, lifetime - 30)

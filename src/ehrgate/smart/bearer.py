"""The FHIR API's ``AccessPolicy`` (``ehrgate.fhir.access``): bearer token → ``Access``.

Per request this must be cheap (issue 3: ≤ 15 % overhead on a read). A token is verified with
joserfc once per process and its ``Access`` cached until the token expires, keyed by the token's
SHA-256 (the cache holds no bearer credentials); whether its grant was
revoked is re-read from the database at most every ``revocation_check_seconds`` (a revocation in
this process clears the cache at once). RFC 6750 §3: a missing, invalid, expired or revoked token
answers 401 with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from ..fhir.access import OPEN, Access
from ..fhir.errors import Unauthorized
from .policy import TokenContext, access_for
from .tokens import TokenError, TokenIssuer

__all__ = ["BearerPolicy"]

CACHE_SIZE = 20000


def _quotable(text: str) -> str:
    """RFC 6750 §3: error_description holds printable ASCII but '"' and '\\' (it quotes parts of a
    presented token, which may hold anything; a non-Latin-1 character could not even be sent)."""
    return "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "?" for ch in text)


@dataclass
class _Entry:
    ctx: TokenContext
    access: Access
    checked: float


class BearerPolicy:
    """Callable as ``AccessPolicy``: ``await policy(request) -> Access``."""

    def __init__(
        self,
        issuer: TokenIssuer,
        grant_active: Callable[[str], Awaitable[bool]],
        *,
        required: bool = True,
        recheck: float = 2.0,
        realm: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.grant_active = grant_active
        self.required = required
        self.recheck = recheck
        self.realm = realm
        self.clock = clock
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()

    def _unauthorized(self, description: str, error: str | None = "invalid_token") -> Unauthorized:
        exc = Unauthorized(description)
        value = f'Bearer realm="{self.realm}"'
        if error:
            value += f', error="{error}", error_description="{_quotable(description)}"'
        exc.headers["WWW-Authenticate"] = value
        return exc

    def forget_grant(self, grant_id: str) -> None:
        """Called on revocation in this process: no cached token of the grant survives."""
        for key in [k for k, e in self._cache.items() if e.ctx.grant_id == grant_id]:
            del self._cache[key]

    async def __call__(self, request: Request) -> Access:
        raw = b""
        for name, value in request.scope["headers"]:  # the raw list: no Headers object per request
            if name == b"authorization":
                raw = value
                break
        # The common case, a cached token whose grant was checked lately, answered from the header's
        # bytes (no decoding, no coroutine for ``access``). Anything else takes the path below, which
        # decides every other case. The keys agree: a valid JWT is ASCII, so its bytes here are the
        # bytes ``access`` hashes (and bytes that differ from every cached token's find no entry).
        if raw[:7].lower() == b"bearer ":
            entry = self._cache.get(hashlib.sha256(raw[7:].strip()).digest())
            if entry is not None and entry.ctx.grant_id:
                now = self.clock()
                if entry.ctx.exp > now and now - entry.checked < self.recheck:
                    return entry.access
        header = raw.decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if not header:
            if not self.required:
                return OPEN
            raise self._unauthorized(
                "This FHIR server needs an access token: send 'Authorization: Bearer <token>' "
                "(get one from the SMART authorization server; see .well-known/smart-configuration).",
                error=None,
            )
        if scheme.lower() != "bearer" or not token:
            raise self._unauthorized("The Authorization header must be 'Bearer <access token>'.", "invalid_request")
        return await self.access(token)

    async def access(self, token: str) -> Access:
        now = self.clock()
        key = hashlib.sha256(token.encode()).digest()
        entry = self._cache.get(key)
        if entry is None:
            try:
                ctx = self.issuer.verify_access_token(token)
            except TokenError as exc:
                raise self._unauthorized(str(exc)) from None
            entry = _Entry(ctx, access_for(ctx, realm=self.realm), 0.0)
        if entry.ctx.exp <= now:
            self._cache.pop(key, None)
            raise self._unauthorized("The access token has expired; refresh it or launch the app again.")
        if entry.ctx.grant_id and now - entry.checked >= self.recheck:
            if not await self.grant_active(entry.ctx.grant_id):
                self._cache.pop(key, None)
                raise self._unauthorized("The access token was revoked; launch the app again.")
            entry.checked = now
            self._remember(key, entry)  # at most once per ``recheck``: recently used tokens stay
        elif entry.checked == 0.0 or key not in self._cache:
            self._remember(key, entry)
        return entry.access

    def _remember(self, key: bytes, entry: _Entry) -> None:
        """Cache ``entry`` as the most recently used; drop the least recently used over the limit.
        Not done on every request: a token in use is moved up when its grant is re-checked."""
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def context(self, token: str) -> TokenContext | None:
        """The verified context of a token (for introspection), or None."""
        entry = self._cache.get(hashlib.sha256(token.encode()).digest())
        if entry is not None:
            return entry.ctx
        try:
            return self.issuer.verify_access_token(token)
        except TokenError:
            return None

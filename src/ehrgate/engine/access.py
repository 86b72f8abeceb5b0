"""Who may use the engine admin API, and as whom: credentials → ``Actor``, role → permissions.

Roles are EHRGate's user roles (``ehrgate.smart.users.ROLES``); the engine does not import the
SMART package, so ``app.py`` hands it a ``UserDirectory`` that checks a username and password.

Credentials, in the order they are tried (RFC 7617 Basic, RFC 6750 Bearer):

* ``Authorization: Basic`` - a user; their role decides what they may do.
* ``Authorization: Bearer <admin_token>`` - full access, recorded as ``admin_token``.
* none, from the loopback address - full access, recorded as ``loopback``, but only while the server
  has neither an ``admin_token`` nor a user with an engine role (``admin``, ``operator``,
  ``viewer``): a fresh install works from the same host without set-up, and once someone can sign in,
  everyone must (a reverse proxy on the same host that sets no X-Forwarded-For makes every request
  look like loopback; the ``forwarded_allow_ips`` setting names the proxies whose header counts).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..ratelimit import RateLimiter, client_key

__all__ = [
    "ENGINE_ROLES",
    "PERMISSIONS",
    "Actor",
    "Denied",
    "Gate",
    "UserDirectory",
    "roles_for",
]

#: What each engine permission allows, and the roles that hold it. ``prune`` deletes stored
#: messages for good and ``audit`` shows who did what: admins only.
PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "read": ("admin", "operator", "viewer"),  # channels, statistics, message search and detail
    "control": ("admin", "operator"),  # deploy, undeploy, pause, resume
    "reprocess": ("admin", "operator"),
    "prune": ("admin",),
    "audit": ("admin",),
}
ENGINE_ROLES = ("admin", "operator", "viewer")
SIGN_IN_FAILURES = 10
"""Failed Basic sign-ins allowed per client address per minute; then 429 until the oldest is a
minute old (a password guesser gets ten tries a minute, and each costs an argon2 check)."""
CONCURRENT_CHECKS = 4
"""Password checks running at once (argon2: ~64 MiB and tens of milliseconds each); more wait."""
log = logging.getLogger("ehrgate.engine.access")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
REALM = "EHRGate engine admin"


def roles_for(permission: str) -> tuple[str, ...]:
    return PERMISSIONS[permission]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: ``name`` is a username, ``admin_token``, ``loopback`` or ``cli:<OS user>``;
    ``via`` how they were identified (``basic``, ``admin_token``, ``loopback``, ``console``, ``cli``)."""

    name: str
    role: str
    via: str
    peer: str = ""
    """The client's address (HTTP) or the host name (CLI)."""
    request_id: str = ""

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal with its HTTP status: 401 (who are you?) or 403 (not allowed)."""

    status: int
    message: str
    challenge: bool = False
    retry_after: int = 0
    """Seconds (429): when the client may try again."""


class UserDirectory(Protocol):
    """The user accounts (``app.py`` implements it with ``ehrgate.smart.users``)."""

    async def role_of(self, username: str, password: str) -> str | None:
        """The user's role when the password is right, else None (in constant time per user)."""

    async def has_engine_users(self) -> bool:
        """Whether any user has an engine role."""


def _basic(value: str) -> tuple[str, str] | None:
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (username, password) if sep else None


class Gate:
    """``await gate.identify(header, peer, request_id)`` → ``Actor`` or ``Denied``."""

    def __init__(self, admin_token: str = "", users: UserDirectory | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.admin_token = admin_token
        self.users = users
        # failed Basic sign-ins per client address (an IPv6 address by its /64)
        self._failures = RateLimiter(SIGN_IN_FAILURES, clock=clock)
        self._checks = asyncio.Semaphore(CONCURRENT_CHECKS)

    def challenge(self) -> str:
        value = f'Basic realm="{REALM}", charset="UTF-8"'
        return value + (f', Bearer realm="{REALM}"' if self.admin_token else "")

    def _how(self) -> str:
        ways = "HTTP Basic as a user with the viewer, operator or admin role"
        return ways + (" or 'Authorization: Bearer <admin_token>'" if self.admin_token else "")

    async def identify(self, header: str, peer: str, request_id: str = "") -> Actor | Denied:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            creds = _basic(value)
            if creds is None:
                return Denied(401, "The Basic credentials are not base64 of username:password.", True)
            key = client_key(peer)
            wait = self._failures.wait(key)
            if wait:
                return Denied(429, f"Too many failed sign-ins from this address; try again in {wait} s.",
                              retry_after=wait)
            self._failures.hit(key)  # counted before the check, so guesses sent at once all count
            if self.users is None:
                role = None
            else:
                async with self._checks:
                    role = await self.users.role_of(*creds)
            if role is None:
                log.warning("engine admin API: failed sign-in as %r from %s", creds[0][:64], peer or "?")
                return Denied(401, "The username or password is not right.", True)
            self._failures.forgive(key)
            return Actor(creds[0], role, "basic", peer, request_id)
        if scheme == "bearer":
            if not self.admin_token:
                return Denied(401, "This server has no admin_token; sign in with HTTP Basic as a user with the "
                                   "viewer, operator or admin role.", True)
            if not hmac.compare_digest(value.strip().encode(), self.admin_token.encode()):
                return Denied(401, "The bearer token is not the admin_token. Sign in with " + self._how() + ".", True)
            return Actor("admin_token", "admin", "admin_token", peer, request_id)
        if header:
            return Denied(401, f"Unsupported Authorization scheme {scheme!r}. Sign in with {self._how()}.", True)
        open_loopback = not self.admin_token and not (self.users is not None and await self.users.has_engine_users())
        if open_loopback and peer in _LOOPBACK:
            return Actor("loopback", "admin", "loopback", peer, request_id)
        if open_loopback:
            return Denied(401, "The admin API answers requests without credentials only from the loopback address. "
                               "Add a user (ehrgate users add --role operator) and sign in with HTTP Basic, or "
                               "set the admin_token setting.", True)
        if peer in _LOOPBACK and not self.admin_token:
            return Denied(401, "Users with engine roles exist, so the admin API needs a sign-in from loopback too: "
                               f"{self._how()}.", True)
        return Denied(401, f"The admin API needs a sign-in: {self._how()}.", True)

    @staticmethod
    def refuse(actor: Actor, permission: str) -> Denied | None:
        """None when ``actor`` may; else a 403 that says which roles may."""
        if actor.may(permission):
            return None
        allowed = roles_for(permission)
        quoted = [f"'{r}'" for r in allowed]
        names = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        return Denied(403, f"{_WHAT[permission]} needs the {names} role; {actor.name!r} has the role "
                           f"'{actor.role or 'none'}'.")


_WHAT = {
    "read": "Reading channels and messages",
    "control": "Deploying, undeploying, pausing and resuming channels",
    "reprocess": "Reprocessing messages",
    "prune": "Pruning messages",
    "audit": "Reading the audit trail",
}

"""Grants and what hangs off them: authorization codes, refresh tokens, client-assertion jtis.

A grant is one authorization: client, user, granted scope, launch context. Access tokens carry its
id; revoking it (refresh-token revocation, code replay, refresh-token reuse, sign-out of an
online_access grant) ends every token issued under it.

- Codes (RFC 6749 §4.1.2): single use, 60 s; a second use revokes the grant the first use created
  (§10.5).
- Refresh tokens rotate on every use; presenting a rotated one again is treated as theft (OAuth 2.0
  Security BCP §4.14) and revokes the grant.
- ``jti`` of client assertions are remembered until the assertion's expiry (RFC 7523 §3, item 7).
- Remembered approvals: a user who ticks "do not ask me again" on the consent page is not asked
  again by that app while it asks for no more than they approved (``smart_consent``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .hashing import digest, new_token
from .schema import codes, consents, grants, jtis, refresh_tokens

__all__ = [
    "CodeUse",
    "Grant",
    "GrantError",
    "active_grant",
    "create_grant",
    "forget_consent",
    "issue_code",
    "issue_refresh",
    "record_jti",
    "remember_consent",
    "remembered_consent",
    "revoke_grant",
    "use_code",
    "use_refresh",
]


class GrantError(ValueError):
    """A code or refresh token cannot be used; ``grant_id`` names a grant revoked as a result."""

    def __init__(self, message: str, revoked_grant: str | None = None) -> None:
        super().__init__(message)
        self.revoked_grant = revoked_grant


@dataclass(frozen=True)
class Grant:
    id: str
    client_id: str
    user_id: str | None
    scope: str
    patient: str | None = None
    encounter: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    """Launch extras: need_patient_banner, smart_style_url, practice_id, fhirContext."""
    offline: bool = False
    revoked: int | None = None


def _grant(row: Any) -> Grant:
    return Grant(row.id, row.client_id, row.user_id, row.scope, row.patient, row.encounter,
                 json.loads(row.context or "{}"), bool(row.offline), row.revoked)


def create_grant(
    conn: sa.Connection, *, client_id: str, user_id: str | None, scope: str, patient: str | None = None,
    encounter: str | None = None, context: dict[str, Any] | None = None, session_hash: str | None = None,
    offline: bool = False, now: int,
) -> Grant:
    gid = uuid.uuid4().hex
    conn.execute(grants.insert().values(
        id=gid, client_id=client_id, user_id=user_id, scope=scope, patient=patient, encounter=encounter,
        context=json.dumps(context or {}), session_hash=None if offline else session_hash, offline=offline, created=now,
    ))
    return Grant(gid, client_id, user_id, scope, patient, encounter, dict(context or {}), offline)


def get_grant(conn: sa.Connection, grant_id: str) -> Grant | None:
    row = conn.execute(sa.select(grants).where(grants.c.id == grant_id)).first()
    return _grant(row) if row else None


def active_grant(conn: sa.Connection, grant_id: str) -> bool:
    row = conn.execute(sa.select(grants.c.revoked).where(grants.c.id == grant_id)).first()
    return row is not None and row.revoked is None


def revoke_grant(conn: sa.Connection, grant_id: str, *, reason: str, now: int) -> bool:
    done = conn.execute(
        grants.update().where(grants.c.id == grant_id, grants.c.revoked.is_(None)).values(revoked=now, revoke_reason=reason)
    )
    conn.execute(refresh_tokens.update().where(refresh_tokens.c.grant_id == grant_id, refresh_tokens.c.used.is_(None)).values(used=now))
    return done.rowcount == 1


# -- remembered approvals -------------------------------------------------------------------------


def remember_consent(conn: sa.Connection, user_id: str, client_id: str, scope: str, *, now: int) -> None:
    """Remember (replacing what was) that the user approved ``scope`` for the app."""
    conn.execute(consents.delete().where(consents.c.user_id == user_id, consents.c.client_id == client_id))
    conn.execute(consents.insert().values(user_id=user_id, client_id=client_id, scope=scope, created=now))


def remembered_consent(conn: sa.Connection, user_id: str, client_id: str) -> str | None:
    """The scopes the user approved for the app once and for all, or None."""
    row = conn.execute(sa.select(consents.c.scope).where(consents.c.user_id == user_id,
                                                         consents.c.client_id == client_id)).first()
    return str(row[0]) if row else None


def forget_consent(conn: sa.Connection, user_id: str, client_id: str | None = None) -> int:
    """Forget the user's remembered approval of one app (all apps when ``client_id`` is None)."""
    where = [consents.c.user_id == user_id]
    if client_id is not None:
        where.append(consents.c.client_id == client_id)
    return int(conn.execute(consents.delete().where(*where)).rowcount or 0)


# -- authorization codes --------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeUse:
    grant: Grant
    redirect_uri: str
    code_challenge: str
    challenge_method: str
    nonce: str | None
    auth_time: int | None


def issue_code(
    conn: sa.Connection, grant: Grant, *, redirect_uri: str, code_challenge: str, challenge_method: str,
    nonce: str | None, auth_time: int | None, now: int, lifetime: int,
) -> str:
    code = new_token(32)
    conn.execute(codes.insert().values(
        code_hash=digest(code), grant_id=grant.id, redirect_uri=redirect_uri, code_challenge=code_challenge,
        challenge_method=challenge_method, nonce=nonce, auth_time=auth_time, created=now, expires=now + lifetime,
    ))
    return code


def use_code(conn: sa.Connection, code: str, *, client_id: str, now: int) -> CodeUse:
    """Mark the code used (atomically) and return it; a replay revokes the grant."""
    h = digest(code)
    row = conn.execute(sa.select(codes).where(codes.c.code_hash == h)).first()
    if row is None:
        raise GrantError("The authorization code is not valid.")
    grant = get_grant(conn, row.grant_id)
    if grant is None or grant.client_id != client_id:
        raise GrantError("The authorization code was issued to another client.")
    claimed = conn.execute(codes.update().where(codes.c.code_hash == h, codes.c.used.is_(None)).values(used=now))
    if claimed.rowcount != 1:
        revoke_grant(conn, grant.id, reason="code-replay", now=now)
        raise GrantError(
            "The authorization code was already used; every token issued with it is now revoked. "
            "Start the authorization again.",
            revoked_grant=grant.id,
        )
    if row.expires <= now:
        raise GrantError("The authorization code has expired (codes live 60 seconds); start the authorization again.")
    if grant.revoked is not None:
        raise GrantError("The authorization behind this code was revoked.")
    return CodeUse(grant, row.redirect_uri, row.code_challenge, row.challenge_method, row.nonce, row.auth_time)


# -- refresh tokens ------------------------------------------------------------------------------


def issue_refresh(conn: sa.Connection, grant: Grant, *, now: int, lifetime: int | None) -> str:
    token = new_token(32)
    conn.execute(refresh_tokens.insert().values(
        token_hash=digest(token), grant_id=grant.id, created=now, expires=None if lifetime is None else now + lifetime,
    ))
    return token


def find_refresh(conn: sa.Connection, token: str) -> tuple[Any, Grant | None]:
    row = conn.execute(sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == digest(token))).first()
    if row is None:
        return None, None
    return row, get_grant(conn, row.grant_id)


def use_refresh(conn: sa.Connection, token: str, *, now: int) -> Grant:
    """Rotate: mark this refresh token used and return its live grant. Reuse revokes the grant."""
    row, grant = find_refresh(conn, token)
    if row is None or grant is None:
        raise GrantError("The refresh token is not valid.")
    if grant.revoked is not None:
        raise GrantError("The refresh token was revoked; launch the app again to get a new one.")
    claimed = conn.execute(
        refresh_tokens.update().where(refresh_tokens.c.token_hash == row.token_hash, refresh_tokens.c.used.is_(None)).values(used=now)
    )
    if claimed.rowcount != 1:
        revoke_grant(conn, grant.id, reason="refresh-reuse", now=now)
        raise GrantError(
            "The refresh token was already used (tokens rotate on every refresh); the authorization is now "
            "revoked. Launch the app again.",
            revoked_grant=grant.id,
        )
    if row.expires is not None and row.expires <= now:
        raise GrantError("The refresh token has expired; launch the app again.")
    return grant


# -- client assertion jti ------------------------------------------------------------------------


def record_jti(conn: sa.Connection, client_id: str, jti: str, *, expires: int, now: int) -> bool:
    """Remember a jti; False if it was seen before (a replayed assertion)."""
    conn.execute(jtis.delete().where(jtis.c.expires < now - 600))
    exists = conn.execute(sa.select(jtis.c.jti).where(jtis.c.client_id == client_id, jtis.c.jti == jti)).first()
    if exists:
        return False
    conn.execute(jtis.insert().values(client_id=client_id, jti=jti[:256], expires=expires))
    return True

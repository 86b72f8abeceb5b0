"""Browser sessions (sign-in) and pending authorization requests.

A session id is a random cookie value; the database keeps its digest. A pending authorization is
the validated authorize request, parked while the user signs in, picks a patient and consents; it
is bound to the browser session once the user signs in, so another browser cannot finish it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .hashing import digest, new_token
from .schema import grants, pending, sessions

__all__ = ["Pending", "Session", "end_session", "get_pending", "get_session", "new_pending", "new_session", "update_pending"]


@dataclass(frozen=True)
class Session:
    id_hash: str
    user_id: str
    created: int


@dataclass(frozen=True)
class Pending:
    id: str
    params: dict[str, Any]
    session_hash: str | None
    patient: str | None


def new_session(conn: sa.Connection, user_id: str, *, now: int, lifetime: int) -> str:
    """Start a session; returns the cookie value (only its digest is stored)."""
    sid = new_token(32)
    conn.execute(sessions.insert().values(id_hash=digest(sid), user_id=user_id, created=now, expires=now + lifetime))
    return sid


def get_session(conn: sa.Connection, sid: str | None, *, now: int) -> Session | None:
    if not sid:
        return None
    row = conn.execute(sa.select(sessions).where(sessions.c.id_hash == digest(sid))).first()
    if row is None or row.ended is not None or row.expires <= now:
        return None
    return Session(row.id_hash, row.user_id, row.created)


def end_session(conn: sa.Connection, sid: str, *, now: int) -> list[str]:
    """Sign out: end the session and revoke its online_access grants; returns their ids."""
    h = digest(sid)
    conn.execute(sessions.update().where(sessions.c.id_hash == h, sessions.c.ended.is_(None)).values(ended=now))
    ids = [r.id for r in conn.execute(
        sa.select(grants.c.id).where(grants.c.session_hash == h, grants.c.offline.is_(False), grants.c.revoked.is_(None))
    )]
    if ids:
        conn.execute(grants.update().where(grants.c.id.in_(ids)).values(revoked=now, revoke_reason="signed-out"))
    return ids


def new_pending(conn: sa.Connection, params: dict[str, Any], *, now: int, lifetime: int = 1800) -> str:
    pid = new_token(16)
    conn.execute(pending.insert().values(id=pid, params=json.dumps(params), created=now, expires=now + lifetime))
    return pid


def get_pending(conn: sa.Connection, pid: str | None, *, now: int) -> Pending | None:
    if not pid:
        return None
    row = conn.execute(sa.select(pending).where(pending.c.id == pid)).first()
    if row is None or row.expires <= now:
        return None
    return Pending(row.id, json.loads(row.params), row.session_hash, row.patient)


def update_pending(conn: sa.Connection, pid: str, **values: Any) -> None:
    conn.execute(pending.update().where(pending.c.id == pid).values(**values))


def delete_pending(conn: sa.Connection, pid: str) -> None:
    conn.execute(pending.delete().where(pending.c.id == pid))

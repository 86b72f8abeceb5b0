"""People who sign in: clinicians, patients and admins, each linked to a FHIR record (``fhirUser``),
and the engine's operators and viewers.

Roles (docs/smart.md, docs/engine.md "Access, roles and audit"):

* ``clinician`` - signs in to the EHR simulator, opens charts, authorizes SMART apps.
* ``patient`` - authorizes SMART apps for their own record.
* ``admin`` - a clinician who also manages the app registry (``/admin/apps``) and may do
  everything in the engine admin API.
* ``operator`` - engine admin API only: read, control channels, reprocess; not prune, not audit.
* ``viewer`` - engine admin API only: read channels, statistics and messages.

Operators and viewers are staff of the interface engine, not clinicians: they cannot sign in to
authorize SMART apps or open charts (``ENGINE_ONLY_ROLES``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from .hashing import hash_password, verify_password
from .schema import consents, grants, refresh_tokens, sessions, users

__all__ = [
    "ENGINE_ONLY_ROLES", "ROLES", "Offboarded", "User", "UserError", "add_user", "authenticate", "get_user", "has_role",
    "list_users", "remove_user", "set_password",
]

ROLES = ("clinician", "patient", "admin", "operator", "viewer")
ENGINE_ONLY_ROLES = ("operator", "viewer")
FHIR_USER_TYPES = ("Practitioner", "Patient", "RelatedPerson", "Person")


class UserError(ValueError):
    """A user cannot be created as asked; the message names the field and value."""


@dataclass(frozen=True)
class User:
    id: str
    username: str
    role: str
    fhir_user: str
    """Relative reference such as ``Practitioner/abc`` (made absolute with the FHIR base when sent)."""
    display_name: str = ""

    @property
    def patient_id(self) -> str | None:
        if self.fhir_user.startswith("Patient/"):
            return self.fhir_user.split("/", 1)[1]
        return None


def _row(row: sa.Row) -> User:  # type: ignore[type-arg]
    return User(row.id, row.username, row.role, row.fhir_user, row.display_name)


def add_user(
    conn: sa.Connection, *, username: str, password: str, role: str, fhir_user: str = "", display_name: str = "", now: int
) -> User:
    if role not in ROLES:
        raise UserError(f"Role {role!r} is not known; use one of {', '.join(ROLES)}.")
    if not username or len(username) > 128:
        raise UserError("A username of 1-128 characters is required.")
    _check_password(username, password)
    if fhir_user:
        res_type, _, res_id = fhir_user.partition("/")
        if res_type not in FHIR_USER_TYPES or not res_id:
            raise UserError(
                f"fhirUser {fhir_user!r} must be a relative reference to a {', '.join(FHIR_USER_TYPES)}, e.g. Patient/123."
            )
    if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
        raise UserError(f"A user named {username!r} already exists.")
    user = User(uuid.uuid4().hex, username, role, fhir_user, display_name)
    conn.execute(users.insert().values(
        id=user.id, username=username, password_hash=hash_password(password), role=role, fhir_user=fhir_user,
        display_name=display_name, created=now,
    ))
    return user


def get_user(conn: sa.Connection, user_id: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    return _row(row) if row else None


@dataclass(frozen=True)
class Offboarded:
    """What ending a user's access ended: their web sessions and the apps' grants (access and
    refresh tokens; a running server stops honouring them within ``revocation_check_seconds``)."""

    user: User
    sessions: int
    grants: int


def _check_password(username: str, password: str) -> None:
    if len(password) < 8:
        raise UserError(f"The password for {username!r} is too short; use at least 8 characters.")


def _by_name(conn: sa.Connection, username: str) -> User:
    row = conn.execute(sa.select(users).where(users.c.username == username)).first()
    if row is None:
        raise UserError(f"No user named {username!r}; see `ehrgate users list`.")
    return _row(row)


def _end_sessions(conn: sa.Connection, user_id: str, *, now: int, all_grants: bool, reason: str) -> tuple[int, int]:
    """End every open session of the user, and revoke the grants tied to them (online access) -
    or, with ``all_grants``, every grant of the user, offline access included. (sessions, grants)."""
    ended = conn.execute(sessions.update().where(sessions.c.user_id == user_id, sessions.c.ended.is_(None),
                                                 sessions.c.expires > now).values(ended=now)).rowcount
    which = [grants.c.user_id == user_id, grants.c.revoked.is_(None)]
    if not all_grants:
        which.append(grants.c.offline.is_(False))
    ids = [r[0] for r in conn.execute(sa.select(grants.c.id).where(*which))]
    if all_grants:  # remembered approvals too: the apps ask again
        conn.execute(consents.delete().where(consents.c.user_id == user_id))
    for gid in ids:
        conn.execute(grants.update().where(grants.c.id == gid).values(revoked=now, revoke_reason=reason))
        conn.execute(refresh_tokens.update().where(refresh_tokens.c.grant_id == gid, refresh_tokens.c.used.is_(None))
                     .values(used=now))
    return ended, len(ids)


def remove_user(conn: sa.Connection, username: str, *, now: int) -> Offboarded:
    """Remove a user: they can no longer sign in (web pages, engine admin API), their sessions end
    and every grant they gave an app is revoked, offline access included. Their FHIR record
    (``fhirUser``) and the audit trail that names them stay."""
    user = _by_name(conn, username)
    ended, revoked = _end_sessions(conn, user.id, now=now, all_grants=True, reason="user-removed")
    conn.execute(sa.delete(users).where(users.c.id == user.id))
    return Offboarded(user, ended, revoked)


def set_password(conn: sa.Connection, username: str, password: str, *, now: int, revoke_apps: bool = False) -> Offboarded:
    """Set a user's password and end their sessions (someone signed in with the old password is
    signed out), with them the apps' online access; offline access (refresh tokens) too with
    ``revoke_apps``."""
    user = _by_name(conn, username)
    _check_password(username, password)
    conn.execute(users.update().where(users.c.id == user.id).values(password_hash=hash_password(password)))
    ended, revoked = _end_sessions(conn, user.id, now=now, all_grants=revoke_apps, reason="password-changed")
    return Offboarded(user, ended, revoked)


def list_users(conn: sa.Connection) -> list[User]:
    return [_row(r) for r in conn.execute(sa.select(users).order_by(users.c.username))]


def has_role(conn: sa.Connection, roles: tuple[str, ...]) -> bool:
    """Whether any user has one of ``roles``."""
    return conn.execute(sa.select(users.c.id).where(users.c.role.in_(roles)).limit(1)).first() is not None


def authenticate(conn: sa.Connection, username: str, password: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.username == username)).first()
    if not verify_password(password, row.password_hash if row else None):
        return None
    return _row(row) if row else None

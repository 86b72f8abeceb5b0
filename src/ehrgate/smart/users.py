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
from .schema import users

__all__ = [
    "ENGINE_ONLY_ROLES", "ROLES", "User", "UserError", "add_user", "authenticate", "get_user", "has_role", "list_users",
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
    if len(password) < 8:
        raise UserError(f"The password for {username!r} is too short; use at least 8 characters.")
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

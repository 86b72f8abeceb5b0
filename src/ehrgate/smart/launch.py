"""EHR launch handles (SMART App Launch 2.2 §EHR launch: the opaque ``launch`` parameter).

A handle is random, single-use and short-lived (setting ``launch_lifetime``, 5 minutes), and bound
to the clinician's session, the app (client), the patient, the encounter and the practice, so a
handle leaked to another app or replayed later is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .hashing import digest, new_token
from .schema import launches

__all__ = ["Launch", "LaunchError", "consume_launch", "new_launch", "rebind_launch"]


class LaunchError(ValueError):
    """The launch cannot be used; ``reason`` is one of unknown, expired, used, other-client, other-session."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Launch:
    client_id: str
    user_id: str
    session_hash: str
    patient: str | None
    encounter: str | None
    practice: str | None
    fhir_context: list[dict[str, Any]] = field(default_factory=list)
    """SMART 2.2 ``fhirContext`` items (``reference``, ``type``, optional ``role``) chosen in the chart."""


def new_launch(
    conn: sa.Connection, *, client_id: str, user_id: str, session_hash: str, patient: str | None,
    encounter: str | None, practice: str | None, now: int, lifetime: int,
    fhir_context: list[dict[str, Any]] | None = None,
) -> str:
    handle = new_token(24)
    conn.execute(launches.insert().values(
        handle_hash=digest(handle), client_id=client_id, user_id=user_id, session_hash=session_hash,
        patient=patient, encounter=encounter, practice=practice, created=now, expires=now + lifetime,
        context=json.dumps(fhir_context) if fhir_context else None,
    ))
    return handle


_AGAIN = "Launch the app again from the patient's chart."


def consume_launch(conn: sa.Connection, handle: str, *, client_id: str, session_hash: str | None, now: int) -> Launch:
    """Use a handle once. Errors say what happened and what to do (shown to the clinician)."""
    h = digest(handle)
    row = conn.execute(sa.select(launches).where(launches.c.handle_hash == h)).first()
    if row is None:
        raise LaunchError("unknown", f"This launch link is not valid. {_AGAIN}")
    if row.client_id != client_id:
        raise LaunchError("other-client", f"This launch link was made for another app. {_AGAIN}")
    if row.used is not None:
        raise LaunchError("used", f"This launch link has already been used. {_AGAIN}")
    if row.expires <= now:
        raise LaunchError("expired", f"This launch link has expired. {_AGAIN}")
    if session_hash is not None and row.session_hash != session_hash:
        raise LaunchError("other-session", f"This launch link belongs to another sign-in session. {_AGAIN}")
    done = conn.execute(
        launches.update().where(launches.c.handle_hash == h, launches.c.used.is_(None)).values(used=now)
    )
    if done.rowcount != 1:
        raise LaunchError("used", f"This launch link has already been used. {_AGAIN}")
    return Launch(row.client_id, row.user_id, row.session_hash, row.patient, row.encounter, row.practice,
                  json.loads(row.context) if row.context else [])


def rebind_launch(conn: sa.Connection, handle: str, *, user_id: str, session_hash: str) -> None:
    """The same user signed in again while the launch waited (OpenID Connect ``prompt=login``): the
    unused handle follows them to the new session. Another user's handle is left as it is."""
    conn.execute(launches.update().where(launches.c.handle_hash == digest(handle), launches.c.user_id == user_id,
                                         launches.c.used.is_(None)).values(session_hash=session_hash))

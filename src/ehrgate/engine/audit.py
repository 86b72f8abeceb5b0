"""The audit trail of administrative actions on the engine (table ``eng_audit``).

Every deploy, undeploy, pause, resume, reprocess and prune - from the admin API or the CLI - gets a
row: time, actor, how the actor was identified, role, action, target, outcome and a JSON detail.
The detail holds message ids (at most ``MAX_IDS``, with the count), counts, criteria and the reason
of a failure as a fixed phrase: never message content, never credentials, never a free-text error
that could quote a config value.

Why a table of the engine and not FHIR AuditEvents (as the SMART server writes): the row commits in
the same transaction as the change it records where the engine makes the change itself (the CLI's
channel commands, reprocess), which the FHIR store's separate write path cannot offer; and the trail
is about the interface engine's operation, which should not appear to FHIR clients that may read
``AuditEvent`` (clinicians' ``user/*.rs``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import schema as t
from .access import Actor

__all__ = ["ACTIONS", "MAX_IDS", "OUTCOMES", "AuditQuery", "cli_actor", "query", "record", "row_out"]

ACTIONS = ("deploy", "undeploy", "pause", "resume", "reprocess", "prune")
OUTCOMES = ("success", "partial", "failure", "denied")
MAX_IDS = 1000


def cli_actor() -> Actor:
    """``cli:<OS user>`` on this host: the account that ran the command (from the password
    database, not from environment variables a caller may set)."""
    try:
        import pwd

        name = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        import getpass

        try:
            name = getpass.getuser()
        except OSError:
            name = "unknown"
    return Actor(f"cli:{name}", "", "cli", socket.gethostname()[:160])


def ids_detail(ids: Sequence[int]) -> dict[str, Any]:
    """Message ids for a detail: all of them up to ``MAX_IDS``, else the first ones and the count."""
    out: dict[str, Any] = {"count": len(ids), "ids": list(ids[:MAX_IDS])}
    if len(ids) > MAX_IDS:
        out["ids_truncated"] = True
    return out


def record(conn: sa.Connection, actor: Actor, action: str, target: str, outcome: str, detail: dict[str, Any],
           *, at: int) -> None:
    """Insert one row in the caller's transaction."""
    if action not in ACTIONS or outcome not in OUTCOMES:
        raise ValueError(f"audit: action {action!r} / outcome {outcome!r} is not one of {ACTIONS} / {OUTCOMES}")
    conn.execute(t.audit.insert().values(
        at=at, actor=actor.name[:160], via=actor.via[:16], role=actor.role[:16], action=action, target=target[:160],
        outcome=outcome, detail=json.dumps(detail, separators=(",", ":"), sort_keys=True), peer=actor.peer[:160],
        request_id=actor.request_id[:64],
    ))


@dataclass(slots=True)
class AuditQuery:
    since: int | None = None
    until: int | None = None
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    before_id: int | None = None
    limit: int = 100


def query(conn: sa.Connection, q: AuditQuery) -> list[dict[str, Any]]:
    """Newest first. Time, actor and action use an index (time; actor, time; action, time); a target
    narrows what those found (the trail is small: one row per administrative action)."""
    a = t.audit.c
    stmt = sa.select(t.audit)
    if q.since is not None:
        stmt = stmt.where(a.at >= q.since)
    if q.until is not None:
        stmt = stmt.where(a.at < q.until)
    if q.actor:  # PostgreSQL refuses a NUL in text, and no actor or target holds one
        stmt = stmt.where(a.actor == q.actor.replace("\x00", " "))
    if q.action:
        stmt = stmt.where(a.action == q.action)
    if q.target:
        stmt = stmt.where(a.target == q.target.replace("\x00", " "))
    if q.before_id:
        stmt = stmt.where(a.id < q.before_id)
    stmt = stmt.order_by(a.id.desc()).limit(max(1, min(q.limit, 10000)))
    return [row_out(dict(r._mapping)) for r in conn.execute(stmt)]


def row_out(row: dict[str, Any]) -> dict[str, Any]:
    row["detail"] = json.loads(row["detail"]) if row.get("detail") else {}
    return row

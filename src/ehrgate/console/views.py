"""What the console pages show, as plain values: channel rows from the engine's list and statistics,
a message's stages ready to print, the search form read into a ``SearchQuery``. No I/O here."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..engine.store import STATUSES, SearchQuery
from ..engine.timeparse import TimeError, parse_since

__all__ = ["PAGE_SIZE", "SEARCH_FIELDS", "Search", "age", "channel_row", "message_view", "read_search", "when"]

PAGE_SIZE = 50
SEARCH_FIELDS = ("channel", "status", "since", "until", "type", "control_id", "patient", "text")
"""The criteria of ``GET /admin/messages``, under the same names."""
_LINES = re.compile(r"\r\n|\r|\n")


def when(ms: int | None) -> str:
    """Epoch milliseconds as a UTC time a person reads (``2026-12-07 07:05:03.120 UTC``)."""
    if ms is None:
        return ""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def age(seconds: float | None) -> str:
    """``0 s``, ``42 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    s = int(seconds or 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def channel_row(listed: Mapping[str, Any], stats: Mapping[str, Any], configured_port: Any = None) -> dict[str, Any]:
    """One channel of the channels page from ``Engine.channel_list()`` and ``Engine.channel_stats()``."""
    state = "stopped" if not listed["deployed"] else "paused" if listed["paused"] else "deployed"
    pipeline = stats.get("pipeline") or {}
    dests = stats.get("destinations") or {}
    queued = int(pipeline.get("queued", 0)) + sum(int(d.get("queued", 0)) for d in dests.values())
    oldest = max([float(pipeline.get("oldest_queued_age_s") or 0)]
                 + [float(d.get("oldest_queued_age_s") or 0) for d in dests.values()])
    port = listed.get("port") if listed.get("port") is not None else configured_port
    return {
        "name": listed["name"], "state": state, "source": listed["source"], "port": port,
        "received": int(stats.get("received", 0)), "filtered": int(stats.get("filtered", 0)),
        "errored": int(stats.get("errored", 0)), "sent": sum(int(d.get("sent", 0)) for d in dests.values()),
        "queued": queued, "oldest": age(oldest) if queued else "",
        "pipeline_queued": int(pipeline.get("queued", 0)),
        "destinations": [{"name": name, "sent": int(d.get("sent", 0)), "errored": int(d.get("errored", 0)),
                          "retried": int(d.get("retried", 0)), "queued": int(d.get("queued", 0)),
                          "oldest": age(d.get("oldest_queued_age_s")) if d.get("queued") else ""}
                         for name, d in dests.items()],
        "actions": _actions(state),
    }


def _actions(state: str) -> list[str]:
    """The control buttons that make sense in ``state`` (deploy is also a redeploy: it re-reads ehrgate.yaml)."""
    if state == "stopped":
        return ["deploy"]
    return ["resume" if state == "paused" else "pause", "deploy", "undeploy"]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _body(value: Any) -> str | None:
    """A delivery's request or response with its line ends as newlines (an ACK's segments end in CR)."""
    text = _text(value)
    return None if text is None else _LINES.sub("\n", text).strip("\n")


def segments(value: Any) -> list[str]:
    """An ER7 message one segment per line (HL7 v2.5 section 2.5.1: segments end with a carriage return)."""
    text = _text(value) or ""
    return [line for line in _LINES.split(text) if line]


def pretty_json(value: Any) -> str:
    text = _text(value) or ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def message_view(found: Mapping[str, Any]) -> dict[str, Any]:
    """A message from ``MessageStore.get`` for the message page: its stages printable, and each
    destination with its own attempts."""
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in found.get("attempts") or []:
        attempts.setdefault(a["destination"], []).append(
            {"run": a["run"], "number": a["number"], "at": when(a["at"]), "outcome": a["outcome"],
             "duration_ms": a["duration_ms"], "error": a["error"] or ""})
    deliveries = [{"destination": d["destination"], "status": d["status"], "attempts": d["attempts"],
                   "updated": when(d["updated_at"]), "last_error": d["last_error"] or "",
                   "request": _body(d["request"]), "response": _body(d["response"]),
                   "tries": attempts.pop(d["destination"], [])} for d in found.get("deliveries") or []]
    # attempts of a destination whose delivery row is gone (reprocessed since): still what happened
    for name, tries in attempts.items():
        deliveries.append({"destination": name, "status": "", "attempts": len(tries), "updated": "",
                           "last_error": "", "request": None, "response": None, "tries": tries})
    raw, transformed = found.get("raw"), found.get("transformed")
    same = transformed is not None and bytes(transformed) == bytes(raw or b"")
    return {
        "id": found["id"], "channel": found["channel"], "status": found["status"],
        "received": when(found["received_at"]), "updated": when(found["updated_at"]),
        "type": found["msg_type"], "control_id": found["control_id"], "sender": found["sender"],
        "source": found["source"], "parent_id": found.get("parent_id"), "duplicate_of": found.get("duplicate_of"),
        "order_key": found.get("order_key") or "", "error": found.get("error") or "",
        "patients": list(found.get("patient_ids") or []),
        "raw": segments(raw), "transformed": None if transformed is None or same else segments(transformed),
        "transformed_same": same, "bundle": pretty_json(found["bundle"]) if found.get("bundle") is not None else None,
        "deliveries": deliveries, "children": list(found.get("children") or []),
        # attempt numbers restart in each run (a reprocess starts one): the page says which is which
        "runs": [{"run": r["run"], "how": "received" if r["run"] == 1 else "reprocessed", "at": when(r["at"]),
                  "by": r["by"] or ""} for r in found.get("runs") or []],
        "queued": [{"step": q["step"] or "pipeline", "attempts": q["attempts"], "next": when(q["next_at"]),
                    "claimed": bool(q["lease_owner"])} for q in found.get("queued") or []],
        "reprocessable": found["status"] in ("FILTERED", "TRANSFORMED", "SENT", "ERROR"),
    }


@dataclass
class Search:
    """The search form as typed (to show it again), the query it makes, or what is wrong with it."""

    form: dict[str, str]
    query: SearchQuery | None = None
    errors: list[str] = field(default_factory=list)
    before: int | None = None


def read_search(params: Mapping[str, str], now_ms: int, *, limit: int = PAGE_SIZE) -> Search:
    """Read the criteria of ``GET /admin/messages`` from a query string. Asks for one row more than a
    page, so the page knows whether older messages follow."""
    form = {name: str(params.get(name) or "").strip() for name in SEARCH_FIELDS}
    out = Search(form)
    status = form["status"].upper()
    if status and status not in STATUSES:
        out.errors.append(f"Status {form['status']!r} is not a status. Expected one of: {', '.join(STATUSES)}.")
    moments: dict[str, int | None] = {}
    for name in ("since", "until"):
        try:
            moments[name] = parse_since(form[name], now_ms) if form[name] else None
        except TimeError as exc:
            moments[name] = None
            out.errors.append(f"{name.capitalize()}: {exc}")
    before = str(params.get("before_id") or "").strip()
    good = before.isascii() and before.isdigit() and len(before) < 19
    if before and not good:
        out.errors.append(f"before_id {before!r} is not a message id (a whole number).")
    out.before = int(before) if before and good else None
    if out.errors:
        return out
    out.query = SearchQuery(channel=form["channel"] or None, status=status or None, since=moments["since"],
                            until=moments["until"], msg_type=form["type"] or None,
                            control_id=form["control_id"] or None, patient=form["patient"] or None,
                            text=form["text"] or None, before_id=out.before, limit=limit + 1)
    return out

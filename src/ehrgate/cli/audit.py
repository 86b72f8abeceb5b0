"""``ehrgate audit list``: who deployed, paused, reprocessed or pruned what, and when (the engine's
audit trail, the same rows as ``GET /admin/audit``), server running or not."""

from __future__ import annotations

import json
from typing import Any

import click

from .channel import _messages
from .common import CliError, database_options, settings_from
from .messages import _when

__all__ = ["audit"]

ACTIONS = ("deploy", "undeploy", "pause", "resume", "reprocess", "prune")
"""``ehrgate.engine.audit.ACTIONS``, for ``--action`` without importing the engine (see STATUSES in
cli/messages.py; tests/cli/test_startup.py checks the two agree)."""


@click.group()
def audit() -> None:
    """The audit trail of administrative actions on the engine (admin API and CLI)."""


def _detail(d: dict[str, Any]) -> str:
    """The detail in a few words: ids (or their count), the state reached, criteria, the reason."""
    parts = []
    if "ids" in d:
        ids = ", ".join(map(str, d["ids"][:10])) + (" …" if d.get("count", 0) > 10 else "")
        parts.append(f"{d.get('count', len(d['ids']))} message(s)" + (f" [{ids}]" if ids else ""))
    elif "count" in d:
        parts.append(f"{d['count']} message(s)")
    if d.get("skipped"):
        parts.append(f"{d['skipped']} skipped")
    if "older_than" in d:
        parts.append(f"older than {d['older_than']}")
    if isinstance(d.get("criteria"), dict):
        parts.append(" ".join(f"{k}={v}" for k, v in d["criteria"].items()))
    if isinstance(d.get("state"), dict):
        s = d["state"]
        parts.append(("paused" if s.get("paused") else "running") if s.get("deployed") else "undeployed")
    if d.get("reason"):
        parts.append(str(d["reason"]))
    elif d.get("status"):
        parts.append(f"HTTP {d['status']}")
    return "; ".join(parts)


@audit.command("list")
@database_options
@click.option("--since", help="Recorded since: 2h, 30m, 7d or an ISO date/time.")
@click.option("--until", help="Recorded before: same forms as --since.")
@click.option("--actor", help="Who: a user name, admin_token, loopback or cli:<OS user>.")
@click.option("--action", type=click.Choice(ACTIONS), help="What was done.")
@click.option("--target", help="A channel name, or 'messages' (reprocess; prune of every channel).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="Most rows to print (newest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(as_json: bool, limit: int, **flags: Any) -> None:
    """Administrative actions, newest first: deploy, undeploy, pause, resume, reprocess, prune."""
    from ..engine.audit import AuditQuery
    from ..engine.timeparse import TimeError, parse_since

    crit = {k: flags.pop(k) for k in ("since", "until", "actor", "action", "target")}
    settings = settings_from(**flags)
    ms = _messages(settings)
    try:
        try:
            since = parse_since(crit["since"], ms.clock()) if crit["since"] else None
            until = parse_since(crit["until"], ms.clock()) if crit["until"] else None
        except TimeError as exc:
            raise CliError(str(exc)) from None
        rows = ms.audit_log(AuditQuery(since=since, until=until, actor=crit["actor"], action=crit["action"],
                                       target=crit["target"], limit=limit))
    finally:
        ms.close()
    for r in rows:
        if as_json:
            click.echo(json.dumps({**r, "at": _when(r["at"])}))
        else:
            click.echo(f"{r['id']:>6} {_when(r['at'])} {r['actor']:20} {r['action']:9} {r['target']:16} "
                       f"{r['outcome']:8} {_detail(r['detail'])}")
    if not as_json:
        click.echo(f"{len(rows)} action(s)" if rows else "No recorded actions match.", err=True)

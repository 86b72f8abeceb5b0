"""``ehrgate messages search|show|reprocess|prune``: the message store, server running or not.
Reprocess and prune are recorded in the audit trail as ``cli:<OS user>`` (``ehrgate audit list``)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from .channel import _messages
from .common import CliError, database_options, settings_from

__all__ = ["messages"]

STATUSES = ("RECEIVED", "FILTERED", "TRANSFORMED", "QUEUED", "SENT", "ERROR")
"""``ehrgate.engine.store.STATUSES``, for ``--status``: importing the engine to offer them made every
``ehrgate`` command wait for the whole engine (tests/cli/test_startup.py checks the two agree)."""


@click.group()
def messages() -> None:
    """Find, inspect, reprocess and prune stored HL7 messages."""


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") if ms else ""


_TIMES = ("received_at", "updated_at", "at", "next_at")


def _json_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored message (or one of its deliveries, attempts, queue entries) as ``messages search
    --json`` shows messages: ``type`` for the message type, times as ISO 8601 UTC, content as text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = _text(value)
        elif key in _TIMES and isinstance(value, int):
            value = _when(value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            value = [_json_record(v) for v in value]
        out["type" if key == "msg_type" else key] = value
    return out


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


@messages.command()
@database_options
@click.option("--channel", help="Channel name.")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Message status.")
@click.option("--control-id", help="MSH-10 message control ID.")
@click.option("--type", "msg_type", help="Message type, e.g. ADT or ADT^A01.")
@click.option("--patient", help="Patient identifier (PID-3).")
@click.option("--since", help="Received since: 2h, 30m, 7d or an ISO date/time.")
@click.option("--until", help="Received before: same forms as --since.")
@click.option("--text", help="Words in the raw message (each word matches as a prefix; all must occur).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000),
              help="Most rows to print (newest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def search(as_json: bool, limit: int, **flags: Any) -> None:
    """Search the message store (indexed: channel, status, time, type, control ID, patient, text)."""
    from ..engine import SearchQuery
    from ..engine.timeparse import TimeError, parse_since

    crit = {k: flags.pop(k) for k in ("channel", "status", "control_id", "msg_type", "patient", "since", "until", "text")}
    settings = settings_from(**flags)
    ms = _messages(settings)
    try:
        try:
            since = parse_since(crit["since"], ms.clock()) if crit["since"] else None
            until = parse_since(crit["until"], ms.clock()) if crit["until"] else None
        except TimeError as exc:
            raise CliError(str(exc)) from None
        rows = ms.search(SearchQuery(channel=crit["channel"], status=crit["status"], since=since, until=until,
                                     msg_type=crit["msg_type"], control_id=crit["control_id"],
                                     patient=crit["patient"], text=crit["text"], limit=limit))
    finally:
        ms.close()
    if rows and not as_json:  # on stderr, as the count: stdout stays one message per line for scripts
        click.echo(f"{'ID':>8} {'RECEIVED (UTC)':29} {'CHANNEL':16} {'STATUS':11} {'TYPE':10} CONTROL ID (MSH-10)",
                   err=True)
    for r in rows:
        if as_json:
            click.echo(json.dumps({"id": r["id"], "channel": r["channel"], "control_id": r["control_id"],
                                   "type": r["msg_type"], "status": r["status"], "received_at": _when(r["received_at"]),
                                   "sender": r["sender"], "source": r["source"], "parent_id": r["parent_id"],
                                   "duplicate_of": r["duplicate_of"], "error": r["error"]}))
        else:
            click.echo(f"{r['id']:>8} {_when(r['received_at'])} {r['channel']:16} {r['status']:11} "
                       f"{r['msg_type']:10} {r['control_id']}" + (f"  {r['error']}" if r["error"] else ""))
    if not as_json:
        from .serve import _command_name

        more = f"; `{_command_name()} messages show ID` shows every stage and delivery of one" if rows else ""
        click.echo(f"{len(rows)} message(s){more}", err=True)


@messages.command()
@click.argument("message_id", type=int)
@database_options
@click.option("--json", "as_json", is_flag=True, help="The whole record as JSON.")
def show(message_id: int, as_json: bool, **flags: Any) -> None:
    """Everything kept about one message: each stage's content, every delivery and attempt."""
    settings = settings_from(**flags)
    ms = _messages(settings)
    try:
        m = ms.get(message_id)
    finally:
        ms.close()
    if m is None:
        raise CliError(f"Message {message_id} is not in the store (find ids with 'ehrgate messages search').")
    if as_json:
        click.echo(json.dumps(_json_record(m), indent=2, default=str))
        return
    click.echo(f"message {m['id']}  channel {m['channel']}  status {m['status']}")
    click.echo(f"received {_when(m['received_at'])}  updated {_when(m['updated_at'])}  from {m['source']}")
    click.echo(f"type {m['msg_type']}  control id {m['control_id']}  sender {m['sender']}  "
               f"patients {', '.join(m['patient_ids']) or '-'}")
    for key, label in (("parent_id", "split from message"), ("duplicate_of", "duplicate of message"),
                       ("error", "error")):
        if m[key]:
            click.echo(f"{label}: {m[key]}")
    if m["children"]:
        click.echo(f"split into messages: {', '.join(map(str, m['children']))}")
    click.echo("-- raw")
    click.echo(_text(m["raw"]).replace("\r", "\n").rstrip("\n"))
    if m["transformed"] is not None and bytes(m["transformed"]) != bytes(m["raw"]):
        click.echo("-- transformed")
        click.echo(_text(m["transformed"]).replace("\r", "\n").rstrip("\n"))
    if m["bundle"] is not None:
        click.echo("-- FHIR bundle")
        click.echo(_text(m["bundle"]))
    runs = m["runs"]
    for d in m["deliveries"]:
        click.echo(f"-- destination {d['destination']}: {d['status']} after {d['attempts']} attempt(s)"
                   + (f" in run {d['run']}" if len(runs) > 1 else "")
                   + (f", last error: {d['last_error']}" if d["last_error"] else ""))
        if d["response"] is not None:
            click.echo("   response: " + _text(d["response"]).replace("\r", "\n   ").rstrip())
    for r in runs:
        tries = [a for a in m["attempts"] if a["run"] == r["run"]]
        if len(runs) > 1:  # attempt numbers restart in each run: say which run they belong to
            how = "received" if r["run"] == 1 else "reprocessed"
            click.echo(f"-- run {r['run']}: {how} {_when(r['at'])}" + (f" by {r['by']}" if r["by"] else "")
                       + f", {len(tries)} attempt(s)")
        for a in tries:
            click.echo(f"   attempt {a['number']} to {a['destination']} at {_when(a['at'])}: {a['outcome']} "
                       f"({a['duration_ms']} ms)" + (f" {a['error']}" if a["error"] else ""))
    for q in m["queued"]:
        click.echo(f"-- queued for {q['step'] or 'the pipeline'}: {q['attempts']} attempt(s), next at "
                   f"{_when(q['next_at'])}")


@messages.command()
@click.argument("message_ids", nargs=-1, type=int)
@database_options
@click.option("--channel", help="With --status: reprocess every match in this channel.")
@click.option("--status", type=click.Choice(["ERROR", "FILTERED", "SENT"], case_sensitive=False),
              help="Reprocess every message with this status (with --channel; newest first, up to --limit).")
@click.option("--since", help="With --status: received since (2h, 7d, ISO date).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 10000),
              help="With --status: most messages to reprocess.")
def reprocess(message_ids: tuple[int, ...], channel: str | None, status: str | None, since: str | None, limit: int,
              **flags: Any) -> None:
    """Send finished messages through their channel again (by id, or every match of --status).

    Exit status 2 when a message id is not in the store (nothing is queued then), 1 when a message
    is still being processed (the others are queued).
    """
    from ..engine import SearchQuery
    from ..engine.audit import cli_actor
    from ..engine.timeparse import TimeError, parse_since

    if not message_ids and not status:
        raise CliError("Give message ids, or --status (with --channel) to choose messages.")
    if message_ids and (channel or since) and not status:
        given = " and ".join(flag for flag, value in (("--channel", channel), ("--since", since)) if value)
        raise CliError(f"{given} without --status cannot narrow message ids; give the ids alone, or "
                       f"--status ERROR|FILTERED|SENT with {given}.")
    settings = settings_from(**flags)
    ms = _messages(settings)
    try:
        ids = list(message_ids)
        unknown = sorted(set(ids) - set(ms.statuses(ids)))
        if unknown:
            which = f"Message {unknown[0]} is" if len(unknown) == 1 else f"Messages {', '.join(map(str, unknown))} are"
            raise CliError(f"{which} not in the store (find ids with 'ehrgate messages search'); nothing was queued.")
        if status:
            try:
                cutoff = parse_since(since, ms.clock()) if since else None
            except TimeError as exc:
                raise CliError(str(exc)) from None
            ids += [r["id"] for r in ms.search(SearchQuery(channel=channel, status=status, since=cutoff, limit=limit))]
        criteria = ({k: v for k, v in (("channel", channel), ("status", status), ("since", since), ("limit", limit))
                     if v is not None} if status else None)
        done, skipped = ms.reprocess(list(dict.fromkeys(ids)), actor=cli_actor(), criteria=criteria)
    finally:
        ms.close()
    for line in skipped:
        click.echo(line, err=True)
    click.echo(f"{len(done)} message(s) queued for reprocessing; a running server picks them up.")
    if skipped:
        sys.exit(1)


@messages.command()
@database_options
@click.option("--older-than", required=True, help="Age: 30d, 12h, 1w.")
@click.option("--channel", help="Only this channel (default: every channel).")
def prune(older_than: str, channel: str | None, **flags: Any) -> None:
    """Delete finished messages older than --older-than, in small batches (queued ones are kept)."""
    from ..engine.audit import cli_actor
    from ..engine.timeparse import TimeError, parse_duration

    try:
        age = parse_duration(older_than)
    except TimeError as exc:
        raise CliError(str(exc)) from None
    settings = settings_from(**flags)
    ms = _messages(settings)
    try:
        n = ms.prune(channel, ms.clock() - int(age * 1000), actor=cli_actor(), criteria={"older_than": older_than})
    finally:
        ms.close()
    click.echo(f"Pruned {n} message(s) older than {older_than}" + (f" in channel '{channel}'." if channel else "."))

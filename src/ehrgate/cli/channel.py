"""``ehrgate channel test|list|deploy|undeploy|pause|resume|stats``.

Control commands record the desired state in the database; a running server (any number of them
on that database) applies it within a second, so they work whether the server runs or not. Each is
recorded in the audit trail as ``cli:<OS user>`` (``ehrgate audit list``), in the same transaction.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import CliError, database_options, settings_from
from .hl7 import _read_bytes

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["channel"]


@click.group()
def channel() -> None:
    """Test, list and control the channels declared in ehrgate.yaml (--config)."""


def _channels(settings: Settings, *, builtin: bool = False) -> dict[str, Any]:
    """The channels of the config file; ``builtin``: with the built-in ``mllp-in`` that ``ehrgate
    demo`` (and ``serve --mllp-port``) runs, as the server adds it (it replaces a declared one)."""
    from ..engine import DEMO_CHANNEL, ChannelConfigError, demo_channel, load_channels

    base = Path(settings.path).resolve().parent if settings.path else Path.cwd()
    declared = settings.config.get("channels") or {}
    section = dict(declared) if isinstance(declared, Mapping) else declared
    if builtin and isinstance(section, dict):
        section[DEMO_CHANNEL] = demo_channel(settings.host, settings.mllp_port)
    try:
        return load_channels({"channels": section}, base, source=settings.path or "ehrgate.yaml")
    except ChannelConfigError as exc:
        raise CliError(exc.message) from None


def _messages(settings: Settings, *, must_exist: bool = True) -> Any:
    """The message store; ``must_exist=False`` for commands that record state (deploy, pause...),
    which may come before the first start."""
    from ..engine import open_messages
    from .serve import _open

    return open_messages(_open(settings, must_exist=must_exist))


def _pick(channels: dict[str, Any], name: str) -> Any:
    if name not in channels:
        from ..engine import DEMO_CHANNEL

        declared = sorted(set(channels) - {DEMO_CHANNEL})
        raise CliError(f"Channel '{name}' is not declared in the config file (channels: "
                       f"{', '.join(declared) or 'none; pass --config ehrgate.yaml'}; built in: {DEMO_CHANNEL}).")
    return channels[name]


@channel.command("test")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@database_options
def test_(name: str, files: tuple[str, ...], **flags: Any) -> None:
    """Run channel NAME's filters and transformers on the messages of FILES and print every stage's
    output. Nothing is stored or delivered: the harness for reviewing a channel change."""
    from ..engine import Pipeline

    settings = settings_from(**flags)
    pipeline = Pipeline(_pick(_channels(settings, builtin=True), name))
    failed = 0
    for file, n, raw in _read_bytes(files):
        result = pipeline.run(raw, trace=True)
        click.echo(f"== {file} message {n}: {result.status}" + (f" - {result.error}" if result.error else ""))
        for label, content in result.stages:
            click.echo(f"-- {label}")
            click.echo(content.replace("\r", "\n").rstrip("\n"))
        failed += result.status == "ERROR"
    if failed:
        sys.exit(1)


@channel.command("list")
@database_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(as_json: bool, **flags: Any) -> None:
    """Channels of the config file and the built-in mllp-in (ehrgate demo, serve --mllp-port), with
    their recorded state (deployed, paused: what a running server applies)."""
    from ..engine import DEMO_CHANNEL

    settings = settings_from(**flags)
    declared = settings.config.get("channels") or {}
    channels = _channels(settings, builtin=True)  # before: on the demo, nothing at all was printed
    ms = _messages(settings)
    states = ms.channel_states()
    ms.close()
    for name in sorted(set(channels) | set(states)):
        cfg = channels.get(name)
        state = states.get(name, {"deployed": True, "paused": False})
        builtin = name == DEMO_CHANNEL
        row = {"name": name, "declared": cfg is not None and not builtin, "builtin": builtin,
               "deployed": state["deployed"], "paused": state["paused"],
               "source": cfg.source.type if cfg else None,
               "port": cfg.source.options.get("port") if cfg else None,
               "destinations": [d.name for d in cfg.destinations] if cfg else []}
        if as_json:
            click.echo(json.dumps(row))
        else:
            flags_text = ("paused" if row["paused"] else "running") if row["deployed"] else "undeployed"
            where = f" port {row['port']}" if row["port"] is not None else ""
            note = ("  (built in: runs under ehrgate demo and ehrgate serve --mllp-port"
                    + (", in place of the one in the config file)" if name in declared else ")") if builtin else "")
            click.echo(f"{name:24} {flags_text:10} {row['source'] or '(not declared)'}{where} → "
                       f"{', '.join(row['destinations']) or '-'}{note}")
    if not declared and not as_json:
        click.echo(f"Only the built-in {DEMO_CHANNEL}: no config file declares channels (pass --config "
                   "ehrgate.yaml; see docs/engine.md).", err=True)


def _control(name: str, action: str, flags: dict[str, Any], **change: Any) -> None:
    from ..engine import DEMO_CHANNEL
    from ..engine.audit import cli_actor

    settings = settings_from(**flags)
    channels = _channels(settings)
    ms = _messages(settings, must_exist=False)
    try:
        if name not in channels and name != DEMO_CHANNEL and name not in ms.channel_states():
            _pick(channels, name)
        state = ms.set_channel_state(name, **change, actor=cli_actor(), action=action)
    finally:
        ms.close()
    what = "deployed" if state["deployed"] else "undeployed"
    click.echo(f"Channel '{name}' {what}{', paused' if state['paused'] else ''} (generation {state['generation']}); "
               "running servers apply it within a second.")


@channel.command()
@click.argument("name")
@database_options
def deploy(name: str, **flags: Any) -> None:
    """(Re)deploy NAME: running servers re-read it from their ehrgate.yaml and restart it."""
    _control(name, "deploy", flags, deployed=True, bump=True)


@channel.command()
@click.argument("name")
@database_options
def undeploy(name: str, **flags: Any) -> None:
    """Stop NAME (its source closes; queued messages stay queued)."""
    _control(name, "undeploy", flags, deployed=False)


@channel.command()
@click.argument("name")
@database_options
def pause(name: str, **flags: Any) -> None:
    """Pause processing and delivery of NAME; its source keeps receiving and storing."""
    _control(name, "pause", flags, paused=True)


@channel.command()
@click.argument("name")
@database_options
def resume(name: str, **flags: Any) -> None:
    """Resume NAME: queued messages are processed and delivered."""
    _control(name, "resume", flags, paused=False)


@channel.command()
@click.argument("name", required=False)
@database_options
@click.option("--since", default="24h", show_default=True, help="Count messages received since (2h, 7d, ISO date).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def stats(name: str | None, since: str, as_json: bool, **flags: Any) -> None:
    """Messages by status, deliveries by destination, queue depth and oldest queued age (from the database)."""
    from ..engine.timeparse import TimeError, parse_since

    settings = settings_from(**flags)
    ms = _messages(settings)
    try:
        try:
            cutoff = parse_since(since, ms.clock())
        except TimeError as exc:
            raise CliError(str(exc)) from None
        counts = ms.status_counts(cutoff)
        deliveries = ms.delivery_counts(cutoff)
        queue = ms.queue_stats()
        now = ms.clock()
    finally:
        ms.close()
    names = sorted({c for c, _ in counts} | {c for c, _ in queue} | ({name} if name else set()))
    out = {}
    for ch in names:
        if name and ch != name:
            continue
        out[ch] = {
            "messages": {s: n for (c, s), n in sorted(counts.items()) if c == ch},
            "deliveries": {f"{d}:{s}": n for (c, d, s), n in sorted(deliveries.items()) if c == ch},
            "queued": {(step or "pipeline"): {"count": n, "oldest_age_s": round((now - o) / 1000, 1) if o else 0}
                       for (c, step), (n, o) in sorted(queue.items()) if c == ch},
        }
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for ch, data in out.items():
        click.echo(f"{ch} (since {since}):")
        click.echo("  messages:   " + (", ".join(f"{s} {n}" for s, n in data["messages"].items()) or "none"))
        click.echo("  deliveries: " + (", ".join(f"{k} {n}" for k, n in data["deliveries"].items()) or "none"))
        click.echo("  queued:     " + (", ".join(f"{k} {v['count']} (oldest {v['oldest_age_s']}s)"
                                               for k, v in data["queued"].items()) or "none"))

"""``ehrgate apps add|list|show|rotate-secret|remove``: the app registry from scripts, against the
same database as the server (running or not). Secrets are printed once, on add and rotate."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from .common import CliError, database_options, settings_from

__all__ = ["apps"]


def _store(flags: dict[str, Any], *, must_exist: bool = True) -> Any:
    from .serve import _open

    return _open(settings_from(**flags), must_exist=must_exist)


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if value in (None, "", [], False) and key not in ("has_secret",):
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        elif isinstance(value, dict):
            value = f"{len(value.get('keys', []))} key(s)"
        click.echo(f"{key:>13}: {value}")


@click.group()
def apps() -> None:
    """Register SMART apps (clients) and manage their secrets."""


def _record(w: Any, change: str, client_id: str) -> None:
    """The registry change's AuditEvent, in its transaction, naming the OS account that ran the command."""
    from ..engine.audit import cli_actor
    from ..smart.apps import record_change

    record_change(w, change, client_id, actor=cli_actor().name, via="cli", now=time.time())


@apps.command("add")
@database_options
@click.option("--client-id", required=True, help="The app's client_id.")
@click.option("--name", required=True, help="Name shown to users on the consent page and the chart.")
@click.option("--type", "client_type", required=True,
              type=click.Choice(["public", "confidential-symmetric", "confidential-asymmetric"]), help="Client type.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI (repeat for several).")
@click.option("--launch-url", default="", help="URL the EHR opens for an EHR launch.")
@click.option("--description", default="", help="One sentence about the app.")
@click.option("--icon-url", default="", help="Icon shown on the chart.")
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False), help="JWKS file with the app's public keys.")
@click.option("--jwks-uri", default="", help="URL of the app's JWKS.")
@click.option("--scope", "scopes", multiple=True, help="Scope the app may be granted (repeat); default: all user scopes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def add(client_id: str, name: str, client_type: str, redirect_uris: tuple[str, ...], launch_url: str, description: str,
        icon_url: str, jwks_file: str | None, jwks_uri: str, scopes: tuple[str, ...], as_json: bool, **flags: Any) -> None:
    """Register an app; prints the client secret once for confidential-symmetric clients."""
    from ..smart.apps import DEFAULT_SCOPES, App, AppError, add_app

    jwks = None
    if jwks_file:
        try:
            jwks = json.loads(Path(jwks_file).read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--jwks-file {jwks_file!r} is not a readable JSON file ({exc}).") from None
    app = App(client_id=client_id, name=name, client_type=client_type, redirect_uris=redirect_uris, launch_url=launch_url,
              description=description, icon_url=icon_url, jwks=jwks, jwks_uri=jwks_uri,
              scopes=" ".join(scopes) if scopes else DEFAULT_SCOPES, source="cli")
    store = _store(flags, must_exist=False)  # apps may be registered before the first start
    try:
        with store.writer() as w:
            created, secret = add_app(w.conn, app, now=int(time.time()))
            _record(w, "add", client_id)
    except AppError as exc:
        raise CliError(str(exc)) from None
    summary = created.summary()
    if secret:
        summary["client_secret"] = secret
    _print(summary, as_json)
    if secret and not as_json:
        click.echo("Keep the client secret now: it is stored hashed and cannot be shown again.", err=True)


@apps.command("list")
@database_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool, **flags: Any) -> None:
    """List registered apps."""
    from ..smart.apps import list_apps

    store = _store(flags)
    with store.reader() as conn:
        found = list_apps(conn)
    if as_json:
        click.echo(json.dumps([a.summary() for a in found], indent=2))
        return
    if not found:
        click.echo("No apps are registered. Add one with `ehrgate apps add`.")
    for app in found:
        click.echo(f"{app.client_id:<24} {app.client_type:<24} {app.name}  [{app.source}]")


@apps.command("show")
@database_options
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(client_id: str, as_json: bool, **flags: Any) -> None:
    """Show one app."""
    from ..smart.apps import get_app

    store = _store(flags)
    with store.reader() as conn:
        app = get_app(conn, client_id)
    if app is None:
        raise CliError(f"No app with client_id {client_id!r}; see `ehrgate apps list`.")
    _print(app.summary(), as_json)


@apps.command("rotate-secret")
@database_options
@click.argument("client_id")
def rotate_secret_cmd(client_id: str, **flags: Any) -> None:
    """Give a confidential-symmetric app a new secret (printed once; the old one stops working)."""
    from ..smart.apps import AppError, rotate_secret

    store = _store(flags)
    try:
        with store.writer() as w:
            secret = rotate_secret(w.conn, client_id)
            _record(w, "rotate-secret", client_id)
    except AppError as exc:
        raise CliError(str(exc)) from None
    click.echo(secret)
    click.echo("Keep the client secret now: it is stored hashed and cannot be shown again.", err=True)


@apps.command("remove")
@database_options
@click.argument("client_id")
def remove(client_id: str, **flags: Any) -> None:
    """Remove an app (its existing tokens stop at their expiry; revoke them first to end them now)."""
    from ..smart.apps import AppError, remove_app

    store = _store(flags)
    try:
        with store.writer() as w:
            remove_app(w.conn, client_id)
            _record(w, "remove", client_id)
    except AppError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"Removed app {client_id}.")

"""``ehrgate keys rotate|list`` and ``ehrgate users add|list``: signing keys in the data dir and the
people who sign in."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .common import CliError, database_options, settings_from

__all__ = ["keys", "users"]


@click.group()
def keys() -> None:
    """Signing keys of the authorization server (in <data-dir>/keys)."""


def _ring(flags: dict[str, Any]) -> Any:
    from ..smart.keys import KeyRing

    settings = settings_from(**flags)
    return KeyRing(Path(settings.data_dir) / "keys", retire_after=max(settings.access_token_lifetime, 3600))


def _failed(ring: Any, exc: OSError | RuntimeError, doing: str) -> CliError:
    """One sentence naming the directory (a missing or read-only --data-dir was a traceback)."""
    if isinstance(exc, RuntimeError):  # a key file that cannot be read: KeyRing's own sentence
        return CliError(str(exc))
    return CliError(f"Signing keys in {ring.dir} cannot be {doing}: {exc.strerror or exc}"
                    + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(ring.dir) else "")
                    + ". Check --data-dir.")


@keys.command("rotate")
@database_options
def rotate(**flags: Any) -> None:
    """Make new signing keys active (RS256 and ES256); the old ones keep verifying until their tokens expire."""
    ring = _ring(flags)
    try:
        if any(ring.dir.glob("*.json")):
            new = ring.rotate()
        else:  # the first keys: nothing to retire (rotating them at once left four keys)
            new = ring.verifying_keys()
    except (OSError, RuntimeError) as exc:
        raise _failed(ring, exc, "written") from None
    for entry in new:
        click.echo(f"New {entry.alg} signing key {entry.kid} is active; running servers pick it up within a second.")


@keys.command("list")
@database_options
def list_keys(**flags: Any) -> None:
    """List the published signing keys (without making any: the server makes the first ones on start)."""
    ring = _ring(flags)
    if not ring.dir.parent.is_dir():
        raise CliError(f"Data directory {ring.dir.parent} does not exist; check --data-dir (ehrgate serve or demo "
                       "makes it on first start).")
    try:
        if not any(ring.dir.glob("*.json")):
            click.echo(f"No signing keys in {ring.dir} yet (they are made on the first start of ehrgate "
                       "serve/demo, or with ehrgate keys rotate).", err=True)
            return
        ring.load()  # create=False, unlike the first use of a ring
        entries = ring.verifying_keys()
    except (OSError, RuntimeError) as exc:
        raise _failed(ring, exc, "read") from None
    for entry in entries:
        state = "active" if entry.retired is None else "retired (verifies until its tokens expire)"
        click.echo(f"{entry.kid}  {entry.alg}  {state}")


@click.group()
def users() -> None:
    """People who sign in (clinicians, patients, admins; the engine's operators and viewers)."""


def _record(w: Any, what: str) -> None:
    """An AuditEvent (subtype ``user-account``) in the change's transaction, naming the OS account
    that ran the command; ``what`` says which account and what changed (never a password)."""
    from ..engine.audit import cli_actor
    from ..smart.audit import audit_event

    actor = cli_actor().name
    w.create("AuditEvent", audit_event("user-account", actor=actor, now=time.time(),
                                       description=f"{what} by {actor} (cli)."))


@users.command("add")
@database_options
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(["clinician", "patient", "admin", "operator", "viewer"]),
              help="clinician or patient: SMART apps and the EHR; admin: also /admin/apps and the whole engine admin "
                   "API; operator: engine read, control, reprocess; viewer: engine read only.")
@click.option("--fhir-user", default="", help="Linked record, e.g. Practitioner/123 or Patient/456.")
@click.option("--display-name", default="")
@click.password_option("--password", help="Prompted for when not given; use --password - to read it from stdin.")
def add_user_cmd(username: str, role: str, fhir_user: str, display_name: str, password: str, **flags: Any) -> None:
    """Add a user (the password is stored as an argon2 hash)."""
    from ..smart.users import UserError, add_user
    from .serve import _open

    if password == "-":
        password = sys.stdin.readline().rstrip("\n")
    store = _open(settings_from(**flags))
    try:
        with store.writer() as w:
            user = add_user(w.conn, username=username, password=password, role=role, fhir_user=fhir_user,
                            display_name=display_name, now=int(time.time()))
            _record(w, f"User {user.username} added with the role {user.role}")
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"Added {user.role} {user.username}" + (f" ({user.fhir_user})" if user.fhir_user else "") + ".")


def _ended(done: Any) -> str:
    parts = []
    if done.sessions:
        parts.append(f"{done.sessions} sign-in{'s' if done.sessions != 1 else ''} ended")
    if done.grants:
        parts.append(f"{done.grants} app grant{'s' if done.grants != 1 else ''} revoked")
    return f" ({', '.join(parts)})" if parts else ""


@users.command("remove")
@database_options
@click.argument("username")
def remove_user_cmd(username: str, **flags: Any) -> None:
    """Remove a user: they can no longer sign in, their sign-ins end and every app they authorized
    loses access (offline access too). Their FHIR record and the audit trail stay."""
    from ..engine.access import ENGINE_ROLES
    from ..smart.users import UserError, has_role, remove_user
    from .serve import _open

    settings = settings_from(**flags)
    store = _open(settings, must_exist=True)
    try:
        with store.writer() as w:
            done = remove_user(w.conn, username, now=int(time.time()))
            _record(w, f"User {done.user.username} ({done.user.role}) removed{_ended(done)}")
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"Removed {done.user.role} {done.user.username}{_ended(done)}.")
    with store.reader() as conn:
        left = has_role(conn, ENGINE_ROLES)
    if done.user.role in ENGINE_ROLES and not left and not settings.admin_token:
        click.echo(f"Note: no user with the {', '.join(ENGINE_ROLES[:-1])} or {ENGINE_ROLES[-1]} role is left and "
                   "admin_token is not set, so the engine admin API now answers requests from this host (127.0.0.1) "
                   "without a sign-in - and so does anything behind a reverse proxy on it. Add one with "
                   "`ehrgate users add --role admin`.", err=True)


@users.command("set-password")
@database_options
@click.argument("username")
@click.password_option("--password", help="Prompted for when not given; use --password - to read it from stdin.")
@click.option("--revoke-apps", is_flag=True, help="Also end the apps' offline access (refresh tokens) this user gave.")
def set_password_cmd(username: str, password: str, revoke_apps: bool, **flags: Any) -> None:
    """Set a user's password. Their sign-ins end (and with them the apps' online access), so whoever
    knew the old one is signed out."""
    from ..smart.users import UserError, set_password
    from .serve import _open

    if password == "-":
        password = sys.stdin.readline().rstrip("\n")
    store = _open(settings_from(**flags), must_exist=True)
    try:
        with store.writer() as w:
            done = set_password(w.conn, username, password, now=int(time.time()), revoke_apps=revoke_apps)
            _record(w, f"Password of {done.user.username} changed{_ended(done)}")
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"Password of {done.user.username} changed{_ended(done)}.")


@users.command("list")
@database_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_users_cmd(as_json: bool, **flags: Any) -> None:
    """List users (never their passwords)."""
    from ..smart.users import list_users
    from .serve import _open

    store = _open(settings_from(**flags), must_exist=True)
    with store.reader() as conn:
        found = list_users(conn)
    for user in found:
        if as_json:
            click.echo(json.dumps({"username": user.username, "role": user.role, "fhir_user": user.fhir_user,
                                   "display_name": user.display_name}))
        else:
            click.echo(f"{user.username:<20} {user.role:<10} {user.fhir_user}")
    if not found and not as_json:
        click.echo("No users. Add one with `ehrgate users add` (or run `ehrgate demo` on an empty data dir).")

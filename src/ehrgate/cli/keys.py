"""``ehrgate keys rotate|list`` and ``ehrgate users add|list``: signing keys in the data dir and the
people who sign in."""

from __future__ import annotations

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


@keys.command("rotate")
@database_options
def rotate(**flags: Any) -> None:
    """Make new signing keys active (RS256 and ES256); the old ones keep verifying until their tokens expire."""
    ring = _ring(flags)
    ring.active  # noqa: B018 - creates the first keys if there are none
    for new in ring.rotate():
        click.echo(f"New {new.alg} signing key {new.kid} is active; running servers pick it up within a second.")


@keys.command("list")
@database_options
def list_keys(**flags: Any) -> None:
    """List the published signing keys."""
    ring = _ring(flags)
    for entry in ring.verifying_keys():
        state = "active" if entry.retired is None else "retired (verifies until its tokens expire)"
        click.echo(f"{entry.kid}  {entry.alg}  {state}")


@click.group()
def users() -> None:
    """People who sign in (clinicians, patients, admins)."""


@users.command("add")
@database_options
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(["clinician", "patient", "admin"]))
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
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"Added {user.role} {user.username}" + (f" ({user.fhir_user})" if user.fhir_user else "") + ".")


@users.command("list")
@database_options
def list_users_cmd(**flags: Any) -> None:
    """List users."""
    from ..smart.users import list_users
    from .serve import _open

    store = _open(settings_from(**flags))
    with store.reader() as conn:
        for user in list_users(conn):
            click.echo(f"{user.username:<20} {user.role:<10} {user.fhir_user}")

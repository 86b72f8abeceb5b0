"""The ``ehrgate`` command: a thin edge over the same services the HTTP API uses."""

from __future__ import annotations

import sys
from typing import Any

import click

from . import convert as _convert  # noqa: F401  (registers 'ehrgate hl7 convert')
from .apps import apps
from .audit import audit
from .bulk import bulk
from .channel import channel
from .common import CliError
from .hl7 import hl7
from .keys import keys, users
from .load import load
from .messages import messages
from .serve import demo, serve
from .token import token

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ehrgate")
def cli() -> None:
    """EHRGate: a FHIR R4 server, SMART on FHIR authorization and an HL7 v2 engine in one program.

    \b
    Start here:
      ehrgate demo                 run with synthetic patients on http://127.0.0.1:8080/fhir
      ehrgate serve                run on an existing (or new, empty) database
      ehrgate load PATH...         load FHIR Bundles and NDJSON files into the store
      ehrgate apps add ...         register a SMART app (see `ehrgate apps --help`)
      ehrgate token                an access token for curl (the demo backend service)
      ehrgate hl7 send FILE --to 127.0.0.1:2575   send HL7 v2 messages over MLLP
      ehrgate messages search      find stored HL7 messages (the first column is the message id)
      ehrgate messages show ID     what happened to one: each stage, the FHIR Bundle, every delivery
      ehrgate channel list         the channels (the demo's mllp-in is built in) and their state
      ehrgate audit list           who deployed, paused, reprocessed or pruned what
    """


cli.add_command(serve)
cli.add_command(demo)
cli.add_command(load)
cli.add_command(apps)
cli.add_command(keys)
cli.add_command(users)
cli.add_command(hl7)
cli.add_command(channel)
cli.add_command(messages)
cli.add_command(token)
cli.add_command(bulk)
cli.add_command(audit)


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="ehrgate", standalone_mode=True)
    except Exception as exc:
        # here, not at the top: --help needs no settings (and one was loaded if one was raised)
        from ..settings import SettingsError

        if not isinstance(exc, (CliError, SettingsError)):
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)

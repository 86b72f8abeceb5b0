"""``ehrgate hl7 convert FILE... [--out DIR]``: the FHIR transaction Bundle each message converts to.

The same function the channel step runs (``ehrgate.convert``), with no server and no database:
what an analyst runs first on a new feed. Registered in the ``hl7`` group on import.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import CliError
from .hl7 import _warn, hl7

if TYPE_CHECKING:
    from ..convert import ConversionOptions
    from ..hl7 import BatchFile

__all__ = ["convert_command"]


def _options(channel: str, timezone: str) -> ConversionOptions:
    from ..convert import ConversionOptions

    try:
        return ConversionOptions(channel=channel, timezone=timezone)
    except ValueError as exc:
        raise CliError(f"--timezone: {exc}.") from None


def _targets(target: Path, batches: list[tuple[str, BatchFile]]) -> dict[tuple[str, int], Path]:
    """DIR/<file stem>[-n].json of every message, refusing two messages that would share one file
    (d1/x.hl7 and d2/x.hl7 both make x.json: the second silently replaced the first)."""
    out: dict[tuple[str, int], Path] = {}
    taken: dict[Path, str] = {}
    for name, batch in batches:
        for n in range(1, len(batch.messages) + 1):
            path = target / (Path(name).stem + (f"-{n}" if n > 1 else "") + ".json")
            label = name if len(batch.messages) == 1 else f"{name} message {n}"
            if path in taken:
                raise CliError(f"{taken[path]} and {label} would both be written to {path}; convert them to "
                               "separate --out directories (nothing was written).")
            taken[path] = label
            out[(name, n)] = path
    return out


@hl7.command("convert")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write DIR/<file stem>.json (then -2, -3... for further messages of a file) instead of printing.")
@click.option("--channel", default="cli", show_default=True, help="Channel name recorded in meta.source.")
@click.option("--timezone", default="UTC", show_default=True,
              help="Zone of HL7 times without an offset: an IANA name such as Europe/London, or +05:30.")
@click.option("-v", "--verbose", is_flag=True, help="Also report the segments and fields no mapping reads.")
def convert_command(files: tuple[str, ...], out_dir: str | None, channel: str, timezone: str, verbose: bool) -> None:
    """Convert the HL7 v2 messages of FILES to FHIR R4 transaction Bundles.

    Prints the Bundle of a single message as indented JSON; with more than one message, prints one
    compact Bundle per line (NDJSON), so the output stays machine-readable. --out writes a file per
    message instead. A message that cannot be converted is reported with the segment and field at
    fault, e.g. "PID-7: '1983021' is not a valid HL7 date", and the exit status is then 1.
    """
    from ..convert import ConversionError, convert
    from ..fhir.jsonio import dumps
    from ..hl7 import HL7Error, parse, read_batch

    options = _options(channel, timezone)
    batches: list[tuple[str, BatchFile]] = []
    for name in files:
        try:
            batches.append((name, read_batch(Path(name).read_bytes())))
        except OSError as exc:
            raise CliError(f"File '{name}' cannot be read: {exc.strerror}.") from None
    target = Path(out_dir) if out_dir else None
    paths = _targets(target, batches) if target is not None else {}
    if target is not None:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"--out {out_dir!r} cannot be created: {exc.strerror}.") from None
    ndjson = target is None and sum(len(batch.messages) for _, batch in batches) > 1
    failed = converted = 0
    for name, batch in batches:
        _warn(name, batch.problems, bool(batch.messages))
        if not batch.messages:
            click.echo(f"{name}: no HL7 message found (expected segments starting with MSH)", err=True)
            failed += 1
        for n, text in enumerate(batch.messages, start=1):
            label = name if len(batch.messages) == 1 else f"{name} message {n}"
            try:
                result = convert(parse(text), options)
            except ConversionError as exc:
                click.echo(f"{label}: {exc.message}", err=True)
                failed += 1
                continue
            except HL7Error as exc:
                click.echo(f"{label}: cannot be parsed: {exc.message}", err=True)
                failed += 1
                continue
            converted += 1
            for warning in result.warnings:
                click.echo(f"warning: {label}: {warning}", err=True)
            if verbose and (result.ignored_segments or result.ignored_fields):
                ignored = [*(f"{k} x{v}" for k, v in sorted(result.ignored_segments.items())),
                           *(f"{k} x{v}" for k, v in sorted(result.ignored_fields.items()))]
                click.echo(f"{label}: not mapped: {', '.join(ignored)}", err=True)
            body = dumps(result.bundle, pretty=not ndjson)
            if target is None:
                sys.stdout.write(body.decode() + "\n")
            else:
                path = paths[(name, n)]
                path.write_bytes(body + b"\n")
                click.echo(f"{label} -> {path}", err=True)
    if target is not None or failed:
        click.echo(f"{converted} converted, {failed} failed", err=True)
    if failed:
        sys.exit(1)

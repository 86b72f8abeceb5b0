"""``ehrgate load PATH…``: load FHIR Bundles and NDJSON files (and directories of them)."""

from __future__ import annotations

import time
from typing import Any

import click

from .common import CliError, database_options, settings_from

__all__ = ["load"]


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@database_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that parse and validate input (default: one per CPU for inputs over 4 MB; 0: none).")
def load(paths: tuple[str, ...], quiet: bool, workers: int | None, **flags: Any) -> None:
    """Load FHIR Bundles (transaction, batch, collection) and NDJSON files into the store."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..fhir.loader import load_paths
    from ..fhir.loadfiles import count_load_units
    from ..fhir.validation import known_resource_types
    from .serve import _open

    settings = settings_from(**flags)
    total = count_load_units(list(paths))
    if not total:  # before the database is opened: nothing to load is a mistake, not "Loaded 0"
        raise CliError(f"No input in {', '.join(paths)}: expected FHIR Bundles or resources as .json, NDJSON as "
                       ".ndjson/.jsonl (or their .gz), or directories holding them.")
    store = _open(settings)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]Loading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=quiet, transient=False,
    ) as bar:
        task = bar.add_task("load", total=total)
        summary = load_paths(
            store, list(paths), frozenset(known_resource_types()), workers=workers,
            progress=lambda n: bar.advance(task, n),
        )
    elapsed = time.perf_counter() - started
    rate = summary.resources / elapsed if elapsed > 0 else 0.0
    click.echo(f"Loaded {summary.resources} resources from {summary.bundles} bundles in {elapsed:.1f} s ({rate:,.0f}/s).")
    for res_type, n in sorted(summary.by_type.items(), key=lambda kv: -kv[1])[:12]:
        click.echo(f"  {res_type:<28} {n}")
    if summary.errors:
        click.echo(f"{len(summary.errors)} problems:", err=True)
        for line in summary.errors[:50]:
            click.echo(f"  {line}", err=True)
        if len(summary.errors) > 50:
            click.echo(f"  ... and {len(summary.errors) - 50} more", err=True)
        raise CliError(f"{len(summary.errors)} items could not be loaded (see above).")

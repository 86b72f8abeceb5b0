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
    # Inputs that were not Bundles (resource files, NDJSON lines): "from 5 bundles" alone read as if
    # 230 single-resource files and 2,000 NDJSON lines had been left out.
    others = max(total - summary.bundles, 0)
    sources = [f"{summary.bundles} bundles"] if summary.bundles or not others else []
    if others:
        sources.append(f"{others:,} {'other ' if summary.bundles else ''}inputs (resource files, NDJSON lines)")
    click.echo(f"Loaded {summary.resources} resources from {' and '.join(sources)} in {elapsed:.1f} s ({rate:,.0f}/s).")
    if summary.by_type:
        click.echo(_by_type(summary.by_type))
    for line in summary.skipped:
        click.echo(f"  {line}")
    if summary.errors:
        n = len(summary.errors)
        click.echo(f"{n} problem{'s' if n != 1 else ''}:", err=True)
        for line in summary.errors[:50]:
            click.echo(f"  {line}", err=True)
        if n > 50:
            click.echo(f"  ... and {n - 50} more", err=True)
        raise CliError(f"{n} item{'s' if n != 1 else ''} could not be loaded (see above); the rest was loaded.")


def _by_type(by_type: dict[str, int], lines: int = 12) -> str:
    """The most frequent types one per line, and every other type on one line: the summary stopped
    at twelve without saying so, and the Patients of a Synthea load were among those left out."""
    ranked = sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))
    out = [f"  {res_type:<28} {n}" for res_type, n in ranked[:lines]]
    rest = sorted(ranked[lines:])
    if rest:
        out.append(f"  and {len(rest)} more type{'s' if len(rest) != 1 else ''}: "
                   + ", ".join(f"{res_type} {n}" for res_type, n in rest))
    return "\n".join(out)

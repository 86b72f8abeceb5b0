"""Benchmark: how long ``ehrgate`` commands take to start, against ``python -c "import click"``.

Every command is a fresh process of the console script (``.venv/bin/ehrgate``), the way people run
it; wall time and the process's CPU time (user + system, from the parent's rusage of its children)
are taken by this script. ``python -c "import click"`` is the ceiling: no click program can start
faster, so what a command takes beyond it is ours. The commands take turns in a rotating order, so
load from other processes on a shared machine falls on all alike; medians are quoted.

``--against DIR`` also runs every ``ehrgate`` command with DIR (an older copy of src/, i.e. the
directory holding its ``ehrgate`` package, e.g. ``git archive <commit> src | tar -x -C /tmp/old``
then ``/tmp/old/src``) first on PYTHONPATH, in turn with the work tree: a before/after in one run.
What the copy is goes into the section from a file COMMIT beside DIR when there is one (as in
harness.source_state).

    .venv/bin/python bench/cli_startup.py [--runs 10] [--against DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import harness as hb

SAMPLE = "tests/convert/samples/adt_a01.hl7"
# (label, argv after the program); "{data}" is an empty, migrated data directory made for the run
COMMANDS = [
    ("ehrgate --help", ["--help"]),
    ("ehrgate messages search --help", ["messages", "search", "--help"]),
    (f"ehrgate hl7 show {SAMPLE}", ["hl7", "show", SAMPLE]),
    ("ehrgate messages search (empty database)", ["messages", "search", "--data-dir", "{data}"]),
]
CEILING = ("python -c 'import click' (ceiling)", [sys.executable, "-c", "import click"])
"""Interpreter start and click: the least any click program takes."""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv``; a failing command stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=hb.REPO, env=env, capture_output=True, timeout=120, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stderr.decode()[-1500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_database(data: Path) -> None:
    """An empty data directory with the database migrated, for ``messages search``."""
    from ehrgate.database import open_store
    from ehrgate.settings import load_settings

    open_store(load_settings(None, overrides={"data_dir": str(data)}, environ={})).engine.dispose()


def before_tree(src: Path) -> str:
    stamp = src.resolve().parent / "COMMIT"
    return f"the copy of src/ in {src} ({stamp.read_text().strip() if stamp.exists() else 'commit not recorded'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--against", type=Path,
                        help="a copy of an older src/ (holding its ehrgate package) to run in turn with this tree")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    if args.against is not None and not (args.against / "ehrgate" / "cli").is_dir():
        raise SystemExit(f"--against {args.against}: no ehrgate/cli package there (expected a copy of src/).")

    load_before = hb.load_average()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_") and k != "PYTHONPATH"}
    trees = {"now": base_env}
    if args.against is not None:
        trees = {"before": {**base_env, "PYTHONPATH": str(args.against.resolve())}, "now": base_env}
    with hb.temp_dir("cli") as tmp:
        make_database(Path(tmp) / "data")
        jobs: list[tuple[str, str, list[str], dict[str, str]]] = [("", CEILING[0], CEILING[1], base_env)]
        for label, argv in COMMANDS:
            full = [hb.EHRGATE, *(a.replace("{data}", str(Path(tmp) / "data")) for a in argv)]
            jobs += [(tree, label, full, env) for tree, env in trees.items()]
        for _, _, argv, env in jobs:  # warm-up: page cache, bytecode caches of both trees
            timed(argv, env)
        walls: dict[tuple[str, str], list[float]] = {(tree, label): [] for tree, label, _, _ in jobs}
        cpus: dict[tuple[str, str], list[float]] = {(tree, label): [] for tree, label, _, _ in jobs}
        for i in range(args.runs):
            for tree, label, argv, env in jobs[i % len(jobs):] + jobs[:i % len(jobs)]:
                wall, cpu = timed(argv, env)
                walls[(tree, label)].append(wall)
                cpus[(tree, label)].append(cpu)
            print(f"  round {i + 1}/{args.runs} done", flush=True)

    ceiling = hb.med(walls[("", CEILING[0])])
    rows = []
    for tree, label, _, _ in jobs:
        w, c = walls[(tree, label)], cpus[(tree, label)]
        over = f"+{(hb.med(w) - ceiling) * 1000:,.0f}" if tree else "-"
        name = f"{label} ({tree})" if args.against is not None and tree else label
        rows.append(f"| {name} | {hb.med(w) * 1000:,.0f} | {min(w) * 1000:,.0f}–{max(w) * 1000:,.0f} | "
                    f"{hb.med(c) * 1000:,.0f} | {over} |")
    notes = []
    if args.against is not None:
        for label, _ in COMMANDS:
            before, now = hb.med(walls[("before", label)]), hb.med(walls[("now", label)])
            notes.append(f"- {label}: {before * 1000:,.0f} -> {now * 1000:,.0f} ms wall ({before / now:.1f}x).")
    section = "\n".join([
        f"## cli_startup: `ehrgate` start-up time ({hb.now_utc()})",
        "",
        f"- Command: `{hb.command_line()}`",
        f"- Machine: {hb.machine_line()}, {load_before} before",
        f"- Method: see the docstring of bench/cli_startup.py. {args.runs} run(s) of each command, a fresh process each, "
        f"in turn (rotating order) after one warm-up run each; not pinned. `ehrgate` is {os.path.relpath(hb.EHRGATE, hb.REPO)}"
        + (f"; (before): {before_tree(args.against)} on PYTHONPATH" if args.against is not None else "") + ".",
        "",
        "| command | wall ms (median) | min–max | CPU ms (median) | wall ms over the ceiling |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        *notes,
    ])
    print(section)
    if not args.no_write:
        hb.append_results(section)


if __name__ == "__main__":
    main()

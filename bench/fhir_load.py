"""Benchmark 4, load throughput: ``ehrgate load`` resources/s on SQLite and PostgreSQL.

Each run is the real command on a fresh database (a new --data-dir, or a freshly created PostgreSQL
database), ``ehrgate load PATH --quiet``. The rate is the one the command prints (resources loaded /
seconds from the first file to the last commit, after the store is opened and migrated); the wall
time of the whole command (interpreter start, imports, migration) is given beside it. Inputs: the
Synthea R4 transaction bundles (or, when absent, 60 synthetic patients written as bundle files)
and the Bulk Data NDJSON sample when present. Target (project issue): >= 10,000 resources/s on
SQLite for the Synthea bundles.

``--profile FILE`` additionally runs one SQLite load of the Synthea bundles in-process under
cProfile (modules imported beforehand, so the profile is the load itself) and writes the top
functions by tottime to FILE; it is not added to RESULTS.md.

    .venv/bin/python bench/fhir_load.py [--runs 3] [--quick] [--no-write] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import harness as hb

TARGET = 10_000
# "from 33 bundles", "from 2,145 inputs (resource files, NDJSON lines)", or both joined by "and"
LOADED = re.compile(r"Loaded (\d+) resources from (.+?) in ([\d.]+) s \(([\d,]+)/s\)")
PROBLEMS = re.compile(r"^(\d+) problems?:", re.M)


@dataclass
class LoadRun:
    resources: int
    seconds: float
    wall: float
    problems: int
    cpu: float
    """User + system CPU seconds of the whole ``ehrgate load`` process (start-up included)."""

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    @property
    def per_cpu(self) -> float:
        """Resources per CPU-second of the load process: steadier than the rate when other work
        shares the machine (PostgreSQL's own CPU is not in it)."""
        return self.resources / self.cpu if self.cpu else 0.0


def write_synthetic(dest: Path, patients: int = 60) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i, bundle in enumerate(hb.synthetic_bundles(patients, seed=7)):
        (dest / f"bundle-{i:04d}.json").write_text(json.dumps(bundle))
    return dest


def run_cli(path: Path, *, data_dir: Path | None = None, database_url: str | None = None) -> LoadRun:
    cmd = [hb.EHRGATE, "load", str(path), "--quiet"]
    cmd += ["--data-dir", str(data_dir)] if data_dir is not None else ["--database-url", str(database_url)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = LOADED.search(out.stdout)
    if m is None:
        raise SystemExit(f"ehrgate load printed no summary (exit {out.returncode}):\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")
    p = PROBLEMS.search(out.stderr)
    problems = int(p.group(1)) if p else 0
    if out.returncode not in (0, 2) or (out.returncode == 2 and not problems):
        raise SystemExit(f"ehrgate load failed (exit {out.returncode}): {out.stderr[-1500:]}")
    # the printed seconds have one decimal; the printed rate comes from the exact elapsed time
    resources, rate = int(m.group(1)), float(m.group(4).replace(",", ""))
    return LoadRun(resources, resources / rate if rate else float(m.group(3)), wall, problems, cpu)


def profile(path: Path, out: Path, top: int = 15) -> str:
    import cProfile
    import io
    import pstats

    import ehrgate.cli.load  # noqa: F401 - import before profiling
    import ehrgate.fhir.bundles  # noqa: F401
    import ehrgate.fhir.loader  # noqa: F401
    import ehrgate.fhir.loadfiles  # noqa: F401
    import ehrgate.fhir.search.extract  # noqa: F401
    import ehrgate.fhir.validation  # noqa: F401
    from ehrgate.fhir.loader import load_items
    from ehrgate.fhir.loadfiles import iter_load_items

    with hb.temp_dir("profile") as tmp:
        store = hb.open_store(data_dir=Path(tmp))
        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.enable()
        summary = load_items(store, iter_load_items([str(path)]), hb.known_types())
        prof.disable()
        elapsed = time.perf_counter() - started
        store.engine.dispose()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    head = (f"cProfile of load_items({path}) on fresh SQLite: {summary.resources} resources in {elapsed:.2f} s "
            f"under the profiler ({summary.resources / elapsed:,.0f}/s)\n")
    text = head + buf.getvalue()
    out.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres-url", default=hb.DEFAULT_PG)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 run, SQLite only")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    parser.add_argument("--profile", type=Path, help="also write a cProfile top-15 (tottime) of one SQLite load here")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.skip_postgres = 1, True

    rows: list[str] = []
    notes: list[str] = []
    verdict = ""
    with hb.temp_dir("load") as tmp:
        work = Path(tmp)
        inputs: list[tuple[str, Path]] = []
        if hb.synthea_present():
            inputs.append(("Synthea R4 bundles", hb.SYNTHEA))
        else:
            inputs.append(("synthetic bundles, 60 patients (Synthea absent)", write_synthetic(work / "synthetic")))
        if hb.NDJSON.is_dir():
            inputs.append(("Bulk Data NDJSON, 10 patients", hb.NDJSON))
        engines = ["SQLite"]
        if not args.skip_postgres:
            if hb.pg_available(args.postgres_url):
                engines.append("PostgreSQL")
                notes.append(f"PostgreSQL {hb.pg_version(args.postgres_url)} on 127.0.0.1 (same machine).")
            else:
                notes.append(f"PostgreSQL skipped: nothing answered at {args.postgres_url}.")
        for engine in engines:
            for label, path in inputs:
                runs = []
                for i in range(args.runs):
                    if engine == "SQLite":
                        r = run_cli(path, data_dir=work / f"sqlite-{len(rows)}-{i}")
                    else:
                        url = hb.fresh_pg_database("ehrgate_bench_load", args.postgres_url)
                        try:
                            r = run_cli(path, database_url=url)
                        finally:
                            hb.drop_pg_database("ehrgate_bench_load", args.postgres_url)
                    runs.append(r)
                    print(f"  {engine:<10} {label:<34} run {i + 1}: {r.resources} resources in {r.seconds:.2f} s = "
                          f"{r.rate:8,.0f}/s (command wall {r.wall:.2f} s, CPU {r.cpu:.2f} s, {r.problems} rejected)", flush=True)
                rates = [r.rate for r in runs]
                rows.append(f"| {engine} | {label} | {runs[0].resources:,} | {runs[0].problems:,} | {hb.med(rates):,.0f} | "
                            f"{min(rates):,.0f}–{max(rates):,.0f} | {hb.med([r.per_cpu for r in runs]):,.0f} | "
                            f"{hb.med([r.seconds for r in runs]):.2f} | {hb.med([r.wall for r in runs]):.2f} | "
                            f"{hb.med(rates) / TARGET:.2f}x |")
                if engine == "SQLite" and path == inputs[0][1]:
                    verdict = (f"SQLite, {label}: {hb.med(rates):,.0f} resources/s, target >= {TARGET:,}/s: "
                               f"{'met' if hb.med(rates) >= TARGET else 'MISSED'} ({hb.med(rates) / TARGET:.2f}x of target).")
                if runs[0].problems:
                    notes.append(f"{engine}, {label}: `ehrgate load` rejected {runs[0].problems} resources (exit 2); "
                                 "the rate counts only the resources it stored.")

    section = "\n".join([
        f"## fhir_load: `ehrgate load` throughput ({hb.now_utc()})",
        "",
        f"- Command: `{hb.command_line()}`",
        f"- Machine: {hb.machine_line()}",
        f"- Method: `ehrgate load PATH --quiet` on a fresh database per run, {args.runs} run(s) each; rate = resources "
        "stored / the seconds the command reports (file reading to last commit); wall = whole command incl. start-up "
        "and migration; per CPU-s = resources / CPU seconds of the whole command (start-up included, PostgreSQL's "
        "own CPU not), steadier than the rate when other work shares the machine. Not pinned (PostgreSQL needs the "
        "second core).",
        "",
        "| db | input | resources stored | rejected | resources/s (median) | min–max | per CPU-s of the command | "
        "load s | wall s | vs 10k/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"- {verdict}",
        *[f"- {n}" for n in notes],
    ])
    print(section)
    if not args.no_write:
        hb.append_results(section)
    if args.profile:
        print(profile(hb.SYNTHEA if hb.synthea_present() else inputs[0][1], args.profile))


if __name__ == "__main__":
    main()

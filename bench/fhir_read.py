"""Benchmark 1, read by id: ``GET /fhir/Patient/{id}`` req/s of EHRGate vs a bare Starlette endpoint.

Both servers run in the same run on the same database file: ``ehrgate serve`` (uvicorn, one worker,
exactly as users start it, so with its default INFO access log) and bench/bare_read_app.py (the same
keyed SELECT, sync in the event loop, the same uvicorn settings). A third server, EHRGate with
``EHRGATE_LOG_LEVEL=WARNING``, shows what the per-request access log line costs. Servers are pinned
to CPU 0 and wrk to CPU 1; wrk cycles over ~1000 Patient ids in shuffled order (Lua script) with
keep-alive connections. Each measured run follows a warm-up; servers take turns run by run, and the
figures are medians over the runs. Target (project issue): EHRGate >= 60% of the bare endpoint.

Data: the Synthea corpus when present (its Patients are among the ids), topped up with synthetic
Patients (ehrgate.demo.synthetic, seed 7) to ``--patients``; all through the store's write path.
PostgreSQL (when it answers at --postgres-url) repeats it with a psycopg bare endpoint.

    .venv/bin/python bench/fhir_read.py [--duration 10] [--runs 3] [--connections 32] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

import harness as hb

TARGET = 0.60


def build_data(store: Any, patients: int) -> str:
    """Synthea (if present) plus synthetic Patients up to ``patients`` Patient resources."""
    label = []
    have = 0
    if hb.synthea_present():
        summary = hb.load_paths(store, [hb.SYNTHEA])
        have = summary.by_type.get("Patient", 0)
        label.append(f"Synthea corpus ({summary.resources} resources, {have} Patients)")
    want = max(0, patients - have)
    bundles = hb.synthetic_bundles(want, seed=7)
    shared = next(bundles)
    hb.load_bundles(store, [shared])
    entries = [b["entry"][0] for b in bundles]
    assert all(e["resource"]["resourceType"] == "Patient" for e in entries)
    for start in range(0, len(entries), 250):
        hb.load_bundles(store, [{"resourceType": "Bundle", "type": "transaction", "entry": entries[start:start + 250]}])
    label.append(f"{want} synthetic Patients (seed 7) with their {len(shared['entry'])} shared practice resources")
    return " + ".join(label)


def patient_ids_sqlite(path: Path, limit: int) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT res_id FROM resource WHERE res_type = 'Patient' AND NOT deleted "
                            "ORDER BY res_id LIMIT ?", (limit,)).fetchall()
    return [r[0] for r in rows]


def patient_ids_pg(url: str, limit: int) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT res_id FROM resource WHERE res_type = 'Patient' AND NOT deleted "
                            "ORDER BY res_id LIMIT %s", (limit,)).fetchall()
    return [r[0] for r in rows]


def requests_for(ids: list[str]) -> list[hb.Req]:
    ids = list(ids)
    random.Random(42).shuffle(ids)
    return [hb.Req("GET", f"/fhir/Patient/{i}", kind="read") for i in ids]


def same_body(a: hb.Server, b: hb.Server, res_id: str) -> None:
    sa, ba = hb.http_get(f"{a.base.split('/fhir')[0]}/fhir/Patient/{res_id}")
    sb, bb = hb.http_get(f"{b.base.split('/fhir')[0]}/fhir/Patient/{res_id}")
    if (sa, ba) != (sb, bb):
        raise SystemExit(f"{a.name} and {b.name} disagree on Patient/{res_id}: {sa} vs {sb}")


def measure(servers: list[hb.Server], reqs: list[hb.Req], args: argparse.Namespace, work: Path) -> dict[str, list[hb.LoadResult]]:
    results: dict[str, list[hb.LoadResult]] = {s.name: [] for s in servers}
    for s in servers:
        hb.check_all(s, reqs)
        hb.run_load(s, reqs, duration=args.warmup, connections=args.connections, workdir=work, label=f"warm-{s.name}")
    for run in range(args.runs):
        order = servers[run % len(servers):] + servers[:run % len(servers)]
        for s in order:
            r = hb.run_load(s, reqs, duration=args.duration, connections=args.connections, workdir=work,
                            label=f"{s.name}-{run}")
            if r.errors:
                raise SystemExit(f"{s.name}: {r.errors} failed requests in run {run}")
            results[s.name].append(r)
            print(f"  {s.name:<16} run {run + 1}: {r.rps:8,.0f} req/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
                  f"server CPU {r.server_cpu_s / r.seconds:4.0%}", flush=True)
    return results


def table(db: str, results: dict[str, list[hb.LoadResult]], bare: str) -> tuple[list[str], dict[str, float]]:
    """Rows of the results table; ratios vs the bare endpoint by req/s and by req per server CPU-second
    (the second is steadier when other work shares the machine)."""
    bare_rps = hb.med([r.rps for r in results[bare]])
    bare_cpu = hb.med([r.per_cpu_second for r in results[bare]])
    lines = []
    ratios = {}
    for name, runs in results.items():
        rps = [r.rps for r in runs]
        per_cpu = hb.med([r.per_cpu_second for r in runs])
        ratio = hb.med(rps) / bare_rps
        ratios[name] = ratio
        ratios[name + "/cpu"] = per_cpu / bare_cpu
        lines.append(
            f"| {db} | {name} | {hb.med(rps):,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | {per_cpu:,.0f} | "
            f"{hb.med([r.p50_ms for r in runs]):.2f} | {hb.med([r.p99_ms for r in runs]):.2f} | "
            f"{hb.med([r.server_cpu_s / r.seconds for r in runs]):.0%} | {ratio:.0%} | {per_cpu / bare_cpu:.0%} |"
        )
    return lines, ratios


def verdict(db: str, ratios: dict[str, float]) -> str:
    """Met when both ratios reach the target, missed when neither does; otherwise the machine's other
    work starved one server more than the other (see the server CPU column) and the run says so."""
    r, c = ratios["ehrgate"], ratios["ehrgate/cpu"]
    if r >= TARGET and c >= TARGET:
        outcome = "met"
    elif r < TARGET and c < TARGET:
        outcome = "MISSED"
    else:
        outcome = "inconclusive (the two measures disagree: CPU contention, see the server CPU column)"
    return f"{db}: EHRGate {r:.0%} of bare by req/s, {c:.0%} by req per server CPU-second; target >= {TARGET:.0%}: {outcome}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--postgres-url", default=hb.DEFAULT_PG)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 s runs, SQLite only, no log-level variant")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.skip_postgres = min(args.duration, 3), 1, True

    rows: list[str] = []
    notes: list[str] = []
    verdicts: list[str] = []
    with hb.temp_dir("read") as tmp:
        work = Path(tmp)
        data_dir = work / "sqlite"
        store = hb.open_store(data_dir=data_dir)
        label = build_data(store, args.patients)
        store.engine.dispose()
        db_file = hb.sqlite_file(data_dir)
        ids = patient_ids_sqlite(db_file, args.patients)
        reqs = requests_for(ids)
        print(f"SQLite: {len(ids)} Patient ids; data: {label}", flush=True)
        names = ["ehrgate", "bare"] if args.quick else ["ehrgate", "ehrgate-log-warn", "bare"]
        servers = [hb.start_ehrgate("ehrgate", work, data_dir=data_dir)]
        with hb.servers_stopped(servers):
            if "ehrgate-log-warn" in names:
                servers.append(hb.start_ehrgate("ehrgate-log-warn", work, data_dir=data_dir, log_level="WARNING"))
            servers.append(hb.start_server("bare", [sys.executable, str(hb.BENCH / "bare_read_app.py"), "--sqlite",
                                                    str(db_file)], ready="bare read app is ready:", workdir=work))
            same_body(servers[0], servers[-1], ids[0])
            results = measure(servers, reqs, args, work)
        lines, ratios = table("SQLite", results, "bare")
        rows += lines
        verdicts.append(verdict("SQLite", ratios))
        if "ehrgate-log-warn" in ratios:
            verdicts.append(f"SQLite, access log off (EHRGATE_LOG_LEVEL=WARNING): {ratios['ehrgate-log-warn']:.0%} of bare "
                            f"by req/s ({ratios['ehrgate-log-warn/cpu']:.0%} by req per CPU-second)")

        if not args.skip_postgres:
            if hb.pg_available(args.postgres_url):
                url = hb.fresh_pg_database("ehrgate_bench_read", args.postgres_url)
                try:
                    store = hb.open_store(database_url=url)
                    build_data(store, args.patients)
                    store.engine.dispose()
                    pg_ids = patient_ids_pg(url, args.patients)
                    pg_reqs = requests_for(pg_ids)
                    print(f"PostgreSQL: {len(pg_ids)} Patient ids", flush=True)
                    servers = [hb.start_ehrgate("ehrgate", work, database_url=url)]
                    with hb.servers_stopped(servers):
                        servers.append(hb.start_server("bare", [sys.executable, str(hb.BENCH / "bare_read_app.py"),
                                                                "--postgres", url],
                                                       ready="bare read app is ready:", workdir=work))
                        same_body(servers[0], servers[-1], pg_ids[0])
                        results = measure(servers, pg_reqs, args, work)
                    lines, ratios = table("PostgreSQL", results, "bare")
                    rows += lines
                    verdicts.append(verdict(f"PostgreSQL {hb.pg_version(url)}", ratios))
                finally:
                    hb.drop_pg_database("ehrgate_bench_read", args.postgres_url)
            else:
                notes.append(f"PostgreSQL skipped: nothing answered at {args.postgres_url}.")

    tool = "wrk" if hb.have_wrk() else "bench/loadgen.py (wrk not installed)"
    section = "\n".join([
        f"## fhir_read: GET /fhir/Patient/{{id}}, EHRGate vs bare Starlette endpoint ({hb.now_utc()})",
        "",
        f"- Command: `{hb.command_line()}`",
        f"- Machine: {hb.machine_line()}",
        f"- Data: {label}; {len(ids)} Patient ids cycled in shuffled order.",
        f"- Load: {tool}, 1 thread, {args.connections} keep-alive connections, {args.duration:g} s per run after a "
        f"{args.warmup:g} s warm-up, {args.runs} runs per server taking turns; server pinned to CPU 0, client to CPU 1.",
        "- Servers: `ehrgate serve` (one uvicorn worker, default settings; since 04:20 UTC on 2026-11-22 access lines are off by default (setting access_log)); "
        + ("`ehrgate-log-warn` = the same with EHRGATE_LOG_LEVEL=WARNING; " if not args.quick else "")
        + "`bare` = bench/bare_read_app.py (same SELECT, same uvicorn settings).",
        "",
        "| db | server | req/s (median) | min–max | req per server CPU-s | p50 ms | p99 ms | server CPU | vs bare | "
        "vs bare per CPU-s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *[f"- {v}" for v in verdicts],
        *[f"- {n}" for n in notes],
    ])
    print(section)
    if not args.no_write:
        hb.append_results(section)


if __name__ == "__main__":
    main()

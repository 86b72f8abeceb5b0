"""Benchmark 2, mixed CRUD: read / search / create / update against ``ehrgate serve`` on SQLite.

Data: the Synthea corpus (or, when absent, 40 synthetic patients), loaded through the write path.
The request mix is a fixed list of 1000 requests, shuffled (seed 42) and cycled by wrk over
keep-alive connections:

    50%  read     GET {type}/{id} of any loaded resource
    20%  search   GET Observation?patient={id}&code={system}|{code} (pairs that exist)
    10%  search   GET Patient?name={family}
    10%  create   POST Observation (a loaded Observation without id/meta)
    10%  update   PUT Observation/{id} (the stored Observation sent back: a new version, re-indexed)

One uvicorn worker serves everything, pinned to CPU 0 (wrk on CPU 1), so req/s is per core; the
table also gives requests per second of server CPU time (the per-core rate even when the core was
not saturated). Target (project issue): >= 765 req/s per core. In full mode each request kind is
also run alone once, to show which kind costs what.

    .venv/bin/python bench/fhir_mixed.py [--duration 10] [--runs 3] [--connections 32] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import harness as hb

TARGET = 765
MIX = (("read", 50), ("search-obs", 20), ("search-name", 10), ("create", 10), ("update", 10))


def build_requests(db: Path, total: int = 1000, seed: int = 42) -> list[hb.Req]:
    rng = random.Random(seed)
    with sqlite3.connect(db) as conn:
        all_ids = conn.execute("SELECT res_type, res_id FROM resource WHERE NOT deleted ORDER BY pk").fetchall()
        pairs = conn.execute(
            "SELECT DISTINCT r.target_id, t.system, t.code FROM idx_reference r JOIN idx_token t ON t.res_pk = r.res_pk "
            "WHERE r.res_type = 'Observation' AND r.param = 'patient' AND t.res_type = 'Observation' "
            "AND t.param = 'code' ORDER BY 1, 2, 3"
        ).fetchall()
        families = [r[0] for r in conn.execute(
            "SELECT DISTINCT exact FROM idx_string WHERE res_type = 'Patient' AND param = 'family' ORDER BY 1")]
        obs = conn.execute(
            "SELECT r.res_id, v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
            "WHERE r.res_type = 'Observation' AND NOT r.deleted ORDER BY r.pk LIMIT 2000"
        ).fetchall()
    obs = rng.sample(obs, min(200, len(obs)))
    bodies = []
    for res_id, raw in obs:
        resource = json.loads(raw)
        resource.pop("meta", None)
        bodies.append((res_id, resource))
    reqs: list[hb.Req] = []
    for kind, share in MIX:
        n = total * share // 100
        for i in range(n):
            if kind == "read":
                rt, rid = rng.choice(all_ids)
                reqs.append(hb.Req("GET", f"/fhir/{rt}/{rid}", kind=kind))
            elif kind == "search-obs":
                pid, system, code = rng.choice(pairs)
                token = quote(f"{system}|{code}" if system else code, safe="")
                reqs.append(hb.Req("GET", f"/fhir/Observation?patient={pid}&code={token}", kind=kind))
            elif kind == "search-name":
                reqs.append(hb.Req("GET", f"/fhir/Patient?name={quote(rng.choice(families))}", kind=kind))
            elif kind == "create":
                _rid, resource = bodies[i % len(bodies)]
                body = {k: v for k, v in resource.items() if k != "id"}
                reqs.append(hb.Req("POST", "/fhir/Observation", json.dumps(body).encode(), kind=kind))
            else:
                rid, resource = bodies[i % len(bodies)]
                reqs.append(hb.Req("PUT", f"/fhir/Observation/{rid}", json.dumps(resource).encode(), kind=kind))
    rng.shuffle(reqs)
    return reqs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--kind-duration", type=float, default=5, help="seconds per single-kind run (0: skip)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, no single-kind runs")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.kind_duration = min(args.duration, 3), 1, 0

    with hb.temp_dir("mixed") as tmp:
        work = Path(tmp)
        data_dir = work / "sqlite"
        store = hb.open_store(data_dir=data_dir)
        label = hb.load_clinical_data(store)
        store.engine.dispose()
        reqs = build_requests(hb.sqlite_file(data_dir))
        mix = Counter(r.kind for r in reqs)
        print(f"data: {label}; mix: {dict(mix)}", flush=True)
        server = hb.start_ehrgate("ehrgate", work, data_dir=data_dir)
        runs: list[hb.LoadResult] = []
        kinds: dict[str, hb.LoadResult] = {}
        with hb.servers_stopped([server]):
            hb.check_all(server, reqs)
            hb.run_load(server, reqs, duration=args.warmup, connections=args.connections, workdir=work, label="warm")
            for run in range(args.runs):
                r = hb.run_load(server, reqs, duration=args.duration, connections=args.connections, workdir=work,
                                label=f"mixed-{run}")
                if r.errors:
                    raise SystemExit(f"{r.errors} failed requests in run {run}")
                runs.append(r)
                print(f"  mixed run {run + 1}: {r.rps:8,.0f} req/s  per CPU-s {r.per_cpu_second:8,.0f}  "
                      f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  server CPU {r.server_cpu_s / r.seconds:4.0%}",
                      flush=True)
            if args.kind_duration > 0:
                for kind, _share in MIX:
                    only = [r for r in reqs if r.kind == kind]
                    r = hb.run_load(server, only, duration=args.kind_duration, connections=args.connections,
                                    workdir=work, label=f"kind-{kind}")
                    kinds[kind] = r
                    print(f"  {kind:<12} alone: {r.rps:8,.0f} req/s  p50 {r.p50_ms:6.2f} ms  errors {r.errors}", flush=True)
        with sqlite3.connect(hb.sqlite_file(data_dir)) as conn:
            final = conn.execute("SELECT count(*) FROM resource").fetchone()[0]

    rps = [r.rps for r in runs]
    per_cpu = [r.per_cpu_second for r in runs]
    verdict = "met" if hb.med(rps) >= TARGET else "MISSED"
    tool = "wrk" if hb.have_wrk() else "bench/loadgen.py (wrk not installed)"
    lines = [
        f"## fhir_mixed: read/search/create/update mix on SQLite ({hb.now_utc()})",
        "",
        f"- Command: `{hb.command_line()}`",
        f"- Machine: {hb.machine_line()}",
        f"- Data: {label}; {final} resources in the store at the end (creates add to it).",
        "- Mix (1000 requests, shuffled, cycled): " + ", ".join(f"{k} {s}%" for k, s in MIX)
        + " — see the docstring of bench/fhir_mixed.py for the exact requests.",
        f"- Load: {tool}, 1 thread, {args.connections} connections, {args.duration:g} s per run after a {args.warmup:g} s "
        f"warm-up, {args.runs} runs; `ehrgate serve` (default settings, one worker) pinned to CPU 0, client to CPU 1.",
        "",
        "| workload | req/s (median) | min–max | req per server CPU-s | p50 ms | p99 ms | server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| mixed | {hb.med(rps):,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | {hb.med(per_cpu):,.0f} | "
        f"{hb.med([r.p50_ms for r in runs]):.2f} | {hb.med([r.p99_ms for r in runs]):.2f} | "
        f"{hb.med([r.server_cpu_s / r.seconds for r in runs]):.0%} |",
    ]
    for kind, r in kinds.items():
        lines.append(f"| {kind} alone (1 run, {args.kind_duration:g} s) | {r.rps:,.0f} | | {r.per_cpu_second:,.0f} | "
                     f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.server_cpu_s / r.seconds:.0%} |")
    lines += [
        "",
        f"- Per core (one worker on one pinned core): {hb.med(rps):,.0f} req/s, {hb.med(per_cpu):,.0f} per server "
        f"CPU-second; target >= {TARGET} req/s per core: {verdict} ({hb.med(rps) / TARGET:.2f}x of target).",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        hb.append_results(section)


if __name__ == "__main__":
    main()

"""Benchmark 3, search scaling: p95 latency of token and reference searches at 10,000 resources vs a
large store (target statement: 1,000,000; here as many as load in ``--budget`` seconds).

One SQLite store grows in one process: synthetic transaction Bundles (ehrgate.demo.synthetic, seed
7, ~75 resources per patient) go through the store's write path as ``ehrgate load`` runs it
(``load_items``, 20 Bundles at a time) until the store holds ``--small`` resources; the searches are measured; then
loading goes on until ``--max-resources`` or the time budget, and the same searches are measured
again. Searches are issued in-process through the ASGI app (httpx ASGITransport, one request at a
time, no sockets, access log off, no SMART token: auth_required false), so latency is the application's: routing, query parsing, SQL,
Bundle rendering. Each query kind is sent ``--samples`` times with parameters drawn at random from
the patients loaded so far. Target (project issue): p95 at the large size within 2x of p95 at 10k.

    .venv/bin/python bench/fhir_search_scale.py [--small 10000] [--max-resources 1000000] [--budget 300]
                                                [--samples 200] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import harness as hb
import orjson

TARGET = 2.0
MIN_SAMPLES = 40
MRN_SYSTEM = "https://ehrgate.example.org/mrn"
HEART_RATE = "http://loinc.org|8867-4"
BODY_WEIGHT = "http://loinc.org|29463-7"


@dataclass
class Patient:
    res_id: str
    mrn: str


QUERIES: dict[str, tuple[str, Any]] = {
    "token: Patient?identifier (1 match)": (
        "token", lambda p: f"/fhir/Patient?identifier={quote(MRN_SYSTEM + '|' + p.mrn, safe='')}"),
    "token: Observation?code (common code, page 1 of 50)": (
        "token", lambda p: f"/fhir/Observation?code={quote(HEART_RATE, safe='')}"),
    "reference: Observation?subject=Patient/{id}": (
        "reference", lambda p: f"/fhir/Observation?subject=Patient/{p.res_id}"),
    "reference+token: Observation?patient={id}&code=": (
        "reference", lambda p: f"/fhir/Observation?patient={p.res_id}&code={quote(BODY_WEIGHT, safe='')}"),
}


class Loader:
    """Feeds synthetic patients into the store, remembering who was loaded."""

    def __init__(self, store: Any, seed: int = 7) -> None:
        self.store = store
        self.bundles = hb.synthetic_bundles(10_000_000, seed)
        self.resources = 0
        self.patients: list[Patient] = []
        self.seconds = 0.0

    def until(self, resources: int, deadline: float | None = None) -> None:
        started = time.perf_counter()
        last = started
        from ehrgate.fhir.loader import load_items
        from ehrgate.fhir.loadfiles import LoadItem, LoadSource

        source = LoadSource(Path("synthetic"))
        while True:
            # 20 patients' Bundles at a time through `ehrgate load`'s batched write path.
            group = list(itertools.islice(self.bundles, 20))
            if not group:
                break
            summary = load_items(self.store, [LoadItem("bundle", source, b) for b in group], hb.known_types())
            if summary.errors:
                raise SystemExit(f"loading reported {len(summary.errors)} problems, first: {summary.errors[0]}")
            for bundle in group:
                self.resources += len(bundle.get("entry") or [])
                first = bundle["entry"][0]["resource"]
                if first["resourceType"] == "Patient":
                    self.patients.append(Patient(first["id"], first["identifier"][0]["value"]))
            now = time.perf_counter()
            if now - last > 30:
                rate = self.resources / (self.seconds + now - started)
                print(f"  loaded {self.resources:,} resources ({rate:,.0f}/s overall)", flush=True)
                last = now
            if self.resources >= resources or (deadline is not None and now >= deadline):
                break
        self.seconds += time.perf_counter() - started


async def _measure(app: Any, patients: list[Patient], samples: int, seed: int, cap: float) -> dict[str, dict[str, float]]:
    import httpx

    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for name, (_kind, make) in QUERIES.items():
            for _ in range(10):  # warm the statement caches
                await client.get(make(rng.choice(patients)))
            times: list[float] = []
            cpu: list[float] = []
            totals: list[float] = []
            started = time.perf_counter()
            for _ in range(samples):
                if len(times) >= MIN_SAMPLES and time.perf_counter() - started > cap:
                    break  # slow at this size: enough samples for a p95, keep the run bounded
                url = make(rng.choice(patients))
                t0, c0 = time.perf_counter(), time.thread_time()
                resp = await client.get(url)
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
                if resp.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {resp.status_code} {resp.text[:300]}")
                totals.append(orjson.loads(resp.content).get("total", -1))
            out[name] = {
                "p50": hb.percentile(times, 50) * 1000,
                "p95": hb.percentile(times, 95) * 1000,
                "cpu95": hb.percentile(cpu, 95) * 1000,
                "matches": hb.med(totals),
                "n": len(times),
            }
            print(f"    {name:<52} p50 {out[name]['p50']:8.2f} ms  p95 {out[name]['p95']:8.2f} ms  "
                  f"matches {out[name]['matches']:,.0f}  n={len(times)}", flush=True)
    return out


def measure(store: Any, data_dir: Path, patients: list[Patient], samples: int, seed: int,
            cap: float) -> dict[str, dict[str, float]]:
    from ehrgate.app import create_app

    app = create_app(hb.app_settings(data_dir), store)
    return asyncio.run(_measure(app, patients, samples, seed, cap))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--max-resources", type=int, default=1_000_000)
    parser.add_argument("--budget", type=float, default=300, help="seconds of loading for the large store")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--query-seconds", type=float, default=25,
                        help="stop sampling a query after this long (once it has 40 samples)")
    parser.add_argument("--quick", action="store_true", help="large = 25,000 resources, 40 samples")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.max_resources, args.samples = min(args.max_resources, 25_000), min(args.samples, 40)

    with hb.temp_dir("search") as tmp:
        data_dir = Path(tmp) / "sqlite"
        store = hb.open_store(data_dir=data_dir)
        loader = Loader(store)
        print(f"loading to {args.small:,} resources", flush=True)
        loader.until(args.small)
        small_n = loader.resources
        print(f"  {small_n:,} resources, {len(loader.patients)} patients; measuring", flush=True)
        small = measure(store, data_dir, loader.patients, args.samples, seed=1, cap=args.query_seconds)
        print(f"loading to {args.max_resources:,} resources or {args.budget:g} s", flush=True)
        load_started = loader.seconds
        loader.until(args.max_resources, deadline=time.perf_counter() + args.budget)
        large_n = loader.resources
        grow_rate = (large_n - small_n) / max(1e-9, loader.seconds - load_started)
        size_mb = sum(p.stat().st_size for p in data_dir.iterdir()) / 1e6
        print(f"  {large_n:,} resources, {len(loader.patients)} patients, {size_mb:,.0f} MB; measuring", flush=True)
        large = measure(store, data_dir, loader.patients, args.samples, seed=2, cap=args.query_seconds)
        store.engine.dispose()

    rows, verdicts = [], []
    for name in QUERIES:
        s, lg = small[name], large[name]
        ratio = lg["p95"] / s["p95"]
        ok = ratio <= TARGET
        rows.append(f"| {name} | {s['p50']:.2f} | {s['p95']:.2f} | {s['matches']:,.0f} | {lg['p50']:.2f} | "
                    f"{lg['p95']:.2f} | {lg['matches']:,.0f} | {lg['n']} | {lg['p50'] / s['p50']:.1f}x | "
                    f"{lg['cpu95'] / s['cpu95']:.1f}x | {ratio:.1f}x | {'met' if ok else 'MISSED'} |")
        verdicts.append(ok)
    section = "\n".join([
        f"## fhir_search_scale: search p95 at {small_n:,} vs {large_n:,} resources, SQLite ({hb.now_utc()})",
        "",
        f"- Command: `{hb.command_line()}`",
        f"- Machine: {hb.machine_line()}",
        f"- Data: synthetic generator (seed 7) through the write path; small store {small_n:,} resources; large store "
        f"{large_n:,} resources / {len(loader.patients):,} patients / {size_mb:,.0f} MB on disk, reached "
        f"{'at the size cap' if large_n >= args.max_resources else f'in the {args.budget:g} s loading budget'} "
        f"(growth at {grow_rate:,.0f} resources/s). Target statement is 1,000,000.",
        f"- Method: in-process through the ASGI app (httpx ASGITransport), sequential, {args.samples} requests per "
        f"query and size (fewer, at least {MIN_SAMPLES}, when a query passes {args.query_seconds:g} s: column n) with "
        "random patients (10 warm-up requests first); latency = one request/response; "
        "default paging (_count 50, total computed as a default search does).",
        "",
        "| query | 10k p50 ms | 10k p95 ms | 10k matches | large p50 ms | large p95 ms | large matches | large n | p50 ratio | CPU p95 ratio | "
        "p95 ratio | <= 2x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"- {sum(verdicts)} of {len(verdicts)} queries within {TARGET:g}x (p95). Also given: the p50 ratio and the "
        "ratio of the p95 of CPU time per request (thread time of the one thread serving it): on this shared machine "
        "a wall-clock p95 moves with other work, these two much less.",
    ])
    print(section)
    if not args.no_write:
        hb.append_results(section)


if __name__ == "__main__":
    main()

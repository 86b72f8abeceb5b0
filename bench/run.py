"""Run the FHIR benchmarks one after another (``make bench``); each appends its section to
bench/RESULTS.md.

    .venv/bin/python bench/run.py            # full: about 13-15 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # smoke run, under 3 minutes; prints only (add --write to record)
    .venv/bin/python bench/run.py --only fhir_read fhir_load

Full mode: fhir_read (SQLite and PostgreSQL, 3 x 10 s per server), fhir_mixed (3 x 10 s + each kind
alone), fhir_load (3 runs per engine and input), fhir_search_scale (10k vs what loads in 300 s),
smart_tokens (token endpoint and bearer-token read cost, about 5 minutes), engine_ingest, convert_e2e
(MLLP → hl7_to_fhir → FHIR store on SQLite, 3 runs of 1,000 ADT/ORU messages, a few minutes),
sqlite_floor (SQLite's own cost of the receipts', the HL7 → FHIR transactions' and the load's writes,
recorded and replayed: the most each target's rate could be with one writer, about a minute).
Quick mode: shorter runs, SQLite only, a 25k-resource "large" store. wrk is used when installed
(``apt-get install -y wrk``), else bench/loadgen.py. PostgreSQL parts are skipped, and say so,
when nothing answers at EHRGATE_BENCH_POSTGRES_URL / EHRGATE_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test; the benchmarks create and drop their own databases).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = ("fhir_read", "fhir_mixed", "fhir_load", "fhir_search_scale", "smart_tokens", "engine_ingest", "convert_e2e",
         "sqlite_floor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke runs (prints only unless --write)")
    parser.add_argument("--write", action="store_true", help="record quick-mode results in RESULTS.md too")
    parser.add_argument("--no-write", action="store_true", help="never append to RESULTS.md")
    parser.add_argument("--only", nargs="+", choices=ORDER, help="run just these benchmarks")
    args = parser.parse_args()

    failures = []
    timings = []
    started = time.perf_counter()
    for name in args.only or ORDER:
        cmd = [sys.executable, str(BENCH / f"{name}.py")]
        if args.quick:
            cmd.append("--quick")
        if args.no_write or (args.quick and not args.write):
            cmd.append("--no-write")
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=BENCH.parent, check=False).returncode
        timings.append((name, time.perf_counter() - t0, rc))
        if rc != 0:
            failures.append(name)
    print("\n=== summary")
    for name, seconds, rc in timings:
        print(f"  {name:<20} {seconds:6.0f} s  {'ok' if rc == 0 else f'FAILED (exit {rc})'}")
    print(f"  {'total':<20} {time.perf_counter() - started:6.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

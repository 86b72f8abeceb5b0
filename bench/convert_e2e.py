"""End to end: MLLP → engine channel → HL7 v2 → FHIR conversion → FHIR store (SQLite), msgs/s.

    .venv/bin/python bench/convert_e2e.py                  # 3 runs x 1,000 messages
    .venv/bin/python bench/convert_e2e.py --quick          # 1 run x 300 messages, prints only
    .venv/bin/python bench/convert_e2e.py --runs 5 --messages 3000
    .venv/bin/python bench/convert_e2e.py --quick --destination "batch_ms: 100"   # fhir_store options

What is measured: ``ehrgate serve`` (a child process, stopped by its own pid) with one channel -
MLLP source on 127.0.0.1, ``ack: on_receive``, the ``hl7_to_fhir`` step, the ``fhir_store``
destination - on a fresh SQLite database (synchronous=FULL). The load generator (this process)
sends an ADT^A01 / ORU^R01 mix, one for one, over 4 MLLP connections as fast as the ACKs come back,
and watches the message store until every message is SENT (its Bundle committed in the FHIR store)
or ERROR. End to end = messages / (last message stored - first message sent); ingest = messages /
(last ACK - first send); ACK p50/p99 = the time from sending a message to its ACK (the fhir_store
destination's transactions - several messages each, up to its ``batch_ms`` - share the SQLite write
lock with the receipts, so they show here). Each run starts a fresh server and database, sends a
warm-up batch of 200 messages, waits for them to be stored, then measures.

The messages are the project's own samples (tests/convert/samples/adt_a01.hl7 and oru_r01.hl7) with
a fresh MRN, visit, order numbers and MSH-10 per message, so every ADT creates a patient and every
ORU reports on the patient of the ADT before it: an ADT^A01 writes about 20 resources (Patient,
Encounter, NK1, two allergies, two diagnoses, coverage, two vital signs, practitioners, locations,
Provenance), an ORU^R01 about 20 (two reports, twelve results, specimen, orders, Provenance).
A section is appended to bench/RESULTS.md unless --no-write/--quick.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness as hb
from engine_ingest import Child  # the same server wrapper (bench/ is this script's import path)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "convert" / "samples"
RESULTS = REPO / "bench" / "RESULTS.md"
BIN = Path(sys.executable).parent
CONNECTIONS = 4
WARMUP = 200
VT, FS_CR = b"\x0b", b"\x1c\r"
CHANNEL = """channels:
  bench:
    source: {type: mllp, host: 127.0.0.1, port: 0, idle_timeout: 600}
    ack: on_receive
    transform: [{step: hl7_to_fhir}]
    destinations:
      store: {type: fhir_store}
"""


def messages(tag: str, count: int) -> list[bytes]:
    """ADT^A01 and ORU^R01 one for one; the ORU reports on the patient of the ADT before it. Each
    pair has its own MRN, visit and account number (PID-18) and order numbers: with one account
    number for all, every ADT wrote a new version of the same Account."""
    adt = (SAMPLES / "adt_a01.hl7").read_bytes().decode()
    oru = (SAMPLES / "oru_r01.hl7").read_bytes().decode()
    out = []
    for n in range(count):
        k = n // 2
        mrn, visit = f"M{tag}{k}", f"V{tag}{k}"
        if n % 2 == 0:
            text = (adt.replace("MRN1001", mrn).replace("V20240315-1", visit).replace("A01-0001", f"A{tag}{n}")
                    .replace("AC555444", f"AC{tag}{k}"))  # PID-18: each visit its own account
        else:
            text = oru.replace("MRN1001", mrn).replace("V20240315-1", visit).replace("ORU-0001", f"R{tag}{n}")
            for old in ("ORD777", "ORD778", "F-9001", "F-9002", "S-5001"):
                text = text.replace(old, f"{old}{tag}{k}")
        out.append(text.encode())
    return out


class Server(Child):
    """``ehrgate serve`` with the bench channel on a fresh SQLite database in ``work`` (not pinned)."""

    def __init__(self, work: Path, destination: str = "") -> None:
        cfg = work / "ehrgate.yaml"
        cfg.write_text(CHANNEL.replace("{type: fhir_store}", f"{{type: fhir_store, {destination}}}") if destination
                       else CHANNEL)
        self.db = work / "data" / "ehrgate.sqlite3"
        super().__init__(
            [str(BIN / "ehrgate"), "serve", "--host", "127.0.0.1", "--port", "0", "--config", str(cfg),
             "--data-dir", str(work / "data")],
            re.compile(r"MLLP channel 'bench' listening on 127\.0\.0\.1:(\d+)"),
            {"EHRGATE_AUTH_REQUIRED": "false", "PYTHONUNBUFFERED": "1"}, work, work / "serve.log", cpu=None)

    def done(self) -> tuple[int, int]:
        """(messages SENT, messages in ERROR) of the bench channel, read from the message store."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            rows = dict(conn.execute("SELECT status, count(*) FROM eng_message WHERE channel = 'bench' "
                                     "AND status IN ('SENT', 'ERROR') GROUP BY status").fetchall())
        except sqlite3.OperationalError:
            return 0, 0
        finally:
            conn.close()
        return rows.get("SENT", 0), rows.get("ERROR", 0)

    def resources(self) -> int:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM resource").fetchone()[0])
        finally:
            conn.close()


async def _send(port: int, raws: list[bytes], latencies: list[float] | None = None) -> tuple[float, float, int]:
    """Closed loop over CONNECTIONS connections: (first send, last ACK, negative ACKs); each
    message's seconds to its ACK are appended to ``latencies``."""
    bad = 0
    last = 0.0

    async def one(k: int) -> None:
        nonlocal bad, last
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(k, len(raws), CONNECTIONS):
                sent = time.perf_counter()
                writer.write(VT + raws[i] + FS_CR)
                ack = await reader.readuntil(FS_CR)
                if latencies is not None:
                    latencies.append(time.perf_counter() - sent)
                if b"MSA|AA|" not in ack and b"MSA|CA|" not in ack:
                    bad += 1
            last = max(last, time.perf_counter())
        finally:
            writer.close()

    first = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(CONNECTIONS)))
    return first, last, bad


def wait_stored(server: Server, total: int, timeout: float) -> tuple[float, int]:
    """Poll until ``total`` messages are SENT or ERROR: (time the last one was seen, errors)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent, errors = server.done()
        if sent + errors >= total:
            return time.perf_counter(), errors
        time.sleep(0.02)
    raise SystemExit(f"only {sum(server.done())} of {total} messages were stored within {timeout:.0f} s "
                     f"(see {server.log})")


def measure(run: int, count: int, work: Path, destination: str = "") -> dict[str, Any]:
    here = work / f"run-{run}"
    here.mkdir()
    server = Server(here, destination)
    try:
        assert server.port is not None
        first, _last, bad = asyncio.run(_send(server.port, messages(f"W{run}x", WARMUP)))
        wait_stored(server, WARMUP, 120)
        raws = messages(f"B{run}x", count)
        cpu0 = server.cpu_seconds()
        latencies: list[float] = []
        first, last_ack, bad = asyncio.run(_send(server.port, raws, latencies))
        stored_at, errors = wait_stored(server, WARMUP + count, 600)
        cpu = server.cpu_seconds() - cpu0
        resources = server.resources()
    finally:
        server.stop()
    elapsed = stored_at - first
    latencies.sort()
    ack_ms = [latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 for p in (0.5, 0.99)]
    out = {"e2e": count / elapsed, "ingest": count / (last_ack - first), "seconds": elapsed, "ack_ms": ack_ms,
           "cpu": cpu / elapsed, "per_cpu_s": count / cpu if cpu else float("nan"), "errors": errors, "nacks": bad,
           "resources": resources}
    print(f"  run {run}: end to end {out['e2e']:7,.0f} msgs/s ({count} in {elapsed:.1f} s)  ingest "
          f"{out['ingest']:7,.0f} msgs/s (ACK p50 {ack_ms[0]:,.0f} ms, p99 {ack_ms[1]:,.0f} ms)  server CPU {out['cpu']:.0%} ({out['per_cpu_s']:,.0f} msgs/CPU-s)  "
          f"errors {errors}  negative ACKs {bad}  resources {resources:,}", flush=True)
    return out


def breakdown(count: int, work: Path) -> dict[str, float]:
    """Where one message's CPU goes, in this process on one thread: parse + convert + JSON (what the
    channel step and the engine do), then the same plus the FHIR store transaction on a fresh SQLite
    database (what the destination adds), as messages per CPU-second of each."""
    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.convert import ConversionOptions, convert
    from ehrgate.fhir.bundles import process_transaction
    from ehrgate.fhir.jsonio import dumps, loads
    from ehrgate.fhir.store.engine import create_engine, migrate
    from ehrgate.fhir.store.service import Store
    from ehrgate.fhir.validation import known_resource_types
    from ehrgate.hl7 import parse

    options = ConversionOptions(channel="bench", message_ref="bench")
    known = known_resource_types()
    raws = messages("C", count)
    for raw in messages("CW", 40):  # warm-up
        dumps(convert(parse(raw), options).bundle)
    started = time.process_time()
    bodies = [dumps(convert(parse(raw), options).bundle) for raw in raws]
    convert_cpu = time.process_time() - started
    engine = create_engine(f"sqlite:///{work / 'breakdown.sqlite3'}")
    migrate(engine, MIGRATION_DIRS)
    store = Store(engine)
    try:
        started = time.process_time()
        for body in bodies:
            process_transaction(store, loads(body), known)
        store_cpu = time.process_time() - started
    finally:
        engine.dispose()
    return {"convert": count / convert_cpu, "store": count / store_cpu,
            "both": count / (convert_cpu + store_cpu)}


def machine() -> str:
    m = hb.machine()
    return f"nproc={m['nproc']}, {m['cpu']}, Python {m['python']}, SQLite {m['sqlite']}; {hb.source_state()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="1 run x 300 messages, prints only")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    parser.add_argument("--destination", default="", metavar="OPTIONS",
                        help="options of the fhir_store destination, as YAML flow mapping entries ('batch: 1')")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.messages, args.no_write = 1, 300, True
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ehrgate-convert-e2e-") as tmp:
        results = [measure(run, args.messages, Path(tmp), args.destination) for run in range(1, args.runs + 1)]
        split = breakdown(300, Path(tmp))
    print(f"  in process, one thread: convert + JSON {split['convert']:,.0f} msgs/CPU-s; FHIR store transaction "
          f"{split['store']:,.0f} msgs/CPU-s; both {split['both']:,.0f} msgs/CPU-s", flush=True)
    med = statistics.median
    e2e = [r["e2e"] for r in results]
    section = "\n".join([
        f"## convert_e2e: MLLP → channel → HL7 v2 → FHIR → FHIR store, SQLite ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- Command: `.venv/bin/python bench/convert_e2e.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`",
        f"- Machine: {machine()}; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after. "
        "The machine is shared (other sessions build, test and benchmark on its 2 cores at the same time): "
        "absolute figures move from run to run; medians are quoted.",
        f"- Method: see the docstring of bench/convert_e2e.py. {args.runs} run(s) of {args.messages:,} messages "
        f"(ADT^A01/ORU^R01 one for one, {CONNECTIONS} MLLP connections, closed loop) after a {WARMUP}-message "
        "warm-up; a fresh server and SQLite database per run; server not pinned; fhir_store destination "
        f"options: {args.destination or 'defaults'}.",
        "",
        "| end to end msgs/s (median) | min–max | ingest (ACK) msgs/s | ACK p50 / p99 ms | server CPU | "
        "msgs per server CPU-s | errors | resources written per run |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {med(e2e):,.0f} | {min(e2e):,.0f}–{max(e2e):,.0f} | {med(r['ingest'] for r in results):,.0f} | "
        f"{med(r['ack_ms'][0] for r in results):,.0f} / {med(r['ack_ms'][1] for r in results):,.0f} | "
        f"{med(r['cpu'] for r in results):.0%} | {med(r['per_cpu_s'] for r in results):,.0f} | "
        f"{sum(r['errors'] for r in results)} | {med(r['resources'] for r in results):,.0f} |",
        "",
        f"- Where the CPU goes (in the bench process, one thread, 300 messages): parse + convert + JSON "
        f"{split['convert']:,.0f} msgs/CPU-s; the FHIR store transaction of the same Bundles (SQLite) "
        f"{split['store']:,.0f} msgs/CPU-s; together {split['both']:,.0f} msgs/CPU-s - the ceiling of one core "
        "before the engine's own queueing, message store and ACK work.",
        "",
    ])
    print(section)
    if not args.no_write:
        with RESULTS.open("a", encoding="utf-8") as out:  # append: other sections belong to others
            out.write(("\n" if RESULTS.exists() and RESULTS.stat().st_size else "") + section)
    return 1 if any(r["errors"] or r["nacks"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

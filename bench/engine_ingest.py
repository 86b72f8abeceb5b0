"""MLLP ingest: an EHRGate channel (``ack: on_receive``) on SQLite and PostgreSQL vs a bare MLLP server.

    .venv/bin/python bench/engine_ingest.py                 # 3 runs x 10 s per server and load
    .venv/bin/python bench/engine_ingest.py --quick         # 1 run x 3 s, prints only
    .venv/bin/python bench/engine_ingest.py --only sqlite bare --runs 5

What is measured, per server, in one run (servers take turns; each is started fresh, measured, stopped):

* **max**: 8 connections, closed loop (each sends its next message as soon as the ACK of the last one
  arrived, as MLLP senders do): messages ACKed per second, p50/p99 ACK latency (last byte sent to
  ACK received).
* **1k**: the same 8 connections paced at 1,000 msgs/s in total (125/s each), latency counted from
  the moment each message was due, so a server that falls behind pays for it (no coordinated
  omission).

Servers, each pinned to CPU 0 with the load generator on CPU 1 (PostgreSQL itself is not pinned):

* ``bare``: ehrgate.hl7's asyncio listener whose handler only parses the message and builds an AA
  (the ceiling: MLLP framing, parsing and the ACK, nothing stored);
* ``sqlite`` / ``postgresql``: ``ehrgate serve --config`` with one MLLP channel, ``ack: on_receive``,
  duplicate detection on (the default), message store with synchronous=FULL / synchronous_commit=on.
  The channel is paused (``ehrgate channel pause``) before the server starts, so the run measures
  ingest - parse, durable store (group commit), ACK - while processing waits, as it does behind a
  paused channel;
* ``sqlite+pipeline``: the same on SQLite with the pipeline running (a filter that drops every
  message, so each one is claimed, parsed, filtered and finished in the store while ingest goes on):
  what ingest keeps when the single core is shared with processing.

Every message is a ~750-byte ADT^A01 (original acknowledgment mode) with its own MSH-10 and patient.
The bare server and ``ehrgate serve`` run on the default asyncio event loop; the load generator uses
uvloop when it is installed (it is not what is measured). PostgreSQL parts are skipped, and say so,
when nothing answers at EHRGATE_BENCH_POSTGRES_URL / EHRGATE_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test); the benchmark creates and drops its own database.
Everything listens on 127.0.0.1 and every process started here is stopped by its own pid.

``--in-process`` (optionally ``--profile``, ``--rate 1000``) profiles the receipt path instead: the
engine (paused channel, SQLite) runs in this process on CPU 0, the same load generator in a child on
CPU 1 (once the engine is up, what is alive is frozen out of the cyclic collector, ``gc.freeze()``, and
the youngest generation's threshold raised, ``gctuning.raise_gen0_threshold``, as ``ehrgate serve``
does: before 2026-12-07 this mode did neither, and its collections walked ~120,000 start-up objects
that the server's never walk); it prints messages per commit and the CPU per message
of each thread (event loop, ingest writer) from /proc, and the cProfile of each with ``--profile``.
Nothing is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc as gc_module
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness as hb  # bench/ is this script's import path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
BIN = Path(sys.executable).parent
DEFAULT_PG = os.environ.get("EHRGATE_BENCH_POSTGRES_URL") or os.environ.get(
    "EHRGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SERVER_CPU, CLIENT_CPU = "0", "1"
CONNECTIONS = 8
PACED_RATE = 1000
KINDS = ("bare", "sqlite", "postgresql", "sqlite+pipeline")

VT, FS_CR = b"\x0b", b"\x1c\r"


# -- the messages ---------------------------------------------------------------------------------


def message(tag: str, n: int) -> bytes:
    """ADT^A01, ~750 bytes, original mode; MSH-10 and the MRN are unique per (tag, n)."""
    return (
        f"MSH|^~\\&|REGADT|GOOD HEALTH HOSPITAL|EHRGATE|EHRGATE|20240315083000-0500||ADT^A01^ADT_A01|{tag}-{n}|P|2.5.1\r"
        "EVN|A01|20240315083000|||nurse01^Rivera^Ana\r"
        f"PID|1||MRN{tag}{n}^^^GHH^MR~999-00-1234^^^SSA^SS||Everywoman^Eve^E^^^^L~Smith^Eve^^^^^M||19620320|F|||"
        "2222 Home Street^^Greensboro^NC^27401-1020^USA||^PRN^PH^^1^555^5552004|||M||AC555444444|444-33-3333\r"
        "NK1|1|Everyman^Adam^A^III|SPO^Spouse^HL70063|2222 Home Street^^Greensboro^NC^27401-1020\r"
        "PV1|1|I|2000^2012^01||||004777^Attend^Aaron^A|||SUR||||ADM|A0|\r"
        "AL1|1|DA|PCN^Penicillin^L|SV|Hives\\T\\Rash\r"
        "DG1|1||I10^Essential hypertension^I10C||20240315|A\r"
    ).encode()


# -- the load generator (a child process on CPU 1) ------------------------------------------------


async def _connection(port: int, tag: str, start_at: float, warm_until: float, stop_at: float,
                      interval: float | None, latencies: list[float], out: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    due = start_at
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                break
            if interval is not None:
                if due > now:
                    await asyncio.sleep(due - now)
                sent = due
                due += interval
            writer.write(VT + message(tag, n) + FS_CR)
            if interval is None:
                sent = time.perf_counter()
            n += 1
            ack = await reader.readuntil(FS_CR)
            done = time.perf_counter()
            if sent >= warm_until and done <= stop_at:
                latencies.append(done - sent)
                if b"MSA|AA|" not in ack:
                    out["errors"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        out["errors"] += 1
    finally:
        writer.close()


async def _load(port: int, connections: int, warmup: float, duration: float, rate: float | None,
                tag: str) -> dict[str, Any]:
    latencies: list[float] = []
    out = {"errors": 0}
    start = time.perf_counter() + 0.05
    warm_until, stop_at = start + warmup, start + warmup + duration
    interval = connections / rate if rate else None
    await asyncio.gather(*(
        _connection(port, f"{tag}{k}", start + (k * interval / connections if interval else 0), warm_until, stop_at,
                    interval, latencies, out) for k in range(connections)))
    latencies.sort()
    return {"messages": len(latencies), "seconds": duration, "errors": out["errors"],
            "p50_ms": _pct(latencies, 50) * 1000, "p99_ms": _pct(latencies, 99) * 1000}


def _pct(ordered: list[float], pct: float) -> float:
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def client_main(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_load(args.port, args.connections, args.warmup, args.duration, args.rate or None, args.tag))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# -- the bare server (a child process on CPU 0) ---------------------------------------------------


def bare_main() -> int:
    """ehrgate.hl7's listener; the handler parses the message (ehrgate.hl7.parse), reads its header and
    answers with a hand-built AA - nothing is stored. The ceiling of an MLLP server in this process."""
    from ehrgate.hl7 import parse, start_mllp_server

    counter = iter(range(1, 1 << 62))

    async def handler(raw: bytes, peer: Any) -> bytes:
        msg = parse(raw)
        fields = msg.segment("MSH").fields  # type: ignore[union-attr]
        stamp = time.strftime("%Y%m%d%H%M%S+0000", time.gmtime())
        trigger = fields[9].split("^")[1] if "^" in fields[9] else ""
        return (f"MSH|^~\\&|{fields[5]}|{fields[6]}|{fields[3]}|{fields[4]}|{stamp}||ACK^{trigger}^ACK|"
                f"B{next(counter)}|{fields[11]}|{fields[12]}\rMSA|AA|{fields[10]}\r").encode()

    async def main() -> None:
        server = await start_mllp_server(handler, "127.0.0.1", 0, idle_timeout=300)
        print(f"bare MLLP listening on 127.0.0.1:{server.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    return 0


# -- in-process profile of the receipt path (--in-process) ----------------------------------------


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, from /proc, by Python thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[f"{names.get(int(tid), 'thread')} ({tid})"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def in_process_main(args: argparse.Namespace) -> int:
    """The engine (paused channel, SQLite, ``ack: on_receive``) in this process, pinned to CPU 0; the
    load generator in a child on CPU 1. Prints messages per commit and each thread's CPU per message
    (the event loop and the ingest writer), and with ``--profile`` a cProfile of each of the two."""
    import cProfile
    import pstats
    from types import SimpleNamespace

    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.engine import Engine, load_channels, open_messages
    from ehrgate.fhir.store.engine import create_engine, migrate
    from ehrgate.fhir.store.service import Store

    if PIN and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(SERVER_CPU)})

    async def body(work: Path) -> None:
        db = create_engine(f"sqlite:///{work / 'ehrgate.sqlite3'}")
        migrate(db, MIGRATION_DIRS)
        messages = open_messages(Store(db))
        messages.set_channel_state("bench", paused=True)
        spec = {"source": {"type": "mllp", "host": "127.0.0.1", "port": 0, "idle_timeout": 600}, "ack": "on_receive",
                "destinations": {"out": {"type": "file", "directory": str(work / "out")}}}
        settings = SimpleNamespace(engine_poll_ms=500, engine_lease_seconds=60, engine_duplicate_window=86400,
                                   engine_batch_size=500, engine_alert_interval=3600, engine_retention_interval=3600)
        channels = load_channels({"channels": {"bench": spec}}, work)
        engine = Engine(messages, channels, settings=settings, loader=lambda: channels)
        await engine.start()
        gc_module.freeze()  # as ``ehrgate serve`` does once it is up (see the docstring)
        try:  # ... and, since 2026-12-07, fewer young-generation collections (absent from older trees)
            from ehrgate.gctuning import raise_gen0_threshold
        except ImportError:
            pass
        else:
            raise_gen0_threshold()
        try:
            gc = engine.ingest
            writer_profile = cProfile.Profile() if args.profile else None
            if writer_profile is not None:
                def profiled(fn: Any) -> Any:
                    def run(*a: Any) -> Any:
                        writer_profile.enable()
                        try:
                            return fn(*a)
                        finally:
                            writer_profile.disable()
                    return run
                gc._receive = profiled(gc._receive)  # type: ignore[method-assign]
                messages.index_pending = profiled(messages.index_pending)  # type: ignore[method-assign]
            cmd = [sys.executable, __file__, "--client", "--port", str(engine.runtimes["bench"].port), "--connections",
                   str(CONNECTIONS), "--warmup", str(args.warmup), "--duration", str(args.duration), "--tag", "I"]
            if args.rate:
                cmd += ["--rate", str(args.rate)]
            client = await asyncio.create_subprocess_exec(*pinned(cmd, CLIENT_CPU), stdout=subprocess.PIPE)
            await asyncio.sleep(args.warmup + 0.05)
            loop_profile = cProfile.Profile() if args.profile else None
            m0, b0, cpu0 = gc.messages, gc.batches, _thread_cpu()
            if loop_profile is not None:
                loop_profile.enable()
            await asyncio.sleep(args.duration)
            if loop_profile is not None:
                loop_profile.disable()
            m1, b1, cpu1 = gc.messages, gc.batches, _thread_cpu()
            out, _ = await client.communicate()
        finally:
            await engine.stop()
            messages.close()
            db.dispose()
        n = max(1, m1 - m0)
        print(f"{n / args.duration:,.0f} msgs/s stored, {n / max(1, b1 - b0):.1f} per commit")
        total = 0.0
        for key in sorted(cpu1):
            used = cpu1[key] - cpu0.get(key, 0.0)
            total += used
            if used > 0.01:
                print(f"  {key:<32} {used / n * 1e6:6.0f} us CPU per message")
        print(f"  {'whole process':<32} {total / n * 1e6:6.0f} us CPU per message")
        for line in out.decode().splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[7:])
                print(f"  client: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}")
        for name, prof in (("event loop", loop_profile), ("writer thread", writer_profile)):
            if prof is not None:
                print(f"\n-- {name} (cProfile, by own time) --")
                pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)

    with tempfile.TemporaryDirectory(prefix="ehrgate-bench-ingest-") as tmp:
        asyncio.run(body(Path(tmp)))
    return 0


# -- orchestration --------------------------------------------------------------------------------


PIN = True


def pinned(cmd: list[str], cpu: str) -> list[str]:
    if PIN and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *cmd]
    return cmd


class Child:
    """A server process started here, stopped by its own pid."""

    def __init__(self, cmd: list[str], ready: re.Pattern[str], env: dict[str, str], cwd: Path, log: Path,
                 cpu: str | None = SERVER_CPU) -> None:
        """``ready``: a pattern whose first group is the port, on a line of the child's stdout;
        ``cpu``: the CPU to pin the child to (None: any)."""
        self.proc = subprocess.Popen(pinned(cmd, cpu) if cpu else cmd, stdout=subprocess.PIPE, stderr=log.open("w"),
                                     text=True, env={**os.environ, **env}, cwd=cwd)
        self.port: int | None = None
        found = threading.Event()

        def watch() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:  # keep draining so the child never blocks on a full pipe
                m = ready.search(line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    found.set()

        threading.Thread(target=watch, daemon=True).start()
        deadline = time.monotonic() + 90
        while not found.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{' '.join(cmd)} did not start:\n{log.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def run_client(port: int, *, warmup: float, duration: float, rate: float | None, tag: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--client", "--port", str(port), "--connections", str(CONNECTIONS),
           "--warmup", str(warmup), "--duration", str(duration), "--tag", tag]
    if rate:
        cmd += ["--rate", str(rate)]
    proc = subprocess.run(pinned(cmd, CLIENT_CPU), capture_output=True, text=True,
                          timeout=warmup + duration + 60, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise SystemExit(f"load generator failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def channel_yaml(port_hint: int, pipeline: bool) -> str:
    lines = ["channels:", "  bench:", "    source: {type: mllp, host: 127.0.0.1, port: 0, idle_timeout: 600}",
             "    ack: on_receive"]
    if pipeline:
        lines.append("    filter: [{step: match, path: MSH-9, equals: 'NONE^NONE'}]")
    lines += ["    destinations:", "      out: {type: file, directory: out}"]
    return "\n".join(lines) + "\n"


def start_ehrgate(kind: str, work: Path, pg_url: str | None) -> Child:
    pipeline = kind.endswith("+pipeline")
    cfg = work / "ehrgate.yaml"
    cfg.write_text(channel_yaml(0, pipeline))
    db = ["--database-url", pg_url] if pg_url else ["--data-dir", str(work / "data")]
    env = {"EHRGATE_AUTH_REQUIRED": "false", "PYTHONUNBUFFERED": "1"}
    if not pipeline:
        subprocess.run([str(BIN / "ehrgate"), "channel", "pause", "bench", "--config", str(cfg), *db],
                       cwd=work, env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    cmd = [str(BIN / "ehrgate"), "serve", "--host", "127.0.0.1", "--port", "0", "--config", str(cfg), *db]
    return Child(cmd, re.compile(r"MLLP channel 'bench' listening on 127\.0\.0\.1:(\d+)"), env, work,
                 work / f"{kind}.log")


def start_bare(work: Path) -> Child:
    return Child([sys.executable, __file__, "--bare-server"], re.compile(r"bare MLLP listening on 127\.0\.0\.1:(\d+)"),
                 {"PYTHONUNBUFFERED": "1"}, work, work / "bare.log")


def pg_ok(url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None


def pg_database(name: str, *, drop_only: bool = False) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(DEFAULT_PG, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return DEFAULT_PG.rpartition("/")[0] + "/" + name


def measure(kind: str, run: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    here = work / f"{kind.replace('+', '-')}-{run}"
    here.mkdir()
    pg_name = f"ehrgate_bench_ingest_{os.getpid()}"
    pg_url = pg_database(pg_name) if kind == "postgresql" else None
    child = start_bare(here) if kind == "bare" else start_ehrgate(kind, here, pg_url)
    try:
        assert child.port is not None
        cpu0 = child.cpu_seconds()
        mx = run_client(child.port, warmup=args.warmup, duration=args.duration, rate=None, tag=f"M{run}")
        cpu1 = child.cpu_seconds()
        paced = run_client(child.port, warmup=args.warmup, duration=args.duration, rate=PACED_RATE, tag=f"P{run}")
    finally:
        child.stop()
        if pg_url:
            pg_database(pg_name, drop_only=True)
    mx["rate"] = mx["messages"] / mx["seconds"]
    mx["server_cpu"] = (cpu1 - cpu0) / (args.warmup + args.duration)
    mx["per_cpu_s"] = mx["rate"] / mx["server_cpu"] if mx["server_cpu"] else float("nan")
    paced["rate"] = paced["messages"] / paced["seconds"]
    print(f"  {kind:<16} run {run}: max {mx['rate']:8,.0f} msgs/s  p50 {mx['p50_ms']:6.2f} ms  "
          f"p99 {mx['p99_ms']:6.2f} ms  cpu {mx['server_cpu']:.0%} ({mx['per_cpu_s']:,.0f}/cpu-s)  errors {mx['errors']} | "
          f"paced {paced['rate']:6,.0f} msgs/s  p50 {paced['p50_ms']:6.2f} ms  p99 {paced['p99_ms']:6.2f} ms  "
          f"errors {paced['errors']}", flush=True)
    return {"max": mx, "paced": paced}


def machine_facts() -> dict[str, str]:
    return {**hb.machine(), "source": hb.source_state()}


def commit_probe(directory: Path, n: int = 300) -> str:
    """p50/p90 of a one-row SQLite commit with synchronous=FULL (WAL) in ``directory``: the disk's
    fsync, which bounds how many commits per second any durable store gets here; and the CPU that
    fsync costs the committing thread (the same commits at synchronous=NORMAL, which skips it, are
    the baseline). On this VM the fsync is not only a wait: its CPU is charged to the server's one
    core, so the commits per message matter for throughput, not just for latency."""
    import sqlite3

    def run(sync: str) -> tuple[list[float], float]:
        path = directory / f"probe-{sync}-{time.time_ns()}.sqlite3"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        times = []
        cpu = time.thread_time()
        for _ in range(n):
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (b) VALUES (?)", (b"x" * 800,))
            conn.execute("COMMIT")
            times.append(time.perf_counter() - started)
        cpu = (time.thread_time() - cpu) / n
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        times.sort()
        return times, cpu

    full, full_cpu = run("FULL")
    _normal, normal_cpu = run("NORMAL")
    return (f"p50 {full[n // 2] * 1000:.2f} ms, p90 {full[int(n * 0.9)] * 1000:.2f} ms, "
            f"{full_cpu * 1e6:.0f} us CPU ({normal_cpu * 1e6:.0f} us at synchronous=NORMAL)")


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, pg_version: str | None,
           load_before: str, skipped: list[str], probes: list[str],
           floor: tuple[float, float] | None = None) -> str:
    m = machine_facts()
    med = statistics.median
    lines = [f"## engine_ingest: MLLP ingest, ack: on_receive, 8 connections ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
             "",
             f"- Command: `.venv/bin/python bench/engine_ingest.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`",
             f"- Machine: nproc={m['nproc']}, {m['cpu']}, Python {m['python']}, SQLite {m['sqlite']}"
             + (f", PostgreSQL {pg_version} on 127.0.0.1" if pg_version else "")
             + f"; {m['source']}; 1-min load average {load_before} before, {load_average()} after "
             "(the machine is shared: other sessions build and benchmark on it, so absolute figures move; "
             "the ratios to the bare server, measured in the same runs, are the steadier figures)",
             f"- Disk: a one-row SQLite commit with synchronous=FULL took {'; then '.join(probes)} (measured before "
             "and after the runs, in the same directory; the CPU is the committing thread's, the difference is "
             "what the fsync costs the server's core)",
             f"- Method: see the docstring of bench/engine_ingest.py. {args.runs} run(s); in each, every server "
             f"in turn is started fresh, gets {args.warmup:g} s warm-up + {args.duration:g} s closed loop (max), then "
             f"{args.warmup:g} s + {args.duration:g} s paced at {PACED_RATE:,} msgs/s; medians over runs. Server on "
             "CPU 0, load generator on CPU 1.",
             "",
             "| server | msgs/s (median) | min–max | p50 ms | p99 ms | server CPU | msgs per server CPU-s | vs bare "
             "| vs bare per CPU-s | at 1,000/s: p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    bare = med([r["max"]["rate"] for r in results["bare"]]) if results.get("bare") else None
    bare_cpu = med([r["max"]["per_cpu_s"] for r in results["bare"]]) if results.get("bare") else None
    summary = []
    for kind in KINDS:
        rs = results.get(kind)
        if not rs:
            continue
        rates = [r["max"]["rate"] for r in rs]
        rate = med(rates)
        ratio = f"{rate / bare:.0%}" if bare else "-"
        per_cpu = med([r["max"]["per_cpu_s"] for r in rs])
        ratio_cpu = f"{per_cpu / bare_cpu:.0%}" if bare_cpu else "-"
        errors = sum(r["max"]["errors"] + r["paced"]["errors"] for r in rs)
        lines.append(
            f"| {kind} | {rate:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | {med([r['max']['p50_ms'] for r in rs]):.2f} "
            f"| {med([r['max']['p99_ms'] for r in rs]):.2f} | {med([r['max']['server_cpu'] for r in rs]):.0%} "
            f"| {per_cpu:,.0f} | {ratio} | {ratio_cpu} "
            f"| {med([r['paced']['p50_ms'] for r in rs]):.2f} | {med([r['paced']['p99_ms'] for r in rs]):.2f} |"
            + (f" {errors} errors" if errors else ""))
        if kind in ("sqlite", "postgresql") and bare:
            p99 = med([r["paced"]["p99_ms"] for r in rs])
            verdicts = [f"{rate / bare:.0%} of bare (target >= 50%: {'MET' if rate / bare >= 0.5 else 'MISSED'})"]
            if kind == "sqlite":
                verdicts.append(f"{rate:,.0f} msgs/s (target >= 5,000: {'MET' if rate >= 5000 else 'MISSED'})")
            verdicts.append(f"p99 {p99:.1f} ms at 1,000 msgs/s (target <= 20 ms: {'MET' if p99 <= 20 else 'MISSED'})")
            summary.append(f"- {kind}: " + "; ".join(verdicts))
    if floor is not None and bare_cpu:
        bare_us = 1e6 / bare_cpu
        summary.append(
            f"- 50% of bare against SQLite's own work, both measured in this run: the bare listener spent "
            f"{bare_us:.1f} us of CPU a message, so half its rate leaves {2 * bare_us:.1f} us a message for "
            f"everything. The receipts' SQL alone, recorded from the message store and replayed by a loop that "
            f"does nothing else (bench/sqlite_floor.py: batches of 8, synchronous=FULL), cost {floor[0]:.1f} us "
            f"of CPU and {floor[1]:.1f} us wall a message: with the bare listener's own work that is "
            f"{bare_us + floor[0]:.1f} us, so no server that stores each message in SQLite before its AA "
            f"can exceed {bare_us / (bare_us + floor[0]):.0%} of bare on one core")
    lines += [""] + summary + [f"- skipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="1 run x 3 s; prints only unless --write")
    parser.add_argument("--write", action="store_true", help="record quick-mode results in RESULTS.md too")
    parser.add_argument("--no-write", action="store_true", help="never append to RESULTS.md")
    parser.add_argument("--only", nargs="+", choices=KINDS)
    parser.add_argument("--no-pin", action="store_true",
                        help="let the server and the load generator use any CPU (default: server CPU 0, client CPU 1)")
    parser.add_argument("--in-process", action="store_true",
                        help="profile the receipt path: the engine on SQLite in this process (CPU 0), per-thread CPU "
                             "per message; with --profile also cProfile of the loop and the writer; --rate N paces")
    parser.add_argument("--profile", action="store_true", help="with --in-process: cProfile the loop and the writer")
    # child-process modes
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="M", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global PIN
    PIN = not args.no_pin
    if args.client:
        return client_main(args)
    if args.bare_server:
        return bare_main()
    if args.in_process:
        if args.quick:
            args.duration, args.warmup = 3.0, 1.0
        return in_process_main(args)
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 3.0, 1.0

    kinds = list(args.only or KINDS)
    skipped = []
    pg_version = pg_ok(DEFAULT_PG) if "postgresql" in kinds else None
    if "postgresql" in kinds and pg_version is None:
        kinds.remove("postgresql")
        skipped.append(f"postgresql (nothing answers at {DEFAULT_PG})")
        print(f"PostgreSQL skipped: nothing answers at {DEFAULT_PG}", file=sys.stderr)
    load_before = load_average()
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    probes = []
    with tempfile.TemporaryDirectory(prefix="ehrgate-bench-ingest-") as tmp:
        probes.append(commit_probe(Path(tmp)))
        print(f"disk: one-row commit {probes[0]}", flush=True)
        for run in range(1, args.runs + 1):
            for kind in kinds:
                results[kind].append(measure(kind, run, args, Path(tmp)))
        probes.append(commit_probe(Path(tmp)))
        floor = None
        if results.get("bare") and results.get("sqlite"):
            from sqlite_floor import receipts_floor

            floor = receipts_floor(Path(tmp))
            print(f"SQLite's own work per receipt (replayed): {floor[0]:.1f} us CPU, {floor[1]:.1f} us wall", flush=True)
    section = report(results, args, pg_version, load_before, skipped, probes, floor)
    print("\n" + section)
    if not args.no_write and (not args.quick or args.write):
        with RESULTS.open("a") as fh:
            fh.write(("\n" if RESULTS.exists() and not RESULTS.read_text().endswith("\n\n") else "") + section + "\n")
        print(f"appended to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

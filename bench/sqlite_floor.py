"""What SQLite alone costs for the writes behind three throughput targets: each workload's SQL,
recorded as EHRGate sends it, then replayed on a fresh database by a loop that does nothing else.

    .venv/bin/python bench/sqlite_floor.py                # 5 replays each, appended to RESULTS.md
    .venv/bin/python bench/sqlite_floor.py --quick        # 2 replays each, prints only
    .venv/bin/python bench/sqlite_floor.py --runs 3 --no-write

Why: a throughput target is out of reach when one writer's SQLite work alone - what is left if every
line of EHRGate's Python cost nothing - takes longer per unit than the target allows. SQLite has one
write lock, so these statements run one after another whatever the number of cores.

Workloads (each recorded once, in this process, with EHRGate's own code and settings):

- ``receipts`` (issue 4): ``MessageStore.receive`` of bench/engine_ingest.py's ADT^A01 in batches of
  8 (8 MLLP senders that wait for their ACKs make batches of at most 8), the duplicate check on (a
  24-hour window, the default), a text-index step (``index_pending``) every 256 messages as the
  writer thread does, synchronous=FULL (an AA must survive a power cut).
- ``hl7-e2e`` (issue 5): the FHIR store transactions of the Bundles that the HL7 v2 converter makes
  of bench/convert_e2e.py's stream (ADT^A01 and ORU^R01 one for one, a new patient, visit and orders
  each, ~20 resources a message), 4 messages a transaction with a savepoint each (the ``fhir_store``
  destination's batches: 3-4), synchronous=NORMAL (the FHIR store's default). The destination's own
  bookkeeping (queue, message status) is left out: the floor is lower than the real work. Again
  with all 400 messages in one transaction (``hl7-e2e, one transaction``): no batching can do with
  less commit work per message.
- ``synthea-load`` (issue 2): ``ehrgate load``'s writes of the Synthea R4 bundles in
  ../shared/corpus/fhir/synthea-r4 (skipped when absent), committed every 2,000 resources.

Recording: every ``execute``/``executemany``, ``commit`` and ``rollback`` (as COMMIT and ROLLBACK) on every
SQLite connection (parameters copied), from the
first statement of the workload to its last, in order. Replay: a plain ``sqlite3`` connection for each
recorded one, on a freshly migrated database of the same schema, with the workload's PRAGMAs; the
recorded calls in order, each on its connection's counterpart (SELECTs fetched), timed by the thread's CPU (``time.thread_time``) and by the clock. The loop's own
Python is a few hundred nanoseconds per call. Each replay starts from a fresh database; the figure is
the median over ``--runs``.
"""

from __future__ import annotations

import argparse
import functools
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as hb

REPO = Path(__file__).resolve().parents[1]
SYNTHEA = REPO.parent / "shared" / "corpus" / "fhir" / "synthea-r4"

Call = tuple[int, str, Any, bool]  # connection, sql, parameters, executemany


class _Recording:
    log: list[Call] | None = None


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # type: ignore[override]
        if _Recording.log is not None:
            _Recording.log.append((id(self.connection), sql, parameters, False))
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq: Any, /) -> Any:  # type: ignore[override]
        seq = list(seq)
        if _Recording.log is not None:
            _Recording.log.append((id(self.connection), sql, seq, True))
        return super().executemany(sql, seq)


class _Connection(sqlite3.Connection):
    def cursor(self, factory: Any = _Cursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq: Any, /) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, seq)

    def commit(self) -> None:  # SQLAlchemy ends its transactions here, not with a statement
        if _Recording.log is not None and self.in_transaction:
            _Recording.log.append((id(self), "COMMIT", (), False))
        super().commit()

    def rollback(self) -> None:
        if _Recording.log is not None and self.in_transaction:
            _Recording.log.append((id(self), "ROLLBACK", (), False))
        super().rollback()


def install_recorder() -> None:
    """Every SQLite connection opened from now on records into ``_Recording.log`` while it is set
    (SQLAlchemy's pysqlite dialect connects through ``sqlite3.dbapi2.connect``)."""
    import sqlite3.dbapi2 as dbapi2

    plain = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        kwargs["factory"] = _Connection
        return plain(*args, **kwargs)

    sqlite3.connect = connect  # type: ignore[assignment]
    dbapi2.connect = connect  # type: ignore[assignment]


def _record(work: Callable[[], int]) -> tuple[list[Call], int]:
    _Recording.log = []
    try:
        units = work()
    finally:
        log, _Recording.log = _Recording.log, None
    return log, units


def _fresh_database(path: Path) -> None:
    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.fhir.store.engine import create_engine, migrate

    engine = create_engine(f"sqlite:///{path}")
    migrate(engine, MIGRATION_DIRS)
    engine.dispose()


def replay(log: list[Call], db: Path, synchronous: str) -> tuple[float, float, int]:
    """The calls in their order on a fresh database ``db``, each on its own connection's counterpart
    (a read transaction on one connection and a write on another, as recorded), all opened before
    the clock starts. Returns (thread CPU seconds, wall seconds, calls that failed)."""
    _fresh_database(db)
    conns: dict[int, sqlite3.Connection] = {}
    for key in dict.fromkeys(c[0] for c in log):
        conn = conns[key] = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", f"synchronous={synchronous}", "foreign_keys=ON", "cache_size=-65536",
                       "mmap_size=268435456"):
            conn.execute(f"PRAGMA {pragma}")
    errors = 0
    started_cpu, started = time.thread_time(), time.perf_counter()
    for key, sql, parameters, many in log:
        try:
            if many:
                conns[key].executemany(sql, parameters)
            else:
                conns[key].execute(sql, parameters).fetchall()
        except sqlite3.Error:
            errors += 1
    cpu, wall = time.thread_time() - started_cpu, time.perf_counter() - started
    for conn in conns.values():
        conn.close()
    return cpu, wall, errors


# -- the workloads ------------------------------------------------------------------------------


def receipts(work: Path, count: int = 4096) -> tuple[list[Call], int]:
    from engine_ingest import message

    from ehrgate.engine.info import describe
    from ehrgate.engine.store import Incoming, MessageStore

    db = work / "receipts.sqlite3"
    _fresh_database(db)
    store = MessageStore.open(f"sqlite:///{db}")
    items = []
    for n in range(count + 64):
        raw = message("F", n)
        info = describe(raw)
        items.append(Incoming("bench", raw, "127.0.0.1", info.msg_type, info.control_id, info.sender,
                              info.patient_ids, info.order_key, info.error))
    for k in range(0, 64, 8):  # warm-up: connections open, statements prepared
        store.receive(items[k:k + 8], duplicate_window_ms=86_400_000)
    store.index_pending(256)

    def run() -> int:
        for k in range(64, count + 64, 8):
            store.receive(items[k:k + 8], duplicate_window_ms=86_400_000)
            if (k - 64 + 8) % 256 == 0:
                store.index_pending(256)
        return count

    try:
        return _record(run)
    finally:
        store.close()


def hl7_e2e(work: Path, count: int = 400, per_transaction: int = 4) -> tuple[list[Call], int]:
    from convert_e2e import messages

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
    bodies = [dumps(convert(parse(raw), options).bundle) for raw in messages("F", count + 40)]
    engine = create_engine(f"sqlite:///{work / f'e2e-{per_transaction}.sqlite3'}")  # fresh: a second run would match
    migrate(engine, MIGRATION_DIRS)
    store = Store(engine)
    for body in bodies[:40]:  # warm-up
        process_transaction(store, loads(body), known)
    rest = bodies[40:]

    def run() -> int:
        for k in range(0, len(rest), per_transaction):
            with store.writer(bulk=True) as w:
                for body in rest[k:k + per_transaction]:
                    with w.savepoint():
                        process_transaction(w.store, loads(body), known, session=w)
        return len(rest)

    try:
        return _record(run)
    finally:
        engine.dispose()


def synthea_load(work: Path) -> tuple[list[Call], int]:
    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.fhir.loader import load_paths
    from ehrgate.fhir.store.engine import create_engine, migrate
    from ehrgate.fhir.store.service import Store
    from ehrgate.fhir.validation import known_resource_types

    engine = create_engine(f"sqlite:///{work / 'load.sqlite3'}")
    migrate(engine, MIGRATION_DIRS)
    store = Store(engine)
    known = known_resource_types()

    def run() -> int:
        return load_paths(store, [SYNTHEA], known, workers=0).resources

    try:
        return _record(run)
    finally:
        engine.dispose()


def receipts_floor(work: Path, runs: int = 3, count: int = 2048) -> tuple[float, float]:
    """SQLite's own CPU and wall microseconds per received message (medians of ``runs`` replays of
    the ``receipts`` workload); bench/engine_ingest.py reports it next to the bare listener's cost."""
    install_recorder()
    log, units = receipts(work, count)
    cpus, walls = [], []
    for _ in range(runs):
        cpu, wall, _errors = replay(log, work / f"replay-{time.monotonic_ns()}.sqlite3", "FULL")
        cpus.append(cpu / units * 1e6)
        walls.append(wall / units * 1e6)
    return statistics.median(cpus), statistics.median(walls)


# name, unit, target (units per second), the issue, synchronous, recorder
WORKLOADS: list[tuple[str, str, float, str, str, Callable[[Path], tuple[list[Call], int]]]] = [
    ("receipts", "message", 5_000, "issue 4: >= 5,000 msgs/s (and >= 50% of the bare listener)", "FULL", receipts),
    ("hl7-e2e", "message", 1_000, "issue 5: >= 1,000 msgs/s end to end", "NORMAL", hl7_e2e),
    ("hl7-e2e, one transaction", "message", 1_000, "issue 5, with every message in one transaction (the least "
     "commit work per message any batching could reach)", "NORMAL", functools.partial(hl7_e2e, per_transaction=400)),
    ("synthea-load", "resource", 10_000, "issue 2: >= 10,000 resources/s", "NORMAL", synthea_load),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 replays each; prints only unless --write")
    parser.add_argument("--write", action="store_true", help="record quick-mode results in RESULTS.md too")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs = min(args.runs, 2)
        args.no_write = args.no_write or not args.write
    install_recorder()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ehrgate-floor-") as tmp:
        work = Path(tmp)
        for name, unit, target, issue, synchronous, recorder in WORKLOADS:
            if name == "synthea-load" and not SYNTHEA.is_dir():
                print(f"{name}: skipped ({SYNTHEA} is absent)")
                continue
            log, units = recorder(work)
            calls = len(log)
            rows_written = sum(len(p) if many else 1 for _, _, p, many in log)
            cpus, walls, errors = [], [], 0
            for _ in range(args.runs):
                cpu, wall, errs = replay(log, work / f"replay-{time.monotonic_ns()}.sqlite3", synchronous)
                cpus.append(cpu / units * 1e6)
                walls.append(wall / units * 1e6)
                errors = max(errors, errs)
            cpu_us, wall_us = statistics.median(cpus), statistics.median(walls)
            ceiling = 1e6 / wall_us
            rows.append((name, unit, units, calls / units, rows_written / units, cpu_us, min(cpus), max(cpus),
                         wall_us, ceiling, target, issue, errors, synchronous))
            print(f"{name}: {units} {unit}s, {calls / units:.1f} calls and {rows_written / units:.1f} statements "
                  f"a {unit}; SQLite alone {cpu_us:.1f} us CPU ({min(cpus):.1f}-{max(cpus):.1f}), {wall_us:.1f} us "
                  f"wall a {unit} -> at most {ceiling:,.0f} {unit}s/s with nothing else to do "
                  f"(target {target:,.0f}: {ceiling / target:.2f}x); replay errors {errors}")
    if args.no_write or not rows:
        return 0
    lines = [
        f"## sqlite_floor: SQLite's own cost of each target's writes ({hb.now_utc()})",
        "",
        f"- Command: `{hb.command_line()}`",
        f"- Machine: {hb.machine_line()}",
        "- Method: see the docstring of bench/sqlite_floor.py: each workload's SQL recorded from EHRGate's "
        "own code, replayed on a fresh database by a loop that does nothing else; "
        f"median of {args.runs} replays; `statements` counts each row of an executemany.",
        "",
        "| workload | units | calls / unit | statements / unit | SQLite CPU µs / unit (median) | min–max "
        "| wall µs / unit | ceiling units/s (one writer, nothing else) | target | ceiling / target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, unit, units, calls, statements, cpu_us, lo, hi, wall_us, ceiling, target, _issue, _errors,
         synchronous) in rows:
        lines.append(f"| {name} ({unit}s, synchronous={synchronous}) | {units:,} | {calls:.1f} | {statements:.1f} | "
                     f"{cpu_us:.1f} | {lo:.1f}–{hi:.1f} | {wall_us:.1f} | {ceiling:,.0f} | {target:,.0f} | "
                     f"{ceiling / target:.2f}x |")
    lines.append("")
    for name, unit, *_, ceiling, target, issue, errors, _ in rows:
        lines.append(f"- {name}: {issue}; SQLite alone allows at most {ceiling:,.0f} {unit}s/s "
                     f"({ceiling / target:.2f}x of the target){f'; replay errors: {errors}' if errors else ''}.")
    hb.append_results("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

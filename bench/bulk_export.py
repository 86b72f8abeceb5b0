"""Bulk Data export throughput and memory: a full system ``$export`` vs the ceiling.

    .venv/bin/python bench/bulk_export.py                  # SQLite and PostgreSQL, 10k and as large as fits
    .venv/bin/python bench/bulk_export.py --sizes 10000 --engines sqlite --no-write

For each engine the store is grown through the one write path (the Synthea corpus, then copies of
its resources under new ids) to each size, and at each size, alternately, ``--runs`` times:

* **ceiling** - one raw ``SELECT`` of the same rows (current version of every live resource) on the
  driver's cursor, streamed (``fetchmany``; a server-side cursor on PostgreSQL) into one NDJSON file;
* **export** - a real system export: ``GET /fhir/$export`` on an in-process app, then the worker
  runs the job (select → expand → write → manifest) into NDJSON files of 50,000 lines.

Each run is its own process (after a small warm-up of the same code: a ``_type=Patient`` export,
a ``LIMIT 2000`` select), so its peak RSS (VmHWM, reset after start-up) is the run's own:
"flat memory" means the export's peak does not grow with the store. Resources/s = resources written
/ wall time of the run. Target (issue 6): export >= 50% of the ceiling. The largest size is what
fits in ``--budget`` seconds of loading per engine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

PG_DB = "ehrgate_bench_bulk"


# -- child processes ----------------------------------------------------------------------------


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def child_ceiling(url: str, out: Path) -> dict[str, Any]:
    from ehrgate.fhir.store.engine import create_engine

    engine = create_engine(url)
    sql = ("SELECT v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
           "WHERE r.deleted = {f}")
    raw_conn = engine.raw_connection()
    pg = engine.dialect.name == "postgresql"
    false = "false" if pg else "0"

    def run(name: str, limit: str) -> tuple[int, int]:
        n = size = 0
        with open(out / name, "wb", buffering=1 << 20) as fh:
            if pg:
                conn = raw_conn.driver_connection
                with conn.transaction(), conn.cursor(name="ceiling") as cur:
                    cur.itersize = 2000
                    cur.execute(sql.format(f=false) + limit)
                    while rows := cur.fetchmany(2000):
                        chunk = b"\n".join(bytes(r[0]) for r in rows) + b"\n"
                        fh.write(chunk)
                        n += len(rows)
                        size += len(chunk)
            else:
                cur = raw_conn.driver_connection.execute(sql.format(f=false) + limit)
                while rows := cur.fetchmany(2000):
                    chunk = b"\n".join(r[0] for r in rows) + b"\n"
                    fh.write(chunk)
                    n += len(rows)
                    size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return n, size

    base = _rss_kb("VmRSS")
    _reset_peak()
    run("warm-up.ndjson", " LIMIT 2000")
    started = time.perf_counter()
    n, size = run("all.ndjson", "")
    seconds = time.perf_counter() - started
    raw_conn.close()
    return {"seconds": seconds, "resources": n, "bytes": size, "rss_base_kb": base, "rss_peak_kb": _rss_kb("VmHWM")}


def child_export(url: str, out: Path) -> dict[str, Any]:
    import logging

    from starlette.testclient import TestClient

    from ehrgate.app import create_app
    from ehrgate.fhir.store.engine import create_engine
    from ehrgate.fhir.store.service import Store

    logging.disable(logging.WARNING)
    settings = h.app_settings(out / "data", database_url=url, base_url="http://bench", bulk_dir=str(out / "bulk"),
                              bulk_workers=0, bulk_file_lines=50_000)
    store = Store(create_engine(url))
    app = create_app(settings, store)
    client = TestClient(app)
    base = _rss_kb("VmRSS")
    _reset_peak()
    warm = client.get("/fhir/$export?_type=Patient", headers={"Prefer": "respond-async"})
    assert warm.status_code == 202, warm.text
    while app.state.bulk.worker.run_once():
        pass
    client.delete(warm.headers["content-location"].removeprefix("http://bench"))
    started = time.perf_counter()
    r = client.get("/fhir/$export", headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
    assert r.status_code == 202, r.text
    status = r.headers["content-location"].removeprefix("http://bench")
    while app.state.bulk.worker.run_once():
        pass
    seconds = time.perf_counter() - started
    manifest = client.get(status).json()
    n = sum(e["count"] for e in manifest["output"])
    size = sum(p.stat().st_size for p in (out / "bulk").rglob("*.ndjson"))
    return {"seconds": seconds, "resources": n, "bytes": size, "files": len(manifest["output"]),
            "rss_base_kb": base, "rss_peak_kb": _rss_kb("VmHWM")}


def run_child(kind: str, url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bulk-{kind}-") as tmp:
        out = subprocess.run(
            h.pinned([sys.executable, __file__, "--child", kind, "--url", url, "--out", tmp], h.SERVER_CPU),
            capture_output=True, text=True, timeout=3600, env={**os.environ, **h.OPEN_API},
        )
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- growing the store --------------------------------------------------------------------------


def current_count(store: Any) -> int:
    import sqlalchemy as sa

    with store.reader() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM resource WHERE deleted = :f"), {"f": False}).scalar_one())


def grow(store: Any, target: int, deadline: float, templates: list[dict[str, Any]], copy: list[int]) -> int:
    """Add copies of ``templates`` through the write path until ``target`` or ``deadline``: transaction
    Bundles of 1,000 POST entries (new server-assigned ids), loaded as ``ehrgate load`` loads them
    (``load_items``: the store's batched ``write_prepared``). References keep pointing at the originals."""
    from ehrgate.fhir.loader import load_items
    from ehrgate.fhir.loadfiles import LoadItem, LoadSource

    have = current_count(store)
    source = LoadSource(Path("bench-copies"))

    def bundles() -> Any:
        nonlocal have
        while have < target and time.monotonic() < deadline:
            copy[0] += 1
            for start in range(0, len(templates), 1000):
                chunk = templates[start:start + 1000]
                entries = [{"resource": {k: v for k, v in res.items() if k != "id"},
                            "request": {"method": "POST", "url": res["resourceType"]}} for res in chunk]
                yield LoadItem("bundle", source, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
                have += len(chunk)
                if have >= target or time.monotonic() >= deadline:
                    return

    summary = load_items(store, bundles(), h.known_types())
    if summary.errors:
        raise SystemExit(f"growing the store reported {len(summary.errors)} problems, first: {summary.errors[0]}")
    return current_count(store)


def templates_of(store: Any) -> list[dict[str, Any]]:
    import orjson
    import sqlalchemy as sa

    with store.reader() as conn:
        rows = conn.execute(sa.text(
            "SELECT v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
            "WHERE r.deleted = :f ORDER BY r.pk"), {"f": False}).all()
    out = []
    for (raw,) in rows:
        res = orjson.loads(bytes(raw))
        res.pop("meta", None)
        out.append(res)
    return out


# -- main ---------------------------------------------------------------------------------------


def measure(engine: str, url: str, store: Any, sizes: list[int], runs: int, budget: float) -> list[dict[str, Any]]:
    label = h.load_clinical_data(store)
    templates = templates_of(store)
    copy = [0]
    rows = []
    deadline = time.monotonic() + budget
    for target in sizes:
        t0 = time.monotonic()
        size = grow(store, target, deadline, templates, copy)
        print(f"{engine}: {size} resources (grew in {time.monotonic() - t0:.0f} s); measuring", flush=True)
        results: dict[str, list[dict[str, Any]]] = {"ceiling": [], "export": []}
        for _ in range(runs):
            for kind in ("ceiling", "export"):
                results[kind].append(run_child(kind, url))
                r = results[kind][-1]
                print(f"  {kind}: {r['resources']} in {r['seconds']:.2f} s, peak RSS {r['rss_peak_kb'] / 1024:.0f} MB",
                      flush=True)
        rows.append({"engine": engine, "size": size, "data": label, **results})
        if size < target:
            break
    return rows


def section(rows: list[dict[str, Any]], args: argparse.Namespace, pg: str) -> str:
    lines = [
        f"## bulk_export: full system $export vs raw SELECT → NDJSON ({h.now_utc()})",
        "",
        f"- Command: `{h.command_line()}`",
        f"- Machine: {h.machine_line()}" + (f"; PostgreSQL {pg}" if pg else ""),
        f"- Data: {rows[0]['data']}, then copies of its resources under new ids (the one write path) up to each size.",
        f"- Runs: {args.runs} per kind and size, alternating, each its own process pinned to CPU {h.SERVER_CPU}; "
        "median wall time. Export = `GET /fhir/$export` on an in-process app + the worker running the job to "
        "completion (50,000-line files, fsync each); ceiling = one streamed SELECT of the same rows written to one "
        "NDJSON file (fsync); both after a small warm-up in the same process. Peak RSS = VmHWM of the run's "
        "process, reset after start-up (base = RSS at start).",
        "",
        "| db | resources | ceiling res/s | export res/s | export / ceiling | MB/s (export) | peak RSS export (base) | peak RSS ceiling (base) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for row in rows:
        c = sorted(row["ceiling"], key=lambda r: r["seconds"])[len(row["ceiling"]) // 2]
        e = sorted(row["export"], key=lambda r: r["seconds"])[len(row["export"]) // 2]
        c_rate = c["resources"] / c["seconds"]
        e_rate = e["resources"] / e["seconds"]
        ratio = e_rate / c_rate
        peak_e = max(r["rss_peak_kb"] for r in row["export"]) / 1024
        peak_c = max(r["rss_peak_kb"] for r in row["ceiling"]) / 1024
        lines.append(
            f"| {row['engine']} | {row['size']:,} | {c_rate:,.0f} | {e_rate:,.0f} | {ratio:.0%} | "
            f"{e['bytes'] / e['seconds'] / 1e6:,.1f} | {peak_e:.0f} MB ({e['rss_base_kb'] / 1024:.0f}) | "
            f"{peak_c:.0f} MB ({c['rss_base_kb'] / 1024:.0f}) |"
        )
        verdicts.append(f"- {row['engine']}, {row['size']:,} resources: export at {ratio:.0%} of the ceiling; "
                        f"target >= 50%: {'MET' if ratio >= 0.5 else 'MISSED'}")
    lines += ["", *verdicts]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="store sizes to measure at (comma-separated)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=300, help="seconds of loading per engine")
    parser.add_argument("--no-write", action="store_true", help="print, do not append to RESULTS.md")
    parser.add_argument("--child", choices=("ceiling", "export"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fn = child_ceiling if args.child == "ceiling" else child_export
        print(json.dumps(fn(args.url, Path(args.out))))
        return 0

    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows: list[dict[str, Any]] = []
    pg = ""
    with tempfile.TemporaryDirectory(prefix="bulk-bench-") as tmp:
        for engine in args.engines.split(","):
            if engine == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'ehrgate.sqlite3'}"
                store = h.open_store(database_url=url)
            elif h.pg_available():
                url = h.fresh_pg_database(PG_DB)
                pg = h.pg_version(url)
                store = h.open_store(database_url=url)
            else:
                print(f"PostgreSQL at {h.DEFAULT_PG} is not reachable: skipped")
                continue
            try:
                rows += measure(engine, url, store, sizes, args.runs, args.budget)
            finally:
                store.engine.dispose()
                if engine == "postgresql":
                    h.drop_pg_database(PG_DB)
    text = section(rows, args, pg)
    print(text)
    if not args.no_write:
        h.append_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

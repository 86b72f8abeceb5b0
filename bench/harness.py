"""Shared plumbing for the FHIR benchmarks: machine facts, data sets, servers, load generation,
and the sections appended to bench/RESULTS.md.

Everything runs on this machine only: servers bind 127.0.0.1 on a free port, every load run has a
fixed duration and stops by itself, and every server started here is stopped by its own process id.
Data goes through the store's one write path (``process_transaction`` / ``load_items``), the same
code ``ehrgate load`` runs.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "RESULTS.md"
BIN = Path(sys.executable).parent
EHRGATE = str(BIN / "ehrgate")
CORPUS = (REPO / ".." / "shared" / "corpus" / "fhir").resolve()
SYNTHEA = CORPUS / "synthea-r4"
NDJSON = CORPUS / "bulk-ndjson-10-patients"
DEFAULT_PG = os.environ.get("EHRGATE_BENCH_POSTGRES_URL") or os.environ.get(
    "EHRGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SERVER_CPU = "0"
"""Servers run pinned to CPU 0 and the load generator to CPU 1 (when there are two CPUs), so the
server has one whole core and "per core" figures need no guessing."""
CLIENT_CPU = "1"
OWN_SESSION = True
"""Servers and the load generator each start in a session of their own. With the kernel's
autogroup scheduling (sched_autogroup_enabled=1, the default here) one session's processes share
one scheduling group; a server and its client in one group would split that group's weight
between the two CPUs, and on a shared, busy machine the fast bare server (whose client is busier)
got a third of its core while EHRGate got all of it. Separate sessions give each its own share."""
FHIR_JSON = "application/fhir+json"
OPEN_API = {"EHRGATE_AUTH_REQUIRED": "false"}
"""The benchmarks send no SMART tokens: servers run with ``auth_required`` false (the documented
switch for scripted checks). Trees without the setting ignore the variable."""


# -- machine and RESULTS.md ---------------------------------------------------------------------


def machine() -> dict[str, str]:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip() or str(os.cpu_count())
    cpu = platform.processor()
    info = Path("/proc/cpuinfo")
    if info.exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")), cpu)
    import sqlite3

    return {
        "nproc": nproc,
        "cpu": cpu,
        "python": f"{platform.python_version()} ({sys.implementation.name})",
        "sqlite": sqlite3.sqlite_version,
    }


def source_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes (the tree moves while we run)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src")
    state = f"commit {sha}{' + uncommitted changes in src/' if dirty else ''}"
    import ehrgate

    where = Path(ehrgate.__file__).resolve().parents[1]
    if where != REPO / "src":
        # A frozen copy of src/ (the work tree changes under long runs on a shared machine); its
        # commit is in COMMIT beside it when whoever copied it wrote one.
        stamp = where.parent / "COMMIT"
        copied = stamp.read_text().strip() if stamp.exists() else "unknown commit"
        state = (f"a copy of src/ at {copied} (+ its uncommitted changes then) imported from {where} via "
                 f"PYTHONPATH; the work tree is now at {state}")
    return state


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def machine_line() -> str:
    m = machine()
    return (f"nproc={m['nproc']}, {m['cpu']}, Python {m['python']}, SQLite {m['sqlite']}; {source_state()}; "
            f"1-min load average {load_average()} at the end (the machine is shared)")


def now_utc() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def command_line() -> str:
    args = " ".join(sys.argv[1:])
    return f".venv/bin/python bench/{Path(sys.argv[0]).name}{' ' + args if args else ''}"


def append_results(section: str) -> None:
    """Append one section (Markdown, starting with ``## ``) to bench/RESULTS.md."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/ (newest last). "
                           "`make bench` runs them all (bench/run.py).\n\n")
    with RESULTS.open("a") as fh:
        fh.write(section.rstrip() + "\n\n")
    print(f"appended to {RESULTS.relative_to(REPO)}")


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- stores and data ----------------------------------------------------------------------------


def open_store(*, data_dir: Path | None = None, database_url: str | None = None) -> Any:
    """The store the server would open for these flags (schema migrated)."""
    from ehrgate.app import open_store as _open
    from ehrgate.settings import load_settings

    overrides: dict[str, Any] = {"log_level": "WARNING"}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if database_url:
        overrides["database_url"] = database_url
    return _open(load_settings(None, overrides=overrides))


def app_settings(data_dir: Path, **overrides: Any) -> Any:
    """Settings for an in-process app on ``data_dir``: access log off, API open (see OPEN_API)."""
    from ehrgate.settings import SETTINGS, load_settings

    names = {s.name for s in SETTINGS}
    values: dict[str, Any] = {"data_dir": str(data_dir), "log_level": "WARNING", **overrides}
    if "auth_required" in names:
        values["auth_required"] = False
    return load_settings(None, overrides=values)


def known_types() -> frozenset[str]:
    from ehrgate.fhir.validation import known_resource_types

    return frozenset(known_resource_types())


def load_paths(store: Any, paths: Sequence[Path]) -> Any:
    """Load files/directories exactly as ``ehrgate load`` does (returns its LoadSummary)."""
    from ehrgate.fhir.loader import load_items
    from ehrgate.fhir.loadfiles import iter_load_items

    summary = load_items(store, iter_load_items([str(p) for p in paths]), known_types())
    if summary.errors:
        raise SystemExit(f"loading {paths} reported {len(summary.errors)} problems, first: {summary.errors[0]}")
    return summary


def load_bundles(store: Any, bundles: Iterable[dict[str, Any]]) -> int:
    """Run transaction Bundles through the write path; returns the number of entries written."""
    from ehrgate.fhir.bundles import process_transaction

    kt = known_types()
    n = 0
    for bundle in bundles:
        process_transaction(store, bundle, kt)
        n += len(bundle.get("entry") or [])
    return n


def synthetic_bundles(patients: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    from ehrgate.demo.synthetic import generate_demo_bundles

    return generate_demo_bundles(patients, seed)


def synthea_present() -> bool:
    return SYNTHEA.is_dir() and any(SYNTHEA.glob("*.json"))


def load_clinical_data(store: Any, fallback_patients: int = 40) -> str:
    """Synthea bundles when the corpus is there, else the synthetic generator. Returns a label."""
    if synthea_present():
        summary = load_paths(store, [SYNTHEA])
        return f"Synthea R4 corpus ({summary.resources} resources, {summary.bundles} bundles)"
    n = load_bundles(store, synthetic_bundles(fallback_patients, seed=7))
    return f"synthetic generator, {fallback_patients} patients, seed 7 ({n} resources; Synthea corpus absent)"


def sqlite_file(data_dir: Path) -> Path:
    return data_dir / "ehrgate.sqlite3"


# -- PostgreSQL ---------------------------------------------------------------------------------


def pg_available(url: str = DEFAULT_PG) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def fresh_pg_database(name: str, admin_url: str = DEFAULT_PG) -> str:
    """(Re)create database ``name`` on the server of ``admin_url``; return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _db = admin_url.rpartition("/")
    return f"{base}/{name}"


def pg_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def drop_pg_database(name: str, admin_url: str = DEFAULT_PG) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- servers ------------------------------------------------------------------------------------


def pinned(cmd: list[str], cpus: str) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpus, *cmd]
    return cmd


@dataclass
class Server:
    """A server process started by this benchmark; stopped by its own pid."""

    name: str
    proc: subprocess.Popen[str]
    base: str
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (from /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(name: str, cmd: list[str], *, env: dict[str, str] | None = None, ready: str,
                 workdir: Path, cpu: str | None = SERVER_CPU, timeout: float = 60) -> Server:
    """Start ``cmd`` and wait for a stdout line containing ``ready`` followed by a URL."""
    log = workdir / f"{name}.stderr.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(pinned(cmd, cpu) if cpu else cmd, stdout=subprocess.PIPE, stderr=log.open("w"),
                            text=True, env=full_env, cwd=workdir, start_new_session=OWN_SESSION)
    found: list[str] = []

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if ready in line and not found:
                found.append(line.split(ready, 1)[1].strip().split()[-1])
        # keep draining so the child never blocks on a full pipe

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found:
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            raise SystemExit(f"{name} did not start: {' '.join(cmd)}\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return Server(name, proc, found[0].rstrip("/"), log)


def start_ehrgate(name: str, workdir: Path, *, data_dir: Path | None = None, database_url: str | None = None,
                  log_level: str | None = None, cpu: str | None = SERVER_CPU) -> Server:
    """``ehrgate serve --port 0`` exactly as a user runs it (``log_level`` None = the default)."""
    cmd = [EHRGATE, "serve", "--host", "127.0.0.1", "--port", "0"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    env = {**OPEN_API, **({"EHRGATE_LOG_LEVEL": log_level} if log_level else {})}
    return start_server(name, cmd, env=env, ready="EHRGate is ready: FHIR base", workdir=workdir, cpu=cpu)


@contextmanager
def servers_stopped(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


# -- load generation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: bytes | None = None
    kind: str = ""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    tool: str
    server_cpu_s: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        """Requests per second of server CPU time: the per-core throughput."""
        return self.requests / self.server_cpu_s if self.server_cpu_s and self.server_cpu_s == self.server_cpu_s else float("nan")


def _lua_string(data: str) -> str:
    level = 0
    while f"]{'=' * level}]" in data:
        level += 1
    eq = "=" * level
    # a long bracket drops a newline right after the opening bracket; JSON we send has none
    return f"[{eq}[{data}]{eq}]"


def wrk_script(reqs: Sequence[Req]) -> str:
    """A wrk Lua script that cycles through ``reqs`` (pre-formatted once per thread) and prints a
    JSON summary line in ``done``."""
    specs = []
    for r in reqs:
        body = _lua_string(r.body.decode()) if r.body is not None else "nil"
        specs.append(f"{{{_lua_string(r.method)}, {_lua_string(r.path)}, {body}}}")
    return (
        "local specs = {\n" + ",\n".join(specs) + "\n}\n"
        "local reqs = {}\n"
        "local counter = 0\n"
        "init = function(args)\n"
        "  for i, s in ipairs(specs) do\n"
        "    local headers = {}\n"
        "    headers[\"Accept\"] = \"application/fhir+json\"\n"
        "    if s[3] then headers[\"Content-Type\"] = \"application/fhir+json\" end\n"
        "    reqs[i] = wrk.format(s[1], s[2], headers, s[3])\n"
        "  end\n"
        "  counter = math.random(#reqs) - 1\n"
        "end\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        "  if counter > #reqs then counter = 1 end\n"
        "  return reqs[counter]\n"
        "end\n"
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        "  io.write(string.format('WRKJSON {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,"
        "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d}\\n',\n"
        "    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,\n"
        "    latency:percentile(50), latency:percentile(90), latency:percentile(99)))\n"
        "end\n"
    )


def have_wrk() -> bool:
    """wrk on PATH, unless EHRGATE_BENCH_NO_WRK=1 asks for the Python fallback."""
    return shutil.which("wrk") is not None and os.environ.get("EHRGATE_BENCH_NO_WRK") != "1"


def run_load(server: Server, reqs: Sequence[Req], *, duration: float, connections: int, workdir: Path,
             label: str = "run") -> LoadResult:
    """Drive ``server`` for ``duration`` seconds with ``connections`` keep-alive connections cycling
    through ``reqs``; wrk when installed, else bench/loadgen.py (asyncio, same request list)."""
    origin = server.base.split("/fhir")[0] if "/fhir" in server.base else server.base
    cpu0 = server.cpu_seconds()
    if have_wrk():
        script = workdir / f"{label}.lua"
        script.write_text(wrk_script(reqs))
        cmd = pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
                      "-s", str(script), origin + "/"], CLIENT_CPU)
        tool = "wrk"
    else:
        spec = workdir / f"{label}.json"
        spec.write_text(json.dumps({"origin": origin, "requests": [
            {"method": r.method, "path": r.path, "body": r.body.decode() if r.body is not None else None} for r in reqs
        ]}))
        cmd = pinned([sys.executable, str(BENCH / "loadgen.py"), str(spec), "--duration", str(duration),
                      "--connections", str(connections)], CLIENT_CPU)
        tool = "loadgen.py"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False,
                         start_new_session=OWN_SESSION)
    cpu1 = server.cpu_seconds()
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"{tool} printed no summary (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    data = json.loads(line.split(" ", 1)[1])
    return LoadResult(
        requests=data["requests"], seconds=data["duration_us"] / 1e6, p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000, errors=data["errors"], tool=tool,
        server_cpu_s=cpu1 - cpu0,
    )


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": FHIR_JSON}), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_all(server: Server, reqs: Sequence[Req], sample: int = 20) -> None:
    """Send a few of the requests once and fail loudly on a non-2xx answer (a benchmark of errors
    would be meaningless)."""
    import urllib.request

    origin = server.base.split("/fhir")[0] if "/fhir" in server.base else server.base
    kinds: dict[str, Req] = {}
    for r in reqs:
        kinds.setdefault(r.kind or r.method, r)
    for r in list(kinds.values()) + random.Random(1).sample(list(reqs), min(sample, len(reqs))):
        req = urllib.request.Request(origin + r.path, data=r.body, method=r.method,
                                     headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
        except Exception as exc:  # noqa: BLE001
            body = exc.read()[:500] if hasattr(exc, "read") else b""
            raise SystemExit(f"{server.name}: {r.method} {r.path} failed: {exc} {body!r}") from None


def temp_dir(prefix: str) -> Any:
    return tempfile.TemporaryDirectory(prefix=f"ehrgate-bench-{prefix}-")

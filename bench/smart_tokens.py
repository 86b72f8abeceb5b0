"""Benchmark: SMART token endpoint throughput, and what bearer-token validation costs a FHIR read.

Two measurements, one data directory (synthetic demo data, seed 7, plus `ehrgate demo`'s users and
apps), servers started as users start them (``ehrgate serve``, one uvicorn worker, default
settings), pinned to CPU 0 with wrk on CPU 1:

1. Token endpoint, tokens/s (``POST /auth/token``, each request a fresh, valid grant):
   - ``authorization_code``: single-use codes created beforehand with the functions the consent
     step uses (``grants.create_grant`` + ``grants.issue_code``, PKCE S256), for a clinician with
     ``launch/patient openid fhirUser offline_access patient/*.rs``; each exchange checks PKCE, marks
     the code used, signs an access token and an id_token (RS256), issues a refresh token and records
     an AuditEvent, all in one transaction.
   - ``client_credentials``: SMART Backend Services with ES384 ``private_key_jwt`` assertions (the
     demo backend key), each with its own ``jti``, signed just before the run; each request verifies
     the assertion, records the jti, creates a grant, signs an access token, records an AuditEvent.
   The token rate limit is switched off for the server under test (``EHRGATE_TOKEN_RATE_LIMIT=0``).
2. ``GET /fhir/Patient/{id}`` req/s, in the same run, servers taking turns: ``open``
   (``auth_required=false``, no token), ``bearer`` (a ``system/*.rs`` backend token on every
   request: JWT check, grant-revocation check, scope policy, access AuditEvent recorded in batches),
   ``bearer-user`` (a clinician's ``user/*.rs`` token) and ``bearer-no-audit`` (the system token with
   ``EHRGATE_AUDIT_ACCESS=false``, to separate token checking from audit writing) and ``bearer-same``
   (the system token sent to the ``open`` server, which checks and audits a token when one is sent:
   with and without auth in one process, free of differences between server processes). Target (issue 3):
   bearer-token validation costs <= 15% of read throughput.

    .venv/bin/python bench/smart_tokens.py [--duration 10] [--runs 5] [--connections 32] [--patients 200] [--no-write]

Needs wrk (``apt-get install -y wrk``). Servers bind 127.0.0.1, every run has a fixed duration, and
every server started here is stopped by its own process id.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import harness as hb

TARGET_OVERHEAD = 0.15
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BENCH_APP = "bench-app"
CALLBACK = "http://127.0.0.1:9/callback"
USER_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- data ----------------------------------------------------------------------------------------


def build(data_dir: Path, patients: int) -> dict[str, Any]:
    """Synthetic patients and the demo's SMART users/apps, plus a public app for code exchanges."""
    from ehrgate.settings import load_settings
    from ehrgate.smart import apps as A
    from ehrgate.smart.demo import seed_smart_demo
    from ehrgate.smart.users import list_users

    store = hb.open_store(data_dir=data_dir)
    n = hb.load_bundles(store, hb.synthetic_bundles(patients, seed=7))
    settings = load_settings(None, overrides={"data_dir": str(data_dir)}, environ={})
    seed_smart_demo(store, settings)
    with store.writer() as w:
        A.add_app(w.conn, A.App(BENCH_APP, "Benchmark app", "public", (CALLBACK,)), now=int(time.time()))
    with store.reader() as conn:
        ids = [r[0] for r in conn.exec_driver_sql(
            "SELECT res_id FROM resource WHERE res_type = 'Patient' AND NOT deleted ORDER BY res_id").fetchall()]
        doctor = next(u for u in list_users(conn) if u.username == "doctor")
    return {"store": store, "resources": n, "patients": ids, "doctor": doctor}


def make_codes(store: Any, doctor: Any, patient: str, count: int, *, scope: str = USER_SCOPE) -> tuple[list[str], str]:
    """``count`` authorization codes as the consent page leaves them; returns (codes, code_verifier)."""
    from ehrgate.smart import grants as G

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    now = int(time.time())
    context = {"role": doctor.role, "fhir_user": doctor.fhir_user, "need_patient_banner": True}
    codes = []
    with store.writer() as w:
        for _ in range(count):
            grant = G.create_grant(w.conn, client_id=BENCH_APP, user_id=doctor.id, scope=scope, patient=patient,
                                   context=context, offline="offline_access" in scope, now=now)
            codes.append(G.issue_code(w.conn, grant, redirect_uri=CALLBACK, code_challenge=challenge,
                                      challenge_method="S256", nonce=None, auth_time=now, now=now, lifetime=3600))
    return codes, verifier


def make_assertions(key: Any, token_url: str, count: int) -> list[str]:
    from joserfc import jwt

    now = int(time.time())
    header = {"alg": "ES384", "kid": key.kid, "typ": "JWT"}
    return [jwt.encode(header, {"iss": "demo-backend", "sub": "demo-backend", "aud": token_url, "iat": now,
                                "exp": now + 280, "jti": secrets.token_urlsafe(16)}, key, algorithms=["ES384"])
            for _ in range(count)]


# -- load ----------------------------------------------------------------------------------------


def _lua(s: str) -> str:
    level = 0
    while f"]{'=' * level}]" in s:
        level += 1
    return f"[{'=' * level}[{s}]{'=' * level}]"


def wrk_script(method: str, paths: list[str], bodies: list[str] | None, headers: dict[str, str]) -> str:
    """Cycles through ``paths`` (GET) or sends each of ``bodies`` once, in order (POST forms)."""
    items = bodies if bodies is not None else paths
    head = "".join(f"  h[ {_lua(k)} ] = {_lua(v)}\n" for k, v in headers.items())  # h[[[..]] would be a call
    return (
        "local items = {\n" + ",\n".join(_lua(i) for i in items) + "\n}\n"
        f"local path = {_lua(paths[0])}\n"
        "local i = 0\n"
        "local h = {}\n"
        "init = function(args)\n" + head + "end\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  if i > #items then i = 1 end\n"
        + ("  return wrk.format('POST', path, h, items[i])\n" if bodies is not None
           else f"  return wrk.format({_lua(method)}, items[i], h, nil)\n")
        + "end\n"
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        "  io.write(string.format('WRKJSON {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,"
        "\"p50_us\":%d,\"p99_us\":%d}\\n',\n"
        "    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,\n"
        "    latency:percentile(50), latency:percentile(99)))\n"
        "end\n"
    )


def wrk(server: hb.Server, script: str, *, duration: float, connections: int, workdir: Path, label: str,
        drain: bool = False) -> dict[str, Any]:
    """One wrk run. ``drain``: the server's CPU is read once it is idle again, so work the run left
    behind (the access audit writes the last second's calls after wrk stops) is charged to it."""
    path = workdir / f"{label}.lua"
    path.write_text(script)
    origin = server.base.split("/fhir")[0]
    cpu0 = server.cpu_seconds()
    cmd = hb.pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(path),
                     origin + "/"], hb.CLIENT_CPU)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False, start_new_session=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    data = json.loads(line.split(" ", 1)[1])
    seconds = data["duration_us"] / 1e6
    if drain:
        settle([server])
    return {"requests": data["requests"], "rps": data["requests"] / seconds, "errors": data["errors"],
            "p50": data["p50_us"] / 1000, "p99": data["p99_us"] / 1000,
            "cpu": (server.cpu_seconds() - cpu0) / seconds}


def post_form(url: str, form: dict[str, str]) -> dict[str, Any]:
    import urllib.request

    req = urllib.request.Request(url, data=urlencode(form).encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.load(resp))


def check_read(server: hb.Server, path: str, headers: dict[str, str]) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(server.base.split("/fhir")[0] + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{server.name}: GET {path} answered {exc.code}: {exc.read()[:300]!r}") from None


def start(name: str, work: Path, data_dir: Path, port: int, env: dict[str, str]) -> hb.Server:
    cmd = [hb.EHRGATE, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    return hb.start_server(name, cmd, env={"EHRGATE_TOKEN_RATE_LIMIT": "0", **env}, ready="EHRGate is ready: FHIR base",
                           workdir=work)


# -- the runs ------------------------------------------------------------------------------------


def token_runs(args: Any, world: dict[str, Any], srv: hb.Server, key: Any, work: Path) -> dict[str, list[dict[str, Any]]]:
    token_url = srv.base.split("/fhir")[0] + "/auth/token"
    patient = world["patients"][0]
    results: dict[str, list[dict[str, Any]]] = {"authorization_code": [], "client_credentials": []}
    estimate = {"authorization_code": 400.0, "client_credentials": 400.0}
    for run in range(-1, args.runs):  # run -1: warm-up, also sizes how many grants a run needs
        secs = args.warmup if run < 0 else args.duration
        for grant_type in results:
            need = int(estimate[grant_type] * secs * 1.6) + 500
            if grant_type == "authorization_code":
                codes, verifier = make_codes(world["store"], world["doctor"], patient, need)
                bodies = [urlencode({"grant_type": "authorization_code", "code": c, "redirect_uri": CALLBACK,
                                     "code_verifier": verifier, "client_id": BENCH_APP}) for c in codes]
            else:
                bodies = [urlencode({"grant_type": "client_credentials", "scope": "system/*.rs",
                                     "client_assertion_type": JWT_BEARER, "client_assertion": a})
                          for a in make_assertions(key, token_url, need)]
            script = wrk_script("POST", ["/auth/token"], bodies,
                                {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
            settle([srv])
            r = wrk(srv, script, duration=secs, connections=args.token_connections, workdir=work, label=f"{grant_type}-{run}")
            if r["requests"] > len(bodies):
                raise SystemExit(f"{grant_type}: {r['requests']} requests but only {len(bodies)} grants prepared")
            if r["errors"]:
                raise SystemExit(f"{grant_type}: {r['errors']} failed token requests in run {run}")
            estimate[grant_type] = max(estimate[grant_type], r["rps"])
            if run >= 0:
                results[grant_type].append(r)
                print(f"  {grant_type:<19} run {run + 1}: {r['rps']:7,.0f} tokens/s  p50 {r['p50']:6.2f} ms  "
                      f"p99 {r['p99']:7.2f} ms  server CPU {r['cpu']:4.0%}", flush=True)
    return results


def settle(servers: list[hb.Server], limit: float = 60.0) -> None:
    """Wait until every server is idle (the access-audit writer of the previous run has flushed its
    batch): all servers share CPU 0, so leftover work would be charged to the next run."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(s.cpu_seconds() for s in servers)
        time.sleep(0.5)
        if sum(s.cpu_seconds() for s in servers) - before < 0.03:
            return


def read_runs(args: Any, variants: list[tuple[str, hb.Server, dict[str, str]]], paths: list[str],
              work: Path) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _s, _h in variants}
    servers = list({id(s): s for _n, s, _h in variants}.values())
    for name, srv, headers in variants:
        check_read(srv, paths[0], headers)
        settle(servers)
        wrk(srv, wrk_script("GET", paths, None, headers), duration=args.warmup, connections=args.connections,
            workdir=work, label=f"warm-{name}")
    for run in range(args.runs):
        for name, srv, headers in variants:
            settle(servers)
            r = wrk(srv, wrk_script("GET", paths, None, headers), duration=args.duration, connections=args.connections,
                    workdir=work, label=f"{name}-{run}", drain=True)
            if r["errors"]:
                raise SystemExit(f"{name}: {r['errors']} failed reads in run {run}")
            results[name].append(r)
            print(f"  {name:<16} run {run + 1}: {r['rps']:8,.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
                  f"server CPU {r['cpu']:4.0%}", flush=True)
    return results


def row(name: str, runs: list[dict[str, Any]], unit_base: float | None = None) -> str:
    rps = [r["rps"] for r in runs]
    per_cpu = hb.med([r["rps"] / r["cpu"] for r in runs if r["cpu"]])
    cells = [name, f"{hb.med(rps):,.0f}", f"{min(rps):,.0f}–{max(rps):,.0f}", f"{per_cpu:,.0f}",
             f"{hb.med([r['p50'] for r in runs]):.2f}", f"{hb.med([r['p99'] for r in runs]):.2f}",
             f"{hb.med([r['cpu'] for r in runs]):.0%}"]
    if unit_base is not None:
        cells.append(f"{1 - hb.med(rps) / unit_base:.0%}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32, help="connections for the read runs")
    parser.add_argument("--token-connections", type=int, default=16, help="connections for the token runs")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 run each")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.runs = min(args.duration, 3), 1, 1
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    from joserfc.jwk import JWKRegistry

    with hb.temp_dir("smart") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        world = build(data_dir, args.patients)
        key = JWKRegistry.import_key(json.loads((data_dir / "demo-backend-key.json").read_text()))
        print(f"data: {world['resources']} resources, {len(world['patients'])} Patients", flush=True)
        ports = [free_port() for _ in range(3)]
        servers = [start("auth", work, data_dir, ports[0], {})]
        with hb.servers_stopped(servers):
            servers.append(start("open", work, data_dir, ports[1], {"EHRGATE_AUTH_REQUIRED": "false"}))
            servers.append(start("auth-no-audit", work, data_dir, ports[2], {"EHRGATE_AUDIT_ACCESS": "false"}))
            auth, open_, no_audit = servers
            print("token endpoint:", flush=True)
            tokens = token_runs(args, world, auth, key, work)
            def system_token(srv: hb.Server) -> str:  # tokens name their server (iss, aud): one per server
                url = srv.base.split("/fhir")[0] + "/auth/token"
                return str(post_form(url, {"grant_type": "client_credentials", "scope": "system/*.rs",
                                           "client_assertion_type": JWT_BEARER,
                                           "client_assertion": make_assertions(key, url, 1)[0]})["access_token"])

            token_url = auth.base.split("/fhir")[0] + "/auth/token"
            system = system_token(auth)
            codes, verifier = make_codes(world["store"], world["doctor"], world["patients"][0], 1,
                                         scope="openid fhirUser user/*.rs")
            user = post_form(token_url, {"grant_type": "authorization_code", "code": codes[0], "redirect_uri": CALLBACK,
                                         "code_verifier": verifier, "client_id": BENCH_APP})["access_token"]
            ids = list(world["patients"])
            random.Random(42).shuffle(ids)
            paths = [f"/fhir/Patient/{i}" for i in ids]
            accept = {"Accept": "application/fhir+json"}
            print("reads:", flush=True)
            reads = read_runs(args, [
                ("open", open_, accept),
                ("bearer", auth, {**accept, "Authorization": f"Bearer {system}"}),
                ("bearer-user", auth, {**accept, "Authorization": f"Bearer {user}"}),
                ("bearer-no-audit", no_audit, {**accept, "Authorization": f"Bearer {system_token(no_audit)}"}),
                # the open server itself answering with a token (it checks and audits one when sent):
                # with and without auth in one process, free of the differences between processes
                ("bearer-same", open_, {**accept, "Authorization": f"Bearer {system_token(open_)}"}),
            ], paths, work)
        world["store"].engine.dispose()

    base = hb.med([r["rps"] for r in reads["open"]])

    def per_cpu(name: str) -> float:
        return hb.med([r["rps"] / r["cpu"] for r in reads[name] if r["cpu"]])

    def paired(name: str) -> float:
        """1 - the median over runs of (name's req per CPU-second / open's, same run): the variants
        take turns within a run, so a drift of the machine between runs cancels out."""
        return 1 - hb.med([r["rps"] / r["cpu"] / (o["rps"] / o["cpu"])
                           for r, o in zip(reads[name], reads["open"], strict=True) if r["cpu"] and o["cpu"]])

    overhead = 1 - hb.med([r["rps"] for r in reads["bearer"]]) / base
    cpu_overhead = paired("bearer")
    no_audit = paired("bearer-no-audit")
    same_rps = 1 - hb.med([r["rps"] for r in reads["bearer-same"]]) / base
    same_cpu = paired("bearer-same")
    same_verdict = "met" if same_rps <= TARGET_OVERHEAD and same_cpu <= TARGET_OVERHEAD else (
        "MISSED" if same_rps > TARGET_OVERHEAD and same_cpu > TARGET_OVERHEAD else "inconclusive (the measures disagree)")
    runs_cost = ", ".join(f"{1 - r['rps'] / r['cpu'] / (o['rps'] / o['cpu']):.0%}"
                          for r, o in zip(reads["bearer"], reads["open"], strict=True) if r["cpu"] and o["cpu"])
    verdict = "met" if overhead <= TARGET_OVERHEAD and cpu_overhead <= TARGET_OVERHEAD else (
        "MISSED" if overhead > TARGET_OVERHEAD and cpu_overhead > TARGET_OVERHEAD else "inconclusive (the measures disagree)")
    section = "\n".join([
        f"## smart_tokens: token endpoint tokens/s; bearer-token cost on GET /fhir/Patient/{{id}} ({hb.now_utc()})",
        "",
        f"- Command: `{hb.command_line()}`",
        f"- Machine: {hb.machine_line()}",
        f"- Data: synthetic generator, {args.patients} patients, seed 7 ({world['resources']} resources) + `ehrgate demo`'s "
        "users and apps, SQLite, one data directory shared by the servers.",
        f"- Load: wrk, 1 thread, {args.token_connections} connections (tokens) / {args.connections} (reads), "
        f"{args.duration:g} s per run after a {args.warmup:g} s warm-up, {args.runs} run(s) each, servers taking turns; "
        "`ehrgate serve` (one worker, default settings; token rate limit off) pinned to CPU 0, wrk to CPU 1.",
        "- Token requests: every request a fresh grant (authorization codes prepared with the consent step's functions; "
        "ES384 client assertions signed before each run). See the docstring of bench/smart_tokens.py.",
        "",
        "| token grant | tokens/s (median) | min–max | per server CPU-s | p50 ms | p99 ms | server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("authorization_code (access + id_token + refresh, PKCE)", tokens["authorization_code"]),
        row("client_credentials (ES384 private_key_jwt)", tokens["client_credentials"]),
        "",
        "| read | req/s (median) | min–max | per server CPU-s | p50 ms | p99 ms | server CPU | cost vs open |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("open (auth_required=false, no token)", reads["open"], base),
        row("bearer system/*.rs (token check + access AuditEvent)", reads["bearer"], base),
        row("bearer user/*.rs (clinician)", reads["bearer-user"], base),
        row("bearer system/*.rs, audit_access=false", reads["bearer-no-audit"], base),
        row("bearer system/*.rs to the open server (same process as open)", reads["bearer-same"], base),
        "",
        f"- Bearer tokens cost {overhead:.0%} of read throughput by req/s, {cpu_overhead:.0%} by req per server "
        f"CPU-second (system token, default settings: token check + access AuditEvent); target <= "
        f"{TARGET_OVERHEAD:.0%}: {verdict}. Without the access audit (audit_access=false) the token check alone "
        f"costs {no_audit:.0%} per CPU-second.",
        f"- Per CPU-second: the median of each run's bearer/open pair (the runs: {runs_cost}); a run's CPU is "
        "read once its server is idle again, so the audit of its last second is charged to it.",
        f"- Same process (the open server answering the same reads with the token, which it checks and audits): "
        f"{same_rps:.0%} by req/s, {same_cpu:.0%} per CPU-second; target <= {TARGET_OVERHEAD:.0%}: {same_verdict}. "
        "Separate server processes of one configuration differ here by up to ~30%, so this pair is the cleaner one.",
    ])
    print(section)
    if not args.no_write:
        hb.append_results(section)


if __name__ == "__main__":
    main()

"""``ehrgate serve`` as a real process: ready line, real HTTP, clean errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ehrgate.cli import cli

EHRGATE = [sys.executable, "-m", "ehrgate"]


def _start(args: list[str], tmp_path: Path, **settings: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    env["EHRGATE_AUTH_REQUIRED"] = "false"  # these tests exercise the FHIR side; SMART has its own
    env.update({f"EHRGATE_{k.upper()}": v for k, v in settings.items()})
    proc = subprocess.Popen(
        [*EHRGATE, *args, "--port", "0", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"ready: FHIR base (\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("server did not print its ready line:\n" + "".join(lines))


@pytest.mark.slow
def test_serve_prints_ready_line_and_answers(tmp_path: Path) -> None:
    proc, base = _start(["serve"], tmp_path)
    try:
        with urllib.request.urlopen(f"{base}/metadata", timeout=10) as resp:
            cap = json.load(resp)
        assert cap["resourceType"] == "CapabilityStatement"
        assert (tmp_path / "data" / "ehrgate.sqlite3").exists()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)  # reads and closes the pipe (no unclosed-file warning)


@pytest.mark.slow
def test_port_0_advertises_the_bound_port(tmp_path: Path) -> None:
    """``--port 0``: the printed base, the SMART issuer and endpoints and the CapabilityStatement
    all carry the port the system picked (a client compares ``aud`` with the base it was given)."""
    proc, base = _start(["serve"], tmp_path)
    try:
        port = int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/fhir", base).group(1))  # type: ignore[union-attr]
        assert port != 0
        with urllib.request.urlopen(f"{base}/.well-known/smart-configuration", timeout=10) as resp:
            smart = json.load(resp)
        assert smart["issuer"] == base
        assert smart["token_endpoint"] == f"http://127.0.0.1:{port}/auth/token"
        with urllib.request.urlopen(f"{base}/metadata", timeout=10) as resp:
            cap = json.load(resp)
        assert cap["implementation"]["url"] == base
        uris = {e["url"]: e["valueUri"] for e in cap["rest"][0]["security"]["extension"][0]["extension"]}
        assert uris["authorize"] == f"http://127.0.0.1:{port}/auth/authorize"
        assert ":0/" not in json.dumps(cap) + json.dumps(smart)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)  # reads and closes the pipe (no unclosed-file warning)


def test_a_public_base_url_still_says_where_the_process_listens(tmp_path: Path) -> None:
    """With base_url set (a proxy in front), the ready line shows the public base; the next line
    gives the bound address, which --port 0 would otherwise hide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    env["EHRGATE_BASE_URL"] = "https://ehr.example.org"
    proc = subprocess.Popen([*EHRGATE, "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith("Listening on")) and len(lines) < 60:
            lines.append(proc.stdout.readline())
        assert "ready: FHIR base https://ehr.example.org/fhir" in lines[-2], lines
        port = int(re.fullmatch(r"Listening on 127\.0\.0\.1:(\d+)\n", lines[-1]).group(1))  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert json.load(resp) == {"status": "ok"}
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.mark.slow
def test_demo_seeds_patients(tmp_path: Path) -> None:
    proc, base = _start(["demo", "--mllp-port", "0"], tmp_path)
    try:
        assert not base.endswith(":0/fhir")
        with urllib.request.urlopen(f"{base}/.well-known/smart-configuration", timeout=10) as resp:
            assert json.load(resp)["issuer"] == base
        with urllib.request.urlopen(f"{base}/Patient?_count=1&_total=accurate", timeout=10) as resp:
            bundle = json.load(resp)
        assert bundle["total"] >= 20
        with urllib.request.urlopen(f"{base}/Observation?category=laboratory&_count=0", timeout=10) as resp:
            assert json.load(resp)["total"] > 0
    finally:
        proc.terminate()
        proc.communicate(timeout=20)  # reads and closes the pipe (no unclosed-file warning)


def test_bad_database_url_is_one_sentence(tmp_path: Path) -> None:
    out = subprocess.run(
        [*EHRGATE, "serve", "--port", "0", "--database-url", "postgresql://nobody@127.0.0.1:1/none",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "Cannot open the database" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_an_app_without_a_value_for_this_environment_is_one_sentence(tmp_path: Path) -> None:
    """An app in ehrgate.yaml with values for dev and prod only, served as `test`: before, a traceback."""
    cfg = tmp_path / "ehrgate.yaml"
    cfg.write_text("environments: [dev, test, prod]\napps:\n  - client_id: growth-chart\n    name: Growth\n"
                   "    type: public\n    launch_url: {dev: 'http://127.0.0.1:9000/launch', prod: 'https://g.example.org/l'}\n"
                   "    redirect_uris: {dev: ['http://127.0.0.1:9000/cb'], prod: ['https://g.example.org/cb']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    env["EHRGATE_ENVIRONMENT"] = "test"
    out = subprocess.run([*EHRGATE, "serve", "--port", "0", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2, out.stderr
    assert "growth-chart" in out.stderr and "'test'" in out.stderr and str(cfg) in out.stderr
    assert "Traceback" not in out.stderr


def test_a_port_in_use_is_one_sentence_before_anything_starts(tmp_path: Path) -> None:
    """Before: uvicorn found the port taken after the database was opened (and, for demo, seeded),
    logged an error and exited 3."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([*EHRGATE, "demo", "--port", str(port), "--mllp-port", "0", "--data-dir", str(tmp_path / "d")],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"Cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr
    # `make demo` takes no flags: the sentence also names the variable that moves it
    assert f"EHRGATE_PORT={port + 1} make demo" in out.stderr
    assert "Seeded" not in out.stdout and not (tmp_path / "d" / "ehrgate.sqlite3").exists()


def _taken_port() -> tuple[socket.socket, int]:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken, taken.getsockname()[1]


def test_a_taken_mllp_port_stops_the_demo_before_it_changes_anything(tmp_path: Path) -> None:
    """Before: the engine found the MLLP port taken after the demo had seeded (or, on an existing
    demo database, re-registered the sample app at the new address - a second demo on the same data
    dir broke the first one's EHR launch) and said "change source.port", which the built-in channel
    does not have."""
    data = tmp_path / "d"
    redirect = "http://127.0.0.1:8080/sample-app/callback"
    added = CliRunner().invoke(cli, ["apps", "add", "--client-id", "ehrgate-sample", "--name", "Sample", "--type",
                                     "public", "--redirect-uri", redirect, "--data-dir", str(data)])
    assert added.exit_code == 0, added.output
    taken, port = _taken_port()
    with taken:
        fresh = subprocess.run([*EHRGATE, "demo", "--port", "0", "--mllp-port", str(port), "--data-dir",
                                str(tmp_path / "fresh")], capture_output=True, text=True, timeout=60)
        again = subprocess.run([*EHRGATE, "demo", "--port", "0", "--mllp-port", str(port), "--data-dir", str(data)],
                               capture_output=True, text=True, timeout=60)
        served = subprocess.run([*EHRGATE, "serve", "--port", "0", "--mllp-port", str(port), "--data-dir", str(data)],
                                capture_output=True, text=True, timeout=60)
    for out in (fresh, again, served):
        assert out.returncode == 2, out.stderr
        assert f"Cannot listen for MLLP (channel 'mllp-in') on 127.0.0.1:{port}" in out.stderr
        assert "--mllp-port" in out.stderr and f"EHRGATE_MLLP_PORT={port + 1} make demo" in out.stderr
        assert "source.port" not in out.stderr and "Traceback" not in out.stderr and "Seeded" not in out.stdout
    assert not (tmp_path / "fresh" / "ehrgate.sqlite3").exists()
    shown = CliRunner().invoke(cli, ["apps", "show", "ehrgate-sample", "--data-dir", str(data)])
    assert f"redirect_uris: {redirect}" in shown.output


@pytest.mark.slow
def test_demo_ready_lines_paste_as_they_are(tmp_path: Path) -> None:
    """The $everything line named `Patient/<id>`, and nothing said how to see what became of the
    sample message once `messages search` had found it."""
    proc, base = _start(["demo", "--mllp-port", "0"], tmp_path)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith("Stop with Ctrl+C")) and len(lines) < 40:
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert "<id>" not in text, text
        m = re.search(r"'(http://\S+/fhir/Patient/([\w-]+)/\$everything)'", text)
        assert m, text
        with urllib.request.urlopen(m.group(1), timeout=10) as resp:  # auth is off in _start
            bundle = json.load(resp)
        assert ("Patient", m.group(2)) in {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
        users = subprocess.run([*EHRGATE, "users", "list", "--data-dir", str(tmp_path / "data")],
                               capture_output=True, text=True, timeout=60)
        assert f"Patient/{m.group(2)}" in users.stdout  # the record the demo user 'patient' signs in to
        assert re.search(r"ehrgate messages show ID --data-dir \S+", text), text
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.mark.slow
def test_demo_refuses_a_database_it_did_not_create(tmp_path: Path) -> None:
    """Before: on a database holding loaded data, the demo seeded no patients but added the users
    doctor/patient/admin with the published password (patient linked to a real loaded record)."""
    data = tmp_path / "data"
    bundle = tmp_path / "p.ndjson"
    bundle.write_text(json.dumps({"resourceType": "Patient", "id": "real-1", "name": [{"family": "Real"}]}) + "\n")
    loaded = subprocess.run([*EHRGATE, "load", str(bundle), "--data-dir", str(data), "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    out = subprocess.run([*EHRGATE, "demo", "--port", "0", "--mllp-port", "0", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "did not create" in out.stderr and "ehrgate serve" in out.stderr, out.stderr
    users = subprocess.run([*EHRGATE, "users", "list", "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert "doctor" not in users.stdout


def test_help_lists_commands() -> None:
    out = subprocess.run([*EHRGATE, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for cmd in ("serve", "demo", "load"):
        assert cmd in out.stdout
    # where to look next once a message went in: the id from search, then show
    assert "ehrgate messages show ID" in out.stdout and "ehrgate channel list" in out.stdout


@pytest.mark.slow
def test_sigterm_stops_the_engine_and_the_bulk_worker_cleanly(tmp_path: Path) -> None:
    """uvicorn re-raises SIGTERM once HTTP has shut down, so nothing after its ``serve()`` runs: the
    engine's channels and the bulk worker must be stopped by the shutdown hooks (docs/engine.md)."""
    proc, _base = _start(["serve", "--mllp-port", "0"], tmp_path)
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert "undeployed" in out, out
    assert "Traceback" not in out


def _admin_status(base: str, forwarded_for: str | None) -> int:
    request = urllib.request.Request(base.removesuffix("/fhir") + "/admin/channels")
    if forwarded_for:
        request.add_header("X-Forwarded-For", forwarded_for)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
@pytest.mark.parametrize(("trusted", "expected"), [("127.0.0.1,::1", 401), ("192.0.2.1", 200)])
def test_forwarded_for_counts_only_from_trusted_proxies(tmp_path: Path, trusted: str, expected: int) -> None:
    """A fresh install's admin API answers loopback without credentials. A request from a trusted
    proxy (loopback by default) counts as from the client X-Forwarded-For names - here a remote one,
    so it must sign in; when loopback is not a trusted proxy, the header is ignored."""
    proc, base = _start(["serve"], tmp_path, forwarded_allow_ips=trusted)
    try:
        assert _admin_status(base, None) == 200
        assert _admin_status(base, "203.0.113.5") == expected
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_once_ready_the_server_collects_garbage_less_often(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve``, when it is listening: what lives for the process is frozen out of the collector
    and the youngest generation's threshold is raised (gctuning.py), before the ready line's
    ``after_ready`` runs."""
    import asyncio
    import gc
    import importlib

    from ehrgate.gctuning import GEN0_THRESHOLD
    from ehrgate.settings import load_settings

    class Listening:
        started = False

        async def serve(self, sockets: Any = None) -> None:
            self.started = True

    cli_serve = importlib.import_module("ehrgate.cli.serve")  # the package's ``serve`` is the command
    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))  # the test process's heap stays as it is
    seen: list[int] = []
    settings = load_settings(None, overrides={"data_dir": str(tmp_path)}, environ={})
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        asyncio.run(cli_serve._serve(Listening(), settings, lambda _base: seen.append(gc.get_threshold()[0])))
    finally:
        gc.set_threshold(*before)
    assert frozen == [True] and seen == [GEN0_THRESHOLD]

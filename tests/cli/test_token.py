"""``ehrgate token`` and the demo's printed curl examples, with the API closed (auth_required)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ehrgate.cli import cli

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from ehrgate.settings import load_settings

    return load_settings(None, overrides={"data_dir": str(tmp_path / "data"), "auth_required": True}, environ={})


def test_token_for_the_demo_backend(store: Any, settings: Any, live_server: str) -> None:
    from ehrgate.smart.demo import seed_smart_demo

    seed_smart_demo(store, settings)
    args = ["token", "--data-dir", settings.data_dir, "--fhir-base", live_server]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["scope"] == "system/*.rs" and body["token_type"] == "Bearer" and body["expires_in"] > 0
    plain = CliRunner().invoke(cli, [*args, "--scope", "system/Patient.rs"])
    token = plain.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", token)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{live_server}/Patient", headers=headers).status_code == 200
    assert httpx.get(f"{live_server}/Observation", headers=headers).status_code == 403  # only Patient was asked for
    assert httpx.get(f"{live_server}/Patient").status_code == 401


def test_token_errors_are_sentences(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["token", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "No private key at" in missing.output and "ehrgate demo" in missing.output
    other = runner.invoke(cli, ["token", "--client-id", "etl", "--data-dir", str(tmp_path)])
    assert other.exit_code == 2 and "--key FILE is needed" in other.output
    from joserfc.jwk import ECKey

    key = tmp_path / "k.json"
    key.write_text(json.dumps(ECKey.generate_key("P-384", auto_kid=True).as_dict(private=True)))
    down = runner.invoke(cli, ["token", "--key", str(key), "--fhir-base", "http://127.0.0.1:9/fhir"])
    assert down.exit_code == 2 and "Cannot reach http://127.0.0.1:9/fhir" in down.output
    public = tmp_path / "pub.json"
    public.write_text(json.dumps(ECKey.generate_key("P-384", auto_kid=True).as_dict(private=False)))
    bad = runner.invoke(cli, ["token", "--key", str(public)])
    assert bad.exit_code == 2 and "does not hold a private EC or RSA JWK" in bad.output
    assert all("Traceback" not in r.output for r in (missing, other, down, bad))


@pytest.mark.slow
def test_demo_tips_work_with_auth_on(tmp_path: Path) -> None:
    """Run `ehrgate demo` as a user would (auth on), then run the printed TOKEN=… and curl lines."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    env.update({"EHRGATE_DEMO_PATIENTS": "5", "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"})
    proc = subprocess.Popen([str(BIN / "ehrgate"), "demo", "--port", str(port), "--mllp-port", "0",
                             "--data-dir", str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Stop with Ctrl+C"):
                break
        out = "".join(lines)
        assert "Stop with Ctrl+C" in out, out[-3000:]
        token_line = next(ln.strip() for ln in lines if ln.strip().startswith("TOKEN=$(ehrgate token"))
        assert "--data-dir" in token_line and f"--fhir-base http://127.0.0.1:{port}/fhir" in token_line
        curls = [ln.strip() for ln in lines if ln.strip().startswith("curl ") and "<id>" not in ln
                 and "identifier=DEMO-1001" not in ln]
        authed = [c for c in curls if 'Authorization: Bearer $TOKEN' in c]
        assert len(authed) == 3 and len(curls) == 4  # $everything names a real patient (was Patient/<id>)
        script = "set -euo pipefail\n" + token_line + "\n" + "\n".join(
            c.replace("curl ", "curl -sS -f -o /dev/null -w '%{http_code}\\n' ", 1) for c in curls)
        run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["200", "200", "200", "200"]
        bare = authed[0].replace('-H "Authorization: Bearer $TOKEN" ', "")
        unauth = subprocess.run(["bash", "-c", bare.replace("curl ", "curl -s -o /dev/null -w '%{http_code}' ", 1)],
                                capture_output=True, text=True, timeout=30)
        assert unauth.stdout == "401"  # the token is what makes them work
        token = subprocess.run(["bash", "-c", token_line + '\necho "$TOKEN"'], capture_output=True, text=True, env=env,
                               timeout=60, cwd=tmp_path).stdout.strip()
        assert token.count(".") == 2
        # The HL7 v2 lines: send the sample message the demo wrote, find its patient, see the message.
        send, search = (next(ln.strip() for ln in lines if ln.strip().startswith(prefix))
                        for prefix in ("ehrgate hl7 send ", "ehrgate messages search "))
        find = next(ln.strip() for ln in lines if "Patient?identifier=DEMO-1001" in ln)
        sent = subprocess.run(["bash", "-c", send], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert sent.returncode == 0 and "AA" in sent.stdout, sent.stdout + sent.stderr
        script = find.replace("curl ", "curl -sS -f ", 1)  # with the token from above ($TOKEN)
        deadline = time.monotonic() + 60  # ACKed on receipt: the FHIR write follows (later on a busy machine)
        while True:
            body = json.loads(subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                             env={**env, "TOKEN": token}, timeout=60, cwd=tmp_path).stdout)
            if body.get("total") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert body["total"] == 1 and body["entry"][0]["resource"]["name"][0]["family"] == "Sample"
        listed = subprocess.run(["bash", "-c", search], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert "ADT^A04" in listed.stdout and "SENT" in listed.stdout, listed.stdout + listed.stderr
        # the next printed line shows that message: every stage and the FHIR store's answer
        show = next(ln.strip() for ln in lines if ln.strip().startswith("ehrgate messages show ID "))
        show = show.split("   #")[0].replace(" ID ", f" {listed.stdout.split()[0]} ", 1)
        shown = subprocess.run(["bash", "-c", show], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert shown.returncode == 0 and "control id DEMO-A04-0001" in shown.stdout, shown.stdout + shown.stderr
        assert "-- FHIR bundle" in shown.stdout and "destination fhir-store: SENT" in shown.stdout
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=30)[0]
    assert token not in "".join(lines) + rest  # never in the server's output


def test_printed_commands_name_the_program_the_shell_can_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After `make demo` the virtualenv is not activated: the tips must say `.venv/bin/ehrgate`."""
    from ehrgate.cli.serve import _command_name

    exe = tmp_path / ".venv" / "bin" / "ehrgate"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/ehrgate", "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _command_name() == ".venv/bin/ehrgate"
    monkeypatch.setenv("PATH", str(exe.parent))
    assert _command_name() == "ehrgate"  # on PATH and the same program
    monkeypatch.setattr(sys, "argv", ["/somewhere/else/python", "-m", "ehrgate"])
    assert _command_name() == "ehrgate"

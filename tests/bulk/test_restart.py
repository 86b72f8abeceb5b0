"""Restart during an export, with real processes: ``ehrgate serve`` is killed (SIGKILL) in the middle of
an export; the restarted server resumes the job from its last checkpoint and completes it, with every
resource exactly once."""

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

EHRGATE = [sys.executable, "-m", "ehrgate"]
N = 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    env.update({"EHRGATE_AUTH_REQUIRED": "false", "EHRGATE_BULK_FILE_LINES": "1", "EHRGATE_BULK_WORKERS": "1"})
    log = tmp_path / f"server-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*EHRGATE, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if b"ready: FHIR base" in log.read_bytes():
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=20)
    raise AssertionError("server did not start:\n" + log.read_text())


def _request(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/fhir+json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.mark.slow
def test_killed_server_resumes_the_export_after_restart(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port)
    try:
        entries: list[dict[str, Any]] = [{"resource": {"resourceType": "Patient", "id": "pat"}, "request": {"method": "PUT", "url": "Patient/pat"}}]
        entries += [{
            "resource": {"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "x"},
                         "subject": {"reference": "Patient/pat"}},
            "request": {"method": "PUT", "url": f"Observation/o{i}"},
        } for i in range(N)]
        status, _, _ = _request(f"{base}/fhir", "POST", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert status == 200
        status, headers, _ = _request(f"{base}/fhir/Patient/$export?_type=Observation", headers={"Prefer": "respond-async"})
        assert status == 202
        status_url = headers["Content-Location"]
        deadline = time.monotonic() + 60
        progress = ""
        while time.monotonic() < deadline:
            status, headers, _ = _request(status_url)
            assert status == 202, "the export finished before the server could be killed"
            progress = headers.get("X-Progress", "")
            m = re.search(r"(\d+) resources written", progress)
            if m and int(m.group(1)) >= 50:
                break
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no shutdown, the job keeps its lease
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)

    proc = _start(tmp_path, port)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, headers, body = _request(status_url)
            if status != 202:
                break
            time.sleep(0.2)
        assert status == 200, body
        manifest = json.loads(body)
        assert sum(e["count"] for e in manifest["output"]) == N
        names = [e["url"].rsplit("/", 1)[1] for e in manifest["output"]]
        assert len(names) == len(set(names)) == N  # one resource per file at bulk_file_lines=1
        ids = set()
        for entry in manifest["output"][:: max(1, N // 300)]:
            status, _, content = _request(entry["url"])
            assert status == 200
            ids.add(json.loads(content)["id"])
        assert len(ids) == len(manifest["output"][:: max(1, N // 300)])
        data = tmp_path / "data" / "bulk" / status_url.rsplit("/", 1)[1]
        assert len(list(data.rglob("*.ndjson"))) == N, "no file left over from the killed attempt"
        assert {p.parent.name for p in data.rglob("*.ndjson")} == {"a1", "a2"}, "the restart resumed, not restarted"
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""On PostgreSQL, any EHRGate process may run an export: real ``ehrgate serve`` processes sharing one
database and one export directory.

Process A answers the API and runs no exports (``bulk_workers=0``); B runs the export and is killed
(SIGKILL) in the middle of it; C, a third process, takes the job over once B's lease lapses and finishes
it. The kick-off, the status and the downloads all go to A, which never ran a line of the export.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bulk.test_restart import _free_port, _request

EHRGATE = [sys.executable, "-m", "ehrgate"]
N = 1500

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _serve(tmp_path: Path, name: str, database_url: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    env.update({
        "EHRGATE_AUTH_REQUIRED": "false",
        "EHRGATE_BULK_FILE_LINES": "1",
        "EHRGATE_BULK_WORKERS": str(workers),
        "EHRGATE_BULK_DIR": str(tmp_path / "shared-exports"),
        "EHRGATE_BULK_LEASE_SECONDS": "3",
    })
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*EHRGATE, "serve", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(tmp_path / name), "--database-url", database_url],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if b"ready: FHIR base" in log.read_bytes():
            return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=20)
    raise AssertionError(f"server {name} did not start:\n" + log.read_text())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_export_kicked_off_at_one_process_is_run_and_taken_over_by_others(tmp_path: Path, database_url: str) -> None:
    api, base = _serve(tmp_path, "a", database_url, workers=0)
    procs = [api]
    try:
        entries = [{"resource": {"resourceType": "Patient", "id": "pat"}, "request": {"method": "PUT", "url": "Patient/pat"}}]
        entries += [{
            "resource": {"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "x"},
                         "subject": {"reference": "Patient/pat"}},
            "request": {"method": "PUT", "url": f"Observation/o{i}"},
        } for i in range(N)]
        status, _, body = _request(f"{base}/fhir", "POST", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert status == 200, body
        status, headers, _ = _request(f"{base}/fhir/Patient/$export?_type=Observation", headers={"Prefer": "respond-async"})
        assert status == 202
        status_url = headers["Content-Location"]
        assert status_url.startswith(base)

        time.sleep(1.0)
        status, headers, _ = _request(status_url)
        assert status == 202
        assert not re.search(r"[1-9]\d* resources written", headers.get("X-Progress", "")), \
            "process A runs no exports, so nothing may have been written before B starts"

        runner, _ = _serve(tmp_path, "b", database_url, workers=1)
        procs.append(runner)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, headers, _ = _request(status_url)
            assert status == 202, "the export finished before B could be killed"
            m = re.search(r"(\d+) resources written", headers.get("X-Progress", ""))
            if m and int(m.group(1)) >= 30:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("B never started the export")
        runner.kill()  # no shutdown: the job keeps B's lease until it lapses
        runner.wait(timeout=20)
        status, _, _ = _request(status_url)
        assert status == 202, "B finished the export before it was killed: nothing was left to take over"

        taker, _ = _serve(tmp_path, "c", database_url, workers=1)
        procs.append(taker)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, headers, body = _request(status_url)
            if status != 202:
                break
            time.sleep(0.2)
        assert status == 200, body
        manifest = json.loads(body)
        assert sum(e["count"] for e in manifest["output"]) == N
        urls = [e["url"] for e in manifest["output"]]
        assert all(u.startswith(base + "/") for u in urls), "files are served by the process that was asked"
        ids = set()
        for url in urls[:: max(1, N // 50)]:
            status, _, content = _request(url)
            assert status == 200
            ids.add(json.loads(content)["id"])
        assert len(ids) == len(urls[:: max(1, N // 50)])
        job_dir = tmp_path / "shared-exports" / status_url.rsplit("/", 1)[1]
        assert len(list(job_dir.rglob("*.ndjson"))) == N, "nothing left over from B's interrupted attempt"
        assert len({p.parent.name for p in job_dir.rglob("*.ndjson")}) == 2, "C resumed B's attempt"
    finally:
        for proc in procs:
            _stop(proc)

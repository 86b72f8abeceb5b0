"""``ehrgate bulk export`` against a live EHRGate (uvicorn on 127.0.0.1) with SMART authorization on:
a registered backend service signs its token request (private_key_jwt), exports, and downloads."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from joserfc.jwk import RSAKey

from ehrgate.bulk.client import BulkClient, BulkClientError, ExportRequest
from ehrgate.cli import cli
from ehrgate.fhir.store.service import Store

from .conftest import seed


@dataclass
class Live:
    base: str
    app: Any
    store: Store
    key_path: Path


def _serve(store: Store, settings: Any, auth: bool) -> Iterator[tuple[str, Any]]:
    import uvicorn

    from ehrgate.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings.replace(base_url=base, port=port, auth_required=auth, bulk_retry_after=1), store)
    app.state.bulk.start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield base + "/fhir", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.bulk.stop()
        sock.close()


@pytest.fixture
def live(store: Store, settings: Any, tmp_path: Path) -> Iterator[Live]:
    from ehrgate.smart import apps as A

    seed(store)
    key = RSAKey.generate_key(2048, auto_kid=True)
    with store.writer() as w:
        A.add_app(w.conn, A.App("exporter", "Bulk exporter", "confidential-asymmetric",
                                jwks={"keys": [key.as_dict(private=False)]}, scopes="system/*.rs"), now=int(time.time()))
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(key.as_pem(private=True))
    for base, app in _serve(store, settings, auth=True):
        yield Live(base, app, store, key_path)


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["bulk", "export", *args, "--quiet"], catch_exceptions=False)


def jobs_count(store: Store) -> int:
    with store.reader() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM bulk_job")).scalar_one())


def test_export_with_backend_services(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = run_cli("--base", live.base, "--client-id", "exporter", "--key", str(live.key_path),
                     "--group", "g1", "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["requiresAccessToken"] is True
    patients = [json.loads(line) for line in (out / "Patient-1.ndjson").read_text().splitlines()]
    assert {p["id"] for p in patients} == {"p1", "p2"}
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    for name, digest in sums.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert "resources in" in result.output


def test_rerun_resumes_the_same_export_and_partial_files(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "export"
    args = ("--base", live.base, "--client-id", "exporter", "--key", str(live.key_path), "--type", "Observation",
            "--out", str(out))
    assert run_cli(*args).exit_code == 0
    assert jobs_count(live.store) == 1
    full = (out / "Observation-1.ndjson").read_bytes()
    # a download cut off half-way: the next run continues it with Range
    (out / "Observation-1.ndjson").unlink()
    (out / "Observation-1.ndjson.part").write_bytes(full[: len(full) // 2])
    assert run_cli(*args).exit_code == 0
    assert jobs_count(live.store) == 1, "the rerun resumed the recorded export instead of starting another"
    assert (out / "Observation-1.ndjson").read_bytes() == full
    assert not (out / "Observation-1.ndjson.part").exists()
    assert run_cli(*args, "--fresh").exit_code == 0
    assert jobs_count(live.store) == 2


def test_polling_honours_retry_after(live: Live, tmp_path: Path) -> None:
    from ehrgate.cli.bulk import _load_key, _token_provider

    waits: list[float] = []
    token = _token_provider(live.base, "exporter", _load_key(str(live.key_path), None), "system/*.rs", None)
    client = BulkClient(live.base, token, sleep=lambda s: (waits.append(s), time.sleep(0.05)))
    live.app.state.bulk.worker.stop()  # hold the job in the queue for a few polls
    status = client.kickoff(ExportRequest(types=("Patient",)))
    thread = threading.Thread(target=lambda: (time.sleep(0.3), live.app.state.bulk.worker.start()))
    thread.start()
    manifest = client.poll(status)
    thread.join()
    assert waits and all(w == 1.0 for w in waits), waits  # bulk_retry_after=1 in this server
    assert manifest["output"][0]["type"] == "Patient"


def test_clean_errors(live: Live, tmp_path: Path) -> None:
    result = run_cli("--base", live.base, "--client-id", "exporter", "--key", str(live.key_path),
                     "--type", "Nonsense", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "refused (HTTP 400)" in result.output and "Nonsense" in result.output
    result = run_cli("--base", live.base, "--out", str(tmp_path / "y"))
    assert result.exit_code == 2 and "HTTP 401" in result.output
    other = RSAKey.generate_key(2048, auto_kid=True)
    (tmp_path / "other.pem").write_bytes(other.as_pem(private=True))
    result = run_cli("--base", live.base, "--client-id", "exporter", "--key", str(tmp_path / "other.pem"),
                     "--out", str(tmp_path / "z"))
    assert result.exit_code == 2 and "The token endpoint refused client 'exporter' (HTTP 401)" in result.output
    result = run_cli("--base", "http://127.0.0.1:1/fhir", "--out", str(tmp_path / "w"))
    assert result.exit_code == 2 and "Cannot reach" in result.output
    assert "Traceback" not in result.output
    result = run_cli("--base", live.base, "--client-id", "exporter", "--out", str(tmp_path / "v"))
    assert result.exit_code == 2 and "both --client-id and --key" in result.output


def test_a_server_without_auth(store: Store, settings: Any, tmp_path: Path) -> None:
    seed(store)
    for base, _app in _serve(store, settings, auth=False):
        out = tmp_path / "open"
        result = run_cli("--base", base, "--patient", "--type", "Patient,Condition", "--since", "2000-01-01T00:00:00Z",
                         "--out", str(out))
        assert result.exit_code == 0, result.output
        assert len((out / "Patient-1.ndjson").read_text().splitlines()) == 3
        assert len((out / "Condition-1.ndjson").read_text().splitlines()) == 3
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["deleted"] == []


def test_download_names_never_come_from_the_server(tmp_path: Path) -> None:
    client = BulkClient("http://x/fhir")
    manifest = {"output": [{"type": "../../etc/passwd", "url": "http://x/a/../../b"},
                           {"type": "Patient", "url": "http://x/f/..%2Fevil"}],
                "error": [{"type": "OperationOutcome", "url": "http://x/e"}]}
    names = [d.path.name for d in client.plan_downloads(manifest, tmp_path)]
    assert names == ["etcpasswd-1.ndjson", "Patient-1.ndjson", "error-OperationOutcome-1.ndjson"]
    with pytest.raises(BulkClientError):
        client.plan_downloads({"output": [{"type": "Patient"}]}, tmp_path)

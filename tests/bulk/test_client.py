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


class _Flaky:
    """A Bulk Data server that misbehaves the way networks and proxies do, on a real socket:
    a status URL that first answers 503 (transient), and a file whose first download is cut off
    after half its bytes (the Content-Length promised all of them)."""

    FILE = b"".join(b'{"resourceType":"Patient","id":"p%d"}\n' % i for i in range(200))

    def __init__(self, *, count: bool, status_errors: int = 1, cuts: int = 1, throttles: int = 0,
                 retry_after: str = "3") -> None:
        import http.server

        flaky = self
        self.requests: list[tuple[str, str | None]] = []
        self.status_errors, self.cuts, self.throttles = status_errors, cuts, throttles

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                flaky.requests.append((self.path, self.headers.get("Range")))
                if self.path == "/status":
                    if flaky.status_errors:
                        flaky.status_errors -= 1
                        body = json.dumps({"resourceType": "OperationOutcome", "issue": [
                            {"severity": "error", "code": "transient", "diagnostics": "busy"}]}).encode()
                        self.send_response(503)
                        self.send_header("Retry-After", retry_after)
                    else:
                        entry: dict[str, Any] = {"type": "Patient", "url": f"{flaky.base}/file"}
                        if count:
                            entry["count"] = 200
                        body = json.dumps({"transactionTime": "2026-01-01T00:00:00Z", "request": "x",
                                           "requiresAccessToken": False, "output": [entry], "error": []}).encode()
                        self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if flaky.throttles:
                    flaky.throttles -= 1
                    self.send_response(429)
                    self.send_header("Retry-After", "7")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, start = flaky.FILE, 0
                ranged = self.headers.get("Range")
                if ranged:
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if flaky.cuts:
                    flaky.cuts -= 1
                    self.wfile.write(data[start:start + (len(data) - start) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("count", [True, False], ids=["with-count", "without-count"])
def test_a_cut_off_download_is_resumed_not_kept(tmp_path: Path, count: bool) -> None:
    """urllib returns a short body without an error when the connection closes early; the client
    must notice (Content-Length) and continue with Range, not keep half a file as the whole."""
    flaky = _Flaky(count=count, status_errors=0)
    try:
        client = BulkClient(flaky.base, sleep=lambda s: None, timeout=10)
        manifest = client.poll(f"{flaky.base}/status")
        (d,) = client.download_all(manifest, tmp_path)
    finally:
        flaky.close()
    assert (tmp_path / "Patient-1.ndjson").read_bytes() == _Flaky.FILE
    assert d.lines == 200 and d.resumed_from > 0
    assert [r for p, r in flaky.requests if p == "/file"][1] == f"bytes={len(_Flaky.FILE) // 2}-"


def test_a_throttled_download_waits_for_retry_after(tmp_path: Path) -> None:
    waits: list[float] = []
    flaky = _Flaky(count=True, status_errors=0, cuts=0, throttles=2)
    try:
        client = BulkClient(flaky.base, sleep=waits.append, timeout=10)
        (d,) = client.download_all(client.poll(f"{flaky.base}/status"), tmp_path)
    finally:
        flaky.close()
    assert waits == [7.0, 7.0] and d.lines == 200


def test_a_download_cut_off_every_time_is_left_to_resume(tmp_path: Path) -> None:
    flaky = _Flaky(count=False, status_errors=0, cuts=100)
    try:
        client = BulkClient(flaky.base, sleep=lambda s: None, timeout=10)
        manifest = client.poll(f"{flaky.base}/status")
        with pytest.raises(BulkClientError, match="Run the command again to resume"):
            client.download_all(manifest, tmp_path)
    finally:
        flaky.close()
    assert not (tmp_path / "Patient-1.ndjson").exists(), "a partial file must not look finished"
    assert (tmp_path / "Patient-1.ndjson.part").exists()


def test_polling_retries_a_transient_error_after_retry_after(tmp_path: Path) -> None:
    """export.html#response---error-status-1: an OperationOutcome with a transient code means
    "poll again later", not "the export failed"."""
    waits: list[float] = []
    flaky = _Flaky(count=True, status_errors=2, cuts=0)
    try:
        client = BulkClient(flaky.base, sleep=waits.append, timeout=10)
        manifest = client.poll(f"{flaky.base}/status")
    finally:
        flaky.close()
    assert manifest["output"][0]["type"] == "Patient"
    assert waits == [3.0, 3.0]


@pytest.mark.parametrize(("retry_after", "expected"), [("0", 1.0), ("86400", 120.0)], ids=["zero", "a-day"])
def test_polling_keeps_retry_after_between_a_floor_and_a_ceiling(retry_after: str, expected: float) -> None:
    """``Retry-After: 0`` must not make the client poll in a tight loop until --max-wait, nor a day
    make it sleep a day: waits stay within 1 s to 120 s."""
    waits: list[float] = []
    flaky = _Flaky(count=True, status_errors=2, cuts=0, retry_after=retry_after)
    try:
        client = BulkClient(flaky.base, sleep=waits.append, timeout=10)
        client.poll(f"{flaky.base}/status")
    finally:
        flaky.close()
    assert waits == [expected, expected]


def test_a_failed_export_is_not_retried(live: Live, tmp_path: Path) -> None:
    from ehrgate.cli.bulk import _load_key, _token_provider

    token = _token_provider(live.base, "exporter", _load_key(str(live.key_path), None), "system/*.rs", None)
    client = BulkClient(live.base, token, sleep=lambda s: time.sleep(0.05), max_wait=30)
    status = client.kickoff(ExportRequest(level="group", group_id="g1", types=("Patient",)))
    live.app.state.bulk.worker.stop()
    with live.store.writer() as w:  # the Group did not exist at the transaction time: the job fails
        w.conn.exec_driver_sql("UPDATE bulk_job SET transaction_time = 0")
    live.app.state.bulk.worker.start()
    with pytest.raises(BulkClientError, match="The export failed .HTTP 500.: Group/g1 no longer exists"):
        client.poll(status)


def test_a_throttled_kickoff_waits_for_retry_after(store: Store, settings: Any, tmp_path: Path) -> None:
    """429 at kick-off (this client has bulk_max_jobs exports): wait the server's Retry-After and try
    again, within --max-wait, instead of giving up."""
    seed(store)
    for base, app in _serve(store, settings.replace(bulk_max_jobs=1), auth=False):
        app.state.bulk.worker.stop()  # the first export stays queued
        first = BulkClient(base).kickoff(ExportRequest(types=("Patient",)))
        waits: list[float] = []

        def sleep(seconds: float, base: str = base, first: str = first, waits: list[float] = waits) -> None:
            waits.append(seconds)
            BulkClient(base).cancel(first)  # the other export goes away while we wait

        status = BulkClient(base, sleep=sleep, max_wait=60).kickoff(ExportRequest(types=("Patient",)))
        assert status != first and waits == [10.0]
        with pytest.raises(BulkClientError, match="429"):
            BulkClient(base, sleep=lambda s: None, max_wait=5).kickoff(ExportRequest(types=("Patient",)))


def test_a_manifest_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    """A server's manifest must not make the client read local files (urllib opens file: URLs)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private\n")
    client = BulkClient("http://x/fhir")
    for url in (secret.as_uri(), "ftp://x/a.ndjson", "/relative/Patient-1.ndjson"):
        with pytest.raises(BulkClientError, match="not an http"):
            client.download_all({"output": [{"type": "Patient", "url": url}], "requiresAccessToken": False},
                                tmp_path / "out")
    assert not any((tmp_path / "out").glob("*.ndjson"))
    with pytest.raises(BulkClientError, match="not an http"):  # a Content-Location that points at a local file
        client.poll(secret.as_uri())


def test_a_damaged_state_file_starts_a_new_export(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / ".bulk-export.json").write_text("{not json")
    result = run_cli("--base", live.base, "--client-id", "exporter", "--key", str(live.key_path), "--type", "Patient",
                     "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len((out / "Patient-1.ndjson").read_text().splitlines()) == 3


def test_an_unwritable_out_directory_is_a_sentence(live: Live, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("--base", live.base, "--client-id", "exporter", "--key", str(live.key_path), "--type", "Patient",
                     "--out", str(blocker / "export"))
    assert result.exit_code == 2, result.output
    assert "Cannot write" in result.output and "Traceback" not in result.output

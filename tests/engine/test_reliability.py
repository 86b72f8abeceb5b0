"""Reliability with real processes: kill -9 during a stream from 8 connections (repeated) loses no
ACKed message and writes none twice to the FHIR store; two processes on one PostgreSQL share queues.
Bounded in time; every listener on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ehrgate.engine import MessageStore
from ehrgate.fhir.store.engine import create_engine
from ehrgate.hl7 import HL7Error, MLLPClient, Peer, accept_ack, parse, start_mllp_server

from .conftest import hl7

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
BOTH = pytest.mark.parametrize("database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
                               indirect=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``ehrgate serve`` as a child process (PYTHONPATH has the repo, for the test channel functions)."""

    def __init__(self, args: list[str], tmp: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
        env.update(PYTHONPATH=str(REPO), EHRGATE_ENGINE_POLL_MS="50", EHRGATE_LOG_LEVEL="WARNING")
        self.proc = subprocess.Popen([sys.executable, "-m", "ehrgate", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"ready: FHIR base (\S+)/fhir", line)
            if m:
                self.base = m.group(1)
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep the pipe drained
                return
        self.proc.kill()
        raise AssertionError("server did not start:\n" + "".join(lines))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Stream:
    """8 connections sending unique messages until stopped; reconnects through restarts."""

    def __init__(self, port: int, connections: int = 8) -> None:
        self.port = port
        self.connections = connections
        self.acked: set[str] = set()
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _one(self, k: int) -> None:
        n = 0
        client: MLLPClient | None = None
        while not self.stop.is_set():
            try:
                if client is None:
                    client = await MLLPClient.connect("127.0.0.1", self.port, timeout=5)
                cid = f"K{k}-{n}"
                n += 1
                self.sent += 1
                ack = parse(await client.send(hl7(cid, patient=f"P{k}"), timeout=10))
                if ack.get("MSA-1") == "AA" and ack.get("MSA-2") == cid:
                    self.acked.add(cid)
            except (OSError, HL7Error):
                if client is not None:
                    await client.close()
                client = None
                await asyncio.sleep(0.05)
        if client is not None:
            await client.close()

    async def _run(self) -> None:
        await asyncio.gather(*(self._one(k) for k in range(self.connections)))

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)


def _basic_identifiers(url: str) -> Counter[str]:
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
                "WHERE r.res_type = 'Basic'")).all()
    finally:
        eng.dispose()
    return Counter(json.loads(bytes(r[0]))["identifier"][0]["value"] for r in rows)


@BOTH
def test_kill_9_during_a_stream_loses_no_acked_message(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "ehrgate.yaml"
    cfg.write_text(
        "channels:\n"
        "  rel:\n"
        f"    source: {{type: mllp, port: {port}}}\n"
        "    transform: [tests.engine.channels.sample:one_resource]\n"
        "    destinations:\n"
        "      store: {type: fhir_store, workers: 2}\n")
    args = ["--config", str(cfg), "--database-url", database_url, "--data-dir", str(tmp_path / "data")]
    server = Server(args, tmp_path)
    stream = Stream(port)
    started = time.monotonic()
    try:  # a restart that fails raises inside: the finally stops the stream and whatever runs
        for _ in range(3):
            time.sleep(1.5)
            server.kill9()
            server = Server(args, tmp_path)
        time.sleep(1.0)
        stream.finish()
        assert len(stream.acked) > 50, f"only {len(stream.acked)} messages were acknowledged"
        ms = MessageStore.open(database_url)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with ms.read() as conn:
                    rows = conn.execute(sa.text("SELECT control_id, status FROM eng_message WHERE channel = 'rel'")).all()
                if rows and all(r[1] in ("SENT", "ERROR", "FILTERED") for r in rows):
                    break
                time.sleep(0.2)
        finally:
            ms.close()
        stored = Counter(r[0] for r in rows)
        statuses = Counter(r[1] for r in rows)
        assert statuses == Counter({"SENT": len(rows)}), statuses
        missing = stream.acked - set(stored)
        assert not missing, f"{len(missing)} ACKed message(s) not in the store: {sorted(missing)[:5]}"
        assert all(c == 1 for c in stored.values())
        written = _basic_identifiers(database_url)
        twice = {k: v for k, v in written.items() if v > 1}
        assert not twice, f"written twice to the FHIR store: {twice}"
        assert set(written) == set(stored), "every stored message reached the FHIR store"
        assert time.monotonic() - started < 240
    finally:
        stream.stop.set()
        server.stop()


class SlowReceiver:
    """An MLLP receiver in a thread that takes 20 ms per message (so both engines get work)."""

    def __init__(self) -> None:
        self.got: list[str] = []
        ready = threading.Event()
        self.box: dict[str, Any] = {}

        async def handler(raw: bytes, peer: Peer) -> bytes:
            await asyncio.sleep(0.02)
            msg = parse(raw)
            self.got.append(msg.control_id)
            ack = accept_ack(msg, "accept", control_id="R", timestamp="20240401")
            assert ack is not None
            return ack.to_bytes()

        async def serve() -> None:
            server = await start_mllp_server(handler, "127.0.0.1", 0)
            self.box.update(port=server.port, loop=asyncio.get_running_loop(), stop=asyncio.Event())
            ready.set()
            await self.box["stop"].wait()
            server.close()
            await server.wait_closed()

        self.thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        self.port = int(self.box["port"])

    def close(self) -> None:
        self.box["loop"].call_soon_threadsafe(self.box["stop"].set)
        self.thread.join(10)


def _metric(base: str, name: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_processes_share_the_queues_on_postgresql(database_url: str, tmp_path: Path) -> None:
    receiver = SlowReceiver()
    cfg = tmp_path / "ehrgate.yaml"
    cfg.write_text(
        "channels:\n"
        "  shared:\n"
        "    source: http\n"
        "    destinations:\n"
        f"      peer: {{type: mllp, host: 127.0.0.1, port: {receiver.port}, timeout: 5}}\n")
    args = ["--config", str(cfg), "--database-url", database_url, "--data-dir", str(tmp_path / "data")]
    a = Server(args, tmp_path)
    try:
        b = Server(args, tmp_path)
    except BaseException:
        a.stop()
        receiver.close()
        raise
    try:
        ids = [f"S{i}" for i in range(80)]
        for cid in ids:  # every message goes into process A
            req = urllib.request.Request(f"{a.base}/channels/shared/messages", data=hl7(cid), method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.headers["X-HL7-Ack-Code"] == "AA"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(set(receiver.got)) < len(ids):
            time.sleep(0.1)
        assert sorted(receiver.got) == sorted(ids), "each message delivered exactly once"
        name = 'ehrgate_deliveries_total{channel="shared",destination="peer",outcome="sent"}'
        sent_a, sent_b = _metric(a.base, name), _metric(b.base, name)
        while time.monotonic() < deadline and sent_a + sent_b < len(ids):  # the peer has the last one a
            time.sleep(0.1)  # moment before its sender records the delivery
            sent_a, sent_b = _metric(a.base, name), _metric(b.base, name)
        assert sent_a + sent_b == len(ids)
        assert sent_b > 0, "process B took work from the shared queue"
    finally:
        a.stop()
        b.stop()
        receiver.close()

"""Peers EHRGate did not write: python-hl7's ``mllp_send`` sends to an engine channel and gets ACKs;
the engine's MLLP destination delivers to hl7apy's MLLP server."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.hl7 import accept_ack, parse

from .conftest import hl7, run
from .helpers import port_of, running, until


def test_python_hl7_mllp_send_to_a_channel(messages: MessageStore, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "mllp_send"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install hl7)")
    file = tmp_path / "three.hl7"
    file.write_bytes(b"".join(hl7(f"PY{i}", name="Gonçalves^Inês") for i in range(3)).replace(b"\r", b"\r\n"))

    async def body() -> None:
        chan = {"source": {"type": "mllp", "port": 0},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"adt": chan}) as eng:
            proc = await asyncio.create_subprocess_exec(
                str(script), "--loose", "-p", str(port_of(eng, "adt")), "-f", str(file), "127.0.0.1",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err
            acks = [parse(chunk.strip(b"\x0b\x1c\r\n")) for chunk in out.split(b"\x1c") if b"MSA" in chunk]
            assert [(a.get("MSA-1"), a.get("MSA-2")) for a in acks] == [("AA", "PY0"), ("AA", "PY1"), ("AA", "PY2")]
            await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="adt"))] == ["SENT"] * 3)
        stored = messages.search(SearchQuery(text="gonçalves"))
        assert len(stored) == 3
    run(body())


def test_mllp_destination_delivers_to_hl7apy(messages: MessageStore) -> None:
    from hl7apy.mllp import AbstractHandler
    from hl7apy.mllp import MLLPServer as Hl7apyServer

    got: list[str] = []

    class Accept(AbstractHandler):  # type: ignore[misc]
        def reply(self) -> str:
            incoming = parse(self.incoming_message)
            got.append(incoming.control_id)
            ack = accept_ack(incoming, "accept", control_id="APY-" + incoming.control_id, timestamp="20240401")
            assert ack is not None
            return "\x0b" + ack.to_er7() + "\x1c\r"

    apy = Hl7apyServer("127.0.0.1", 0, {"ADT^A01^ADT_A01": (Accept,)}, timeout=5)
    thread = threading.Thread(target=apy.serve_forever, daemon=True)
    thread.start()

    async def body() -> None:
        chan = {"source": {"type": "mllp", "port": 0}, "ack": "on_processed", "destinations": {
            "apy": {"type": "mllp", "host": "127.0.0.1", "port": apy.server_address[1], "timeout": 5}}}
        async with running(messages, {"adt": chan}) as eng:
            from .helpers import send

            raws = [hl7(f"APY{i}", kind="ADT^A01^ADT_A01", name="Müller^Jürgen") for i in range(3)]
            assert await send(port_of(eng, "adt"), raws) == ["AA"] * 3
        rows = messages.search(SearchQuery(channel="adt"))
        assert [r["status"] for r in rows] == ["SENT"] * 3
        detail = messages.get(rows[0]["id"])
        assert detail is not None and b"APY-APY2" in detail["deliveries"][0]["response"]

    try:
        run(body())
    finally:
        apy.shutdown()
        apy.server_close()
        thread.join(5)
    assert got == ["APY0", "APY1", "APY2"]


PEERS = Path(__file__).resolve().parent / "peers"


def test_simple_hl7_client_sends_to_a_channel(messages: MessageStore, tmp_path: Path) -> None:
    """npm's simple-hl7 TCP client (tests/engine/peers: package.json, package-lock.json, send.js)."""
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs; then npm ci in tests/engine/peers)")
    if not (PEERS / "node_modules" / "simple-hl7").is_dir():
        pytest.skip(f"{PEERS / 'node_modules'} is absent: run `npm ci` in {PEERS} (.ci/run does)")

    async def body() -> None:
        chan = {"source": {"type": "mllp", "port": 0},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"adt": chan}) as eng:
            proc = await asyncio.create_subprocess_exec(
                node, str(PEERS / "send.js"), "127.0.0.1", str(port_of(eng, "adt")), "3", "NODE",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=PEERS)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            import json

            acks = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
            assert acks == [{"msa1": "AA", "msa2": f"NODE{i}"} for i in range(3)]
            await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="adt"))] == ["SENT"] * 3)
        assert len(messages.search(SearchQuery(text="gonçalves"))) == 3
        [row] = messages.search(SearchQuery(control_id="NODE1"))
        detail = messages.get(row["id"])
        assert detail is not None and detail["patient_ids"] == ["NODE1"] and detail["sender"] == "NODEAPP^NODEFAC"
    run(body())

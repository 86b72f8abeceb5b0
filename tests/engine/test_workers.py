"""``workers``: a channel's is the default of its destinations that set none; a destination's own wins;
neither set is one worker (before, the channel's ``workers`` was parsed and never used)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ehrgate.engine import MessageStore, load_channels
from ehrgate.hl7 import Peer, accept_ack, parse, start_mllp_server

from .conftest import hl7, run
from .helpers import port_of, running, send, until


def channel(**extra: Any) -> dict[str, Any]:
    return {"source": {"type": "mllp", "port": 0}, **extra}


@pytest.mark.parametrize(("chan", "dest", "expected"), [
    (None, None, 1),  # today's default is kept
    (3, None, 3),     # the channel's is the destinations' default
    (3, 1, 1),        # a destination's own wins
    (None, 2, 2),
])
def test_destination_workers_default_to_the_channels(tmp_path: Path, chan: int | None, dest: int | None,
                                                     expected: int) -> None:
    spec: dict[str, Any] = {"type": "file", "directory": "out"}
    if dest is not None:
        spec["workers"] = dest
    decl = channel(destinations={"out": spec})
    if chan is not None:
        decl["workers"] = chan
    cfg = load_channels({"channels": {"adt": decl}}, tmp_path)["adt"]
    assert cfg.workers == chan
    assert cfg.destinations[0].workers == expected


class SlowPeer:
    """An MLLP receiver that holds each message ``hold`` seconds and records how many it held at once."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.now = 0
        self.most = 0
        self.received = 0
        self.server: Any = None

    async def _handle(self, raw: bytes, peer: Peer) -> bytes:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.hold)
        finally:
            self.now -= 1
        self.received += 1
        msg = parse(raw)
        ack = accept_ack(msg, "accept", control_id="R" + msg.control_id, timestamp=datetime.now(UTC))
        assert ack is not None
        return ack.to_bytes()

    async def start(self) -> int:
        self.server = await start_mllp_server(self._handle, "127.0.0.1", 0)
        return int(self.server.port)

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize(("chan", "dest", "expected"), [(3, None, 3), (3, 1, 1), (None, None, 1)])
def test_channel_workers_deliver_in_parallel(messages: MessageStore, chan: int | None, dest: int | None,
                                             expected: int) -> None:
    """Three messages sent 0.15 s apart to a receiver that takes 1 s each: with the channel's
    ``workers: 3`` they are delivered at once (three connections), with one worker one after the other."""
    async def body() -> None:
        peer = SlowPeer(hold=1.0)
        port = await peer.start()
        out: dict[str, Any] = {"type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 10}
        if dest is not None:
            out["workers"] = dest
        decl = channel(destinations={"peer": out})
        if chan is not None:
            decl["workers"] = chan
        try:
            async with running(messages, {"adt": decl}) as eng:
                for i in range(3):
                    assert await send(port_of(eng, "adt"), [hl7(f"W{i}")]) == ["AA"]
                    await asyncio.sleep(0.15)
                await until(lambda: peer.received == 3, what="3 delivered")
        finally:
            await peer.stop()
        assert peer.most == expected
    run(body())

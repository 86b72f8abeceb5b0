"""Test helpers: a running Engine on the test's loop, an MLLP receiver to deliver to, senders."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ehrgate.engine import Engine, MessageStore, load_channels
from ehrgate.hl7 import HL7Error, MLLPClient, Peer, accept_ack, build_ack, parse, start_mllp_server

FAST = SimpleNamespace(engine_poll_ms=50, engine_lease_seconds=30, engine_duplicate_window=3600,
                       engine_batch_size=500, engine_alert_interval=3600, engine_retention_interval=3600)


@contextlib.asynccontextmanager
async def running(messages: MessageStore, channels: dict[str, Any], *, fhir_store: Any = None,
                  base: Path | None = None, settings: Any = FAST, tracing: Any = None) -> AsyncIterator[Engine]:
    cfgs = load_channels({"channels": channels}, base or Path("."))
    engine = Engine(messages, cfgs, fhir_store=fhir_store, settings=settings, loader=lambda: cfgs, tracing=tracing)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def port_of(engine: Engine, channel: str) -> int:
    port = engine.runtimes[channel].port
    assert port is not None
    return port


async def send(port: int, raws: list[bytes], *, connections: int = 1, timeout: float = 20) -> list[str]:
    """Send over ``connections`` parallel connections; returns MSA-1 of each ACK in input order."""
    codes: list[str] = [""] * len(raws)

    async def one(k: int) -> None:
        async with await MLLPClient.connect("127.0.0.1", port, timeout=timeout) as client:
            for i in range(k, len(raws), connections):
                ack = parse(await client.send(raws[i]))
                with contextlib.suppress(HL7Error):
                    assert ack.get("MSA-2") == parse(raws[i]).control_id
                codes[i] = ack.get("MSA-1")

    await asyncio.gather(*(one(k) for k in range(connections)))
    return codes


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 20.0,
                what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Receiver:
    """An MLLP listener standing in for a downstream system. ``answer(raw) -> 'AA'|'AE'|'AR'|'slow'``
    ('slow': no answer for 3 s, so the sender times out and retries; the message is not recorded)."""

    def __init__(self, answer: Callable[[bytes], str] | None = None) -> None:
        self.answer = answer or (lambda raw: "AA")
        self.received: list[bytes] = []
        self.server: Any = None

    async def _handle(self, raw: bytes, peer: Peer) -> bytes:
        what = self.answer(raw)
        msg = parse(raw)
        if what == "slow":
            await asyncio.sleep(3)
            raise ConnectionResetError("too late")
        self.received.append(raw)
        if what == "AA":
            ack = accept_ack(msg, "accept", control_id="R" + msg.control_id, timestamp=datetime.now(UTC))
            assert ack is not None
        else:
            ack = build_ack(msg, what, control_id="R" + msg.control_id, timestamp=datetime.now(UTC),
                            text="receiver says no")
        return ack.to_bytes()

    async def start(self, port: int = 0) -> int:
        self.server = await start_mllp_server(self._handle, "127.0.0.1", port)
        return int(self.server.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def control_ids(self) -> list[str]:
        return [parse(r).control_id for r in self.received]


def two_runs(messages: MessageStore, mid: int, *, by: str = "olga") -> None:
    """Give finished message ``mid`` the history of a reprocess: run 1 failed at destination 'peer'
    (attempt 1 ERROR), ``by`` reprocessed it, run 2 sent it (attempt 1 SENT)."""
    import sqlalchemy as sa

    from ehrgate.engine.access import Actor

    def attempt(outcome: str, status: str) -> None:
        with messages.write() as conn:
            now = messages.clock()
            conn.execute(sa.text("INSERT INTO eng_attempt (message_id, destination, number, at, outcome, duration_ms, "
                                 "error) VALUES (:m, 'peer', 1, :at, :o, 3, :e)"),
                         {"m": mid, "at": now, "o": outcome, "e": "refused" if status == "ERROR" else None})
            conn.execute(sa.text("DELETE FROM eng_delivery WHERE message_id = :m"), {"m": mid})
            conn.execute(sa.text("INSERT INTO eng_delivery (message_id, destination, status, attempts, updated_at) "
                                 "VALUES (:m, 'peer', :s, 1, :at)"), {"m": mid, "s": status, "at": now})
            conn.execute(sa.text("UPDATE eng_message SET status = :s WHERE id = :m"), {"s": status, "m": mid})
            conn.execute(sa.text("DELETE FROM eng_queue WHERE message_id = :m"), {"m": mid})

    attempt("ERROR", "ERROR")
    assert messages.reprocess([mid], actor=Actor(by, "operator", "cli"))[0] == [mid]
    attempt("SENT", "SENT")

"""Enhanced-mode acknowledgments (HL7 v2.5 section 2.9.3) on both sides of the engine.

Receiving: the accept ACK (CA) as soon as the message is stored, when MSH-15 asks for it, then the
application ACK (AA/AE) once it is processed, when MSH-16 asks for it - on the same connection.
Sending (MLLP destination): CA means accepted; with MSH-16 AL it waits for the application ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.hl7 import MLLPDecoder, Peer, build_ack, frame, parse, start_mllp_server
from ehrgate.hl7.mllp import Frame

from .conftest import hl7, run
from .helpers import port_of, running, until


def enhanced(control_id: str, accept: str, application: str, *, extra: str = "") -> bytes:
    raw = hl7(control_id, extra=extra)
    head, rest = raw.split(b"\r", 1)
    fields = head.split(b"|")
    fields += [b""] * (19 - len(fields))
    fields[14], fields[15] = accept.encode(), application.encode()  # MSH-15 and MSH-16 (fields[0] is 'MSH')
    return b"|".join(fields) + b"\r" + rest


class Conn:
    """A raw MLLP connection that shows every frame the server sends (MLLPClient returns one per send)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = MLLPDecoder()
        self.frames: list[bytes] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[Conn]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            yield cls(reader, writer)
        finally:
            writer.close()

    async def send(self, raw: bytes) -> None:
        self.writer.write(frame(raw))
        await self.writer.drain()

    async def next(self, timeout: float = 10) -> tuple[str, str]:
        """(MSA-1, MSA-2) of the next frame."""
        async def read() -> bytes:
            while not self.frames:
                data = await self.reader.read(65536)
                assert data, "the server closed the connection"
                self.frames += [e.payload for e in self.decoder.feed(data) if isinstance(e, Frame)]
            return self.frames.pop(0)
        ack = parse(await asyncio.wait_for(read(), timeout))
        return ack.get("MSA-1"), ack.get("MSA-2")


def file_channel(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"source": {"type": "mllp", "port": 0}, "ack_timeout": 10,
            "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}, **extra}


def test_accept_ack_on_receipt_then_application_ack_after_processing(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        async with running(messages, {"adt": file_channel(tmp_path)}) as eng, Conn.open(port_of(eng, "adt")) as c:
            await c.send(enhanced("E1", "AL", "AL"))
            assert await c.next() == ("CA", "E1")
            assert await c.next() == ("AA", "E1")
            assert [r["status"] for r in messages.search(SearchQuery(control_id="E1"))] == ["SENT"]
            # the channel's ack setting is for original mode; an original-mode message still gets one AA
            await c.send(hl7("O1"))
            assert await c.next() == ("AA", "O1")
    run(body())


@pytest.mark.parametrize(("accept", "application", "expected"), [
    ("NE", "AL", [("AA", "N1")]),          # no accept ACK: only the application ACK
    ("AL", "NE", [("CA", "N1")]),          # no application ACK
    ("SU", "ER", [("CA", "N1")]),          # success: accept ACK only, no application ACK (ER)
    ("ER", "SU", [("AA", "N1")]),          # success: no accept ACK (ER), application ACK (SU)
])
def test_msh15_and_msh16_choose_the_frames(messages: MessageStore, tmp_path: Path, accept: str, application: str,
                                           expected: list[tuple[str, str]]) -> None:
    async def body() -> None:
        async with running(messages, {"adt": file_channel(tmp_path)}) as eng, Conn.open(port_of(eng, "adt")) as c:
            await c.send(enhanced("N1", accept, application))
            got = [await c.next() for _ in expected]
            assert got == expected
            # nothing else follows: the next message's first answer is its own
            await c.send(hl7("N2"))
            assert await c.next() == ("AA", "N2")
    run(body())


def test_application_error_is_ae_after_the_ca(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        chan = file_channel(tmp_path, transform=[{"step": "map_table", "path": "PV1-3.1", "table": {"X": "Y"},
                                                  "on_missing": "error"}])
        async with running(messages, {"adt": chan}) as eng, Conn.open(port_of(eng, "adt")) as c:
            await c.send(enhanced("F1", "AL", "ER", extra="PV1|1|I|WARD9\r"))
            assert await c.next() == ("CA", "F1")
            assert await c.next() == ("AE", "F1")
            [row] = messages.search(SearchQuery(control_id="F1"))
            assert row["status"] == "ERROR"
    run(body())


# -- the sending side --------------------------------------------------------------------------


class EnhancedReceiver:
    """An MLLP listener answering with several frames per message: ``script(raw) -> [MSA-1 codes]``,
    each code a frame ('stale' sends an AA for another control ID first)."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.server: Any = None

    async def _handle(self, raw: bytes, peer: Peer) -> AsyncIterator[bytes]:
        msg = parse(raw)
        for code in self.script(raw):
            if code == "pause":
                await asyncio.sleep(0.2)
                continue
            original = parse(hl7("OTHER")) if code == "stale" else msg
            ack = build_ack(original, "AA" if code == "stale" else code, control_id="R", timestamp=datetime.now(UTC),
                            text="receiver says no" if code in ("AE", "CE") else "")
            yield ack.to_bytes()

    async def start(self) -> int:
        self.server = await start_mllp_server(self._handle, "127.0.0.1", 0)
        return int(self.server.port)

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def test_mllp_destination_waits_for_the_application_ack(messages: MessageStore) -> None:
    def script(raw: bytes) -> list[str]:
        cid = parse(raw).control_id
        return {"D1": ["CA", "pause", "AA"], "D2": ["CA", "AE"], "D3": ["CE"], "D4": ["stale", "CA", "AA"],
                "D5": ["CA"], "D6": ["CA"]}[cid]

    async def body() -> None:
        receiver = EnhancedReceiver(script)
        port = await receiver.start()
        try:
            chan = {"source": {"type": "mllp", "port": 0}, "destinations": {
                "peer": {"type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 1,
                         "retry": {"max_attempts": 1}}}}
            async with running(messages, {"out": chan}) as eng, Conn.open(port_of(eng, "out")) as c:
                ours = {}
                for cid, mode in (("D1", "AL"), ("D2", "AL"), ("D3", "AL"), ("D4", "AL"), ("D5", "ER"), ("D6", "AL")):
                    await c.send(enhanced(cid, "AL", mode, extra=""))
                    assert await c.next() == ("CA", cid)
                    if mode == "AL":  # our application ACK follows the delivery's outcome
                        ours[cid] = (await c.next())[0]
                assert ours == {"D1": "AA", "D2": "AE", "D3": "AE", "D4": "AA", "D6": "AA"}

                def status(cid: str) -> str:
                    rows = messages.search(SearchQuery(control_id=cid))
                    return rows[0]["status"] if rows else ""

                await until(lambda: status("D5") in ("SENT", "ERROR"), what="D5 delivered")
            outcome = {f"D{i}": messages.get(messages.search(SearchQuery(control_id=f"D{i}"))[0]["id"])
                       for i in range(1, 7)}
            delivery = {cid: got["deliveries"][0] for cid, got in outcome.items() if got}
            assert delivery["D1"]["status"] == "SENT" and b"MSA|CA|D1" in delivery["D1"]["response"] \
                and b"MSA|AA|D1" in delivery["D1"]["response"]
            assert delivery["D2"]["status"] == "ERROR" and "answered AE: receiver says no" in delivery["D2"]["last_error"]
            assert delivery["D3"]["status"] == "ERROR" and "answered CE" in delivery["D3"]["last_error"]
            assert delivery["D4"]["status"] == "SENT" and b"OTHER" not in delivery["D4"]["response"]
            assert delivery["D5"]["status"] == "SENT" and delivery["D5"]["last_error"] is None  # MSH-16 ER: CA is enough
            # MSH-16 AL and no application ACK in time: accepted (CA), with a note; not sent again
            assert delivery["D6"]["status"] == "SENT" and "no application acknowledgment" in delivery["D6"]["last_error"]
            assert delivery["D6"]["attempts"] == 1
        finally:
            await receiver.stop()
    run(body(), timeout=90)

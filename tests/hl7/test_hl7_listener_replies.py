"""Handlers that answer a message with no frame or with several (an async generator), as enhanced-mode
acknowledgment needs; plain ``async def`` handlers keep working as before (test_hl7_listener.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ehrgate.hl7 import HL7Error, Peer, accept_ack, build_ack, frame, parse, start_mllp_server

from .test_hl7_listener import HOST, message, read_frame, run


async def replies(raw: bytes, peer: Peer) -> AsyncIterator[bytes]:
    """SILENT: nothing; TWO: CA then AA; EARLY: fails before answering; LATE: fails after one frame."""
    msg = parse(raw)
    cid = msg.control_id
    if cid == "EARLY":
        raise RuntimeError("secret detail")
    if cid == "EARLYHL7":
        raise HL7Error("Unknown patient (expected one on file)", code=204)
    if cid == "SILENT":
        return
    yield build_ack(msg, "CA", control_id="C-" + cid, timestamp="20240401").to_bytes()
    if cid == "LATE":
        raise RuntimeError("after the first frame")
    if cid == "TWO":
        await asyncio.sleep(0.05)
        ack = accept_ack(msg, "accept", control_id="A-" + cid, timestamp="20240401")
        assert ack is not None
        yield build_ack(msg, "AA", control_id="A-" + cid, timestamp="20240401").to_bytes()


def codes(*frames: bytes) -> list[tuple[str, str]]:
    return [(parse(f).get("MSA-1"), parse(f).get("MSA-2")) for f in frames]


def test_a_generator_handler_sends_none_one_or_several_frames_in_order() -> None:
    async def body() -> None:
        async with await start_mllp_server(replies, HOST, 0, idle_timeout=10) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(frame(message("SILENT")) + frame(message("TWO")) + frame(message("ONE")))
            got = [await read_frame(reader) for _ in range(3)]
            assert codes(*got) == [("CA", "TWO"), ("AA", "TWO"), ("CA", "ONE")]  # SILENT got nothing
            writer.close()
    run(body())


def test_a_generator_failing_before_its_first_frame_gets_an_ar() -> None:
    async def body() -> None:
        async with await start_mllp_server(replies, HOST, 0, idle_timeout=10) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(frame(message("EARLY")) + frame(message("EARLYHL7")) + frame(message("ONE")))
            early, coded, one = [parse(await read_frame(reader)) for _ in range(3)]
            assert early.get("MSA-1") == "AR" and early.get("ERR-3") == "207" and "secret" not in early.to_er7()
            assert coded.get("MSA-1") == "AR" and coded.get("ERR-3") == "204"
            assert one.get("MSA-1") == "CA"
            writer.close()
    run(body())


def test_a_generator_failing_after_a_frame_closes_only_its_connection() -> None:
    async def body() -> None:
        async with await start_mllp_server(replies, HOST, 0, idle_timeout=10) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            other_reader, other_writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(frame(message("LATE")) + frame(message("ONE")))
            assert codes(await read_frame(reader)) == [("CA", "LATE")]
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed; ONE is never answered
            other_writer.write(frame(message("ONE")))
            assert codes(await read_frame(other_reader)) == [("CA", "ONE")]
            writer.close()
            other_writer.close()
    run(body())

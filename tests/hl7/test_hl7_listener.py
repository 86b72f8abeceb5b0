"""ehrgate.hl7.listener and sender over real sockets on 127.0.0.1 (port 0), TLS and mutual TLS included.

Interoperability: python-hl7's MLLP clients talk to our server, and our client talks to hl7apy's
MLLPServer running in a thread.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ehrgate.hl7 import (
    AckTimeout,
    ConnectionClosed,
    MLLPClient,
    MLLPServer,
    ParseError,
    Peer,
    accept_ack,
    frame,
    parse,
    send_message,
    start_mllp_server,
)

T = TypeVar("T")
HOST = "127.0.0.1"


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run one async test body with a hard upper bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def message(control_id: str, name: str = "Everywoman^Eve", size: int = 0) -> bytes:
    note = f"\rNTE|1||{'x' * size}" if size else ""
    return (f"MSH|^~\\&|SENDER|FAC|EHRGATE|HUB|20240401||ADT^A01^ADT_A01|{control_id}|P|2.5.1||||||UNICODE UTF-8\r"
            f"PID|1||{control_id}^^^FAC^MR||{name}{note}\r").encode()


async def ack_handler(raw: bytes, peer: Peer) -> bytes:
    """Parse and acknowledge; MSA-3 echoes the patient name so tests can see what arrived."""
    msg = parse(raw)
    ack = accept_ack(msg, "accept", control_id="ACK-" + msg.control_id, timestamp="20240401120000")
    assert ack is not None
    ack.set("MSA-3", msg.get("PID-5") + " " + msg.get("PID-5.2"))
    return ack.to_bytes()


def slow_handler(delay: float) -> Callable[[bytes, Peer], Awaitable[bytes]]:
    async def handler(raw: bytes, peer: Peer) -> bytes:
        await asyncio.sleep(delay)
        return await ack_handler(raw, peer)
    return handler


async def server(handler: Callable[[bytes, Peer], Awaitable[bytes]] = ack_handler, **kwargs: Any) -> MLLPServer:
    kwargs.setdefault("idle_timeout", 10.0)
    return await start_mllp_server(handler, HOST, 0, control_id=lambda: "SRV-1", clock=lambda: _FIXED, **kwargs)


_FIXED = datetime(2024, 4, 1, 12, 0, tzinfo=UTC)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    data = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 5)
    assert data[:1] == b"\x0b"
    return data[1:-2]


# -- basics ---------------------------------------------------------------------------------------

def test_several_messages_on_one_connection_in_order() -> None:
    async def body() -> None:
        async with await server() as srv, await MLLPClient.connect(HOST, srv.port) as client:
            for n in range(5):
                ack = parse(await client.send(message(f"M{n}")))
                assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == f"M{n}"
                assert ack.get("MSH-10") == f"ACK-M{n}"
    run(body())


def test_utf8_names_survive_the_round_trip() -> None:
    async def body() -> None:
        async with await server() as srv:
            name = "Łukasiewicz^Zoë"
            ack = parse(await send_message(HOST, srv.port, message("U1", name)))
            assert ack.get("MSA-3") == "Łukasiewicz Zoë"
            text = message("U2", "Ñandú^José").decode()
            ack2 = parse(await send_message(HOST, srv.port, text))  # str is sent as MSH-18 says (UTF-8)
            assert ack2.get("MSA-3") == "Ñandú José"
            ack3 = parse(await send_message(HOST, srv.port, parse(message("U3", "Øre^Åse"))))
            assert ack3.get("MSA-3") == "Øre Åse"
    run(body())


def test_many_connections_in_parallel_each_in_order() -> None:
    async def one(port: int, c: int) -> None:
        async with await MLLPClient.connect(HOST, port) as client:
            for n in range(4):
                ack = parse(await client.send(message(f"C{c}-{n}")))
                assert ack.get("MSA-2") == f"C{c}-{n}"

    async def body() -> None:
        async with await server(slow_handler(0.05)) as srv:
            started = time.monotonic()
            await asyncio.gather(*(one(srv.port, c) for c in range(25)))
            elapsed = time.monotonic() - started
            assert elapsed < 25 * 4 * 0.05 / 3, f"connections were not served in parallel ({elapsed:.2f}s)"
    run(body())


def test_one_message_at_a_time_per_connection() -> None:
    """Two frames in one write: the second is handled only after the first is answered."""
    active = 0
    peak = 0

    async def counting(raw: bytes, peer: Peer) -> bytes:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return await ack_handler(raw, peer)

    async def body() -> None:
        async with await server(counting) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(frame(message("P1")) + frame(message("P2")) + frame(message("P3")))
            ids = [parse(await read_frame(reader)).get("MSA-2") for _ in range(3)]
            assert ids == ["P1", "P2", "P3"] and peak == 1
            writer.close()
    run(body())


@pytest.mark.parametrize("cuts", [
    [1], [2, 3], [-2], [-1], [-3, -2, -1], list(range(1, 40)),
])
def test_writes_split_anywhere_including_inside_the_frame_markers(cuts: list[int]) -> None:
    async def body() -> None:
        async with await server() as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            data = frame(message("S1"))
            points = sorted({c % len(data) for c in cuts} - {0})
            for a, b in zip([0, *points], [*points, len(data)], strict=True):
                writer.write(data[a:b])
                await writer.drain()
                await asyncio.sleep(0.005)
            assert parse(await read_frame(reader)).get("MSA-2") == "S1"
            writer.close()
    run(body())


# -- bad input never disturbs the connection or others -------------------------------------------

def test_oversize_message_gets_an_ar_and_the_connection_continues() -> None:
    async def body() -> None:
        async with await server(max_message_bytes=2000) as srv, await MLLPClient.connect(HOST, srv.port) as client:
            big = parse(await client.send(message("BIG", size=10_000)))
            assert big.get("MSA-1") == "AR" and big.get("MSA-2") == "BIG" and big.get("ERR-3") == "207"
            assert "exceeds the limit of 2000 bytes" in big.get("ERR-8")
            assert parse(await client.send(message("SMALL"))).get("MSA-1") == "AA"
    run(body())


def test_non_hl7_frame_gets_an_ar_and_nobody_else_notices() -> None:
    async def body() -> None:
        async with await server() as srv, await MLLPClient.connect(HOST, srv.port) as good, \
                await MLLPClient.connect(HOST, srv.port) as bad:
            assert parse(await good.send(message("G1"))).get("MSA-1") == "AA"
            ar = parse(await bad.send(b"this is not HL7 \xff\xfe"))
            assert ar.get("MSA-1") == "AR" and ar.get("ERR-3") == "100" and ar.get("MSH-10") == "SRV-1"
            assert ar.get("MSH-7") == "20240401120000+0000"
            broken = parse(await bad.send(message("B2").replace(b"PID|", b"pid|")))  # handler raises ParseError
            assert broken.get("MSA-1") == "AR" and broken.get("MSA-2") == "B2" and "Segment 2" in broken.get("ERR-8")
            assert parse(await bad.send(message("B3"))).get("MSA-1") == "AA"
            # the AR must be sendable even when its diagnostic cannot be encoded in the declared MSH-18
            jis = "MSH|^~\\&|A|B|C|D|1||ADT^A01|J1|P|2.5||||||ISO IR87\rpid|ü€\r".encode()
            jis_ar = parse(await bad.send(jis), charset="ISO IR87")
            assert jis_ar.get("MSA-1") == "AR" and jis_ar.get("MSH-18") == "ISO IR87" and "pid|??" in jis_ar.get("ERR-8")
            assert parse(await good.send(message("G2"))).get("MSA-1") == "AA"
    run(body())


def test_a_stray_fs_inside_a_message_gets_an_ar_for_the_whole_message() -> None:
    """A 0x1C inside a message ended its frame there: the first half was handed to the handler and
    answered AA - the sender took the whole message as delivered - and the rest closed the connection."""
    seen: list[bytes] = []

    async def recording(raw: bytes, peer: Peer) -> bytes:
        seen.append(raw)
        return await ack_handler(raw, peer)

    async def body() -> None:
        async with await server(recording) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            stray = message("FS1").replace(b"PID|1|", b"PID|1\x1c|")
            writer.write(b"\x0b" + stray + b"\x1c\r")
            ar = parse(await read_frame(reader))
            assert ar.get("MSA-1") == "AR" and ar.get("MSA-2") == "FS1" and ar.get("ERR-3") == "102"
            assert "0x1C at offset" in ar.get("ERR-8") and "\\X1C\\" in ar.get("ERR-8")
            writer.write(frame(message("FS2")))  # the connection carries on
            assert parse(await read_frame(reader)).get("MSA-1") == "AA"
            writer.close()
            assert [parse(r).control_id for r in seen] == ["FS2"]
    run(body())


async def _read_lone_fs_frame(reader: asyncio.StreamReader) -> bytes:
    data = await asyncio.wait_for(reader.readuntil(b"\x1c"), 5)
    assert data[:1] == b"\x0b"
    return data[1:-1]


def test_a_sender_that_ends_frames_with_fs_alone_gets_its_ack() -> None:
    """Some senders end a frame with FS and no CR, then wait: an FS that nothing follows for
    lone_fs_grace ends the frame. A CR that comes late is whitespace between frames; a frame whose FS
    and CR arrive in two writes is still one message; the connection carries on."""
    seen: list[str] = []

    async def recording(raw: bytes, peer: Peer) -> bytes:
        seen.append(parse(raw).control_id)
        return await ack_handler(raw, peer)

    async def body() -> None:
        async with await server(recording, lone_fs_grace=0.1) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            started = time.monotonic()
            writer.write(b"\x0b" + message("L1") + b"\x1c")  # FS alone, then waits
            ack = parse(await read_frame(reader))
            assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "L1"
            assert time.monotonic() - started < 2
            writer.write(b"\r")  # the CR, late: whitespace between frames
            writer.write(b"\x0b" + message("L2") + b"\x1c")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"\r")  # its CR in a second write within the grace: one frame, as always
            assert parse(await read_frame(reader)).get("MSA-2") == "L2"
            writer.write(frame(message("L3")))
            assert parse(await read_frame(reader)).get("MSA-2") == "L3"
            writer.close()
        assert seen == ["L1", "L2", "L3"]
    run(body())


def test_lone_fs_grace_zero_waits_for_the_byte_after_the_fs() -> None:
    async def body() -> None:
        async with await server(lone_fs_grace=0) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(b"\x0b" + message("Z1") + b"\x1c")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 0.6)
            writer.write(b"\r")
            assert parse(await read_frame(reader)).get("MSA-2") == "Z1"
            writer.close()
    run(body())


def test_our_client_takes_an_ack_that_ends_with_fs_alone() -> None:
    """A receiver whose ACKs end with FS and no CR: the client answers with that ACK after the grace
    (before, it waited for its whole timeout and closed the connection, and the message was sent
    again), and the next message on the connection gets its own ACK."""
    async def sloppy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                raw = await read_frame(reader)
            except (asyncio.IncompleteReadError, TimeoutError):
                break
            ack = parse(await ack_handler(raw, Peer(HOST, 0)))
            writer.write(b"\x0b" + ack.to_bytes() + b"\x1c")
            await writer.drain()
        writer.close()

    async def body() -> None:
        plain = await asyncio.start_server(sloppy, HOST, 0)
        port = plain.sockets[0].getsockname()[1]
        async with await MLLPClient.connect(HOST, port, timeout=3) as client:
            for n in range(2):
                started = time.monotonic()
                ack = parse(await client.send(message(f"C{n}")))
                assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == f"C{n}"
                assert time.monotonic() - started < 2
        plain.close()
        await plain.wait_closed()
    run(body())


def test_handler_failures_become_ar_207_without_details() -> None:
    async def crashing(raw: bytes, peer: Peer) -> bytes:
        if b"|CRASH|" in raw:
            raise RuntimeError("database password is hunter2")
        if b"|NONE|" in raw:
            return None  # type: ignore[return-value]
        return await ack_handler(raw, peer)

    async def body() -> None:
        async with await server(crashing) as srv, await MLLPClient.connect(HOST, srv.port) as client:
            ar = parse(await client.send(message("CRASH")))
            assert ar.get("MSA-1") == "AR" and ar.get("ERR-3") == "207" and "hunter2" not in ar.to_er7()
            assert parse(await client.send(message("NONE"))).get("ERR-3") == "207"
            assert parse(await client.send(message("FINE"))).get("MSA-1") == "AA"
    run(body())


def test_bytes_outside_frames_close_that_connection_cleanly() -> None:
    async def body() -> None:
        async with await server() as srv, await MLLPClient.connect(HOST, srv.port) as other:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(frame(message("F1")) + b"GET / HTTP/1.1\r\n\r\n")
            assert parse(await read_frame(reader)).get("MSA-2") == "F1"  # frames before the garbage are answered
            assert await asyncio.wait_for(reader.read(), 5) == b""       # then a clean close
            writer.close()
            assert parse(await other.send(message("F2"))).get("MSA-1") == "AA"
    run(body())


def test_peer_closing_mid_frame_is_harmless() -> None:
    async def body() -> None:
        async with await server() as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(b"\x0bMSH|^~\\&|half")
            await writer.drain()
            writer.close()
            await asyncio.sleep(0.05)
            assert parse(await send_message(HOST, srv.port, message("AFTER"))).get("MSA-1") == "AA"
    run(body())


def test_idle_connections_are_closed() -> None:
    async def body() -> None:
        async with await server(idle_timeout=0.3) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert 0.25 < time.monotonic() - started < 3
            writer.close()
    run(body())


def test_a_frame_trickled_past_frame_timeout_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    """Slowloris: a sender that trickles a frame is never idle, so it could hold a connection (and,
    with a few more, all of max_connections) forever. A started frame must end within
    frame_timeout; then the connection is closed unanswered (nothing was acknowledged) and the log
    says so without the content. The next connection and a prompt sender are served as usual."""
    async def body() -> None:
        async with await server(idle_timeout=5, frame_timeout=0.5, max_connections=1) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            raw = b"\x0b" + message("SLOW1", name="Secret^Sally")
            started = time.monotonic()
            for byte in raw:  # one byte every 50 ms: never idle for 5 s
                writer.write(bytes([byte]))
                try:
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(0.05)
                if reader.at_eof() or time.monotonic() - started > 4:
                    break
                if not await _still_open(reader):
                    break
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
            assert 0.45 < time.monotonic() - started < 3
            writer.close()
            for _ in range(100):
                if srv.active_connections == 0:
                    break
                await asyncio.sleep(0.01)
            # a whole message sent at once (after a slow read of its own) is not cut off
            assert parse(await send_message(HOST, srv.port, message("FAST1"))).get("MSA-1") == "AA"
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "frame_timeout" in logged and "Secret" not in logged and "SLOW1" not in logged
    with caplog.at_level("INFO", logger="ehrgate.hl7.listener"):
        run(body())


async def _still_open(reader: asyncio.StreamReader) -> bool:
    """False once the server has closed the connection (EOF seen)."""
    try:
        data = await asyncio.wait_for(reader.read(1), 0.001)
    except TimeoutError:
        return True
    return bool(data)


def test_frame_timeout_counts_from_the_start_of_each_frame() -> None:
    """A connection that sends frames in several reads each, for longer in all than frame_timeout,
    is not cut off: the limit is per frame."""
    async def body() -> None:
        async with await server(frame_timeout=0.6) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            for n in range(4):
                raw = b"\x0b" + message(f"PART{n}") + b"\x1c\r"
                writer.write(raw[:20])
                await asyncio.sleep(0.25)
                writer.write(raw[20:])
                assert parse(await read_frame(reader)).get("MSA-2") == f"PART{n}"
            writer.close()
    run(body())


def test_max_connections() -> None:
    async def body() -> None:
        async with await server(max_connections=2) as srv:
            first = await MLLPClient.connect(HOST, srv.port)
            second = await MLLPClient.connect(HOST, srv.port)
            await first.send(message("K1"))
            await second.send(message("K2"))
            assert srv.active_connections == 2
            with pytest.raises(ConnectionClosed):
                third = await MLLPClient.connect(HOST, srv.port)
                await third.send(message("K3"))
            await first.close()
            for _ in range(100):
                if srv.active_connections < 2:
                    break
                await asyncio.sleep(0.01)
            assert parse(await send_message(HOST, srv.port, message("K4"))).get("MSA-1") == "AA"
            await second.close()
    run(body())


def test_server_close_ends_open_connections() -> None:
    async def body() -> None:
        srv = await server()
        reader, writer = await asyncio.open_connection(HOST, srv.port)
        writer.write(frame(message("Z1")))
        await read_frame(reader)
        srv.close()
        await asyncio.wait_for(srv.wait_closed(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert srv.active_connections == 0 and srv.sockets == ()
    run(body())


# -- client behaviour -------------------------------------------------------------------------------

def test_client_times_out_and_closes() -> None:
    async def body() -> None:
        async with await server(slow_handler(2.0)) as srv:
            client = await MLLPClient.connect(HOST, srv.port, timeout=0.2)
            with pytest.raises(AckTimeout, match="No ACK within 0.2s"):
                await client.send(message("T1"))
            with pytest.raises(ConnectionClosed):
                await client.send(message("T2"))
    run(body())


def test_client_reports_a_peer_that_closes_without_ack() -> None:
    async def closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    async def body() -> None:
        plain = await asyncio.start_server(closer, HOST, 0)
        port = plain.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionClosed, match="before sending an ACK"):
            await send_message(HOST, port, message("X1"), timeout=5)
        plain.close()
        await plain.wait_closed()
    run(body())


def test_client_connect_refused() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        run(MLLPClient.connect(HOST, port, timeout=2))


# -- TLS and mutual TLS ---------------------------------------------------------------------------

def server_context(certs: Any, *, mutual: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    if mutual:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs.ca)
    return ctx


def client_context(certs: Any, cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs.ca))
    if cert == "client":
        ctx.load_cert_chain(certs.client_cert, certs.client_key)
    elif cert == "rogue":
        ctx.load_cert_chain(certs.rogue_cert, certs.rogue_key)
    return ctx


def test_tls(certificates: Any) -> None:
    seen: list[Peer] = []

    async def recording(raw: bytes, peer: Peer) -> bytes:
        seen.append(peer)
        return await ack_handler(raw, peer)

    async def body() -> None:
        async with await server(recording, ssl=server_context(certificates, mutual=False)) as srv:
            ctx = client_context(certificates)
            async with await MLLPClient.connect(HOST, srv.port, ssl=ctx, server_hostname="localhost") as client:
                assert parse(await client.send(message("TLS1", "Ünsal^Ada"))).get("MSA-3") == "Ünsal Ada"
            with pytest.raises(ssl.SSLError):  # a client that does not trust the server's CA
                await send_message(HOST, srv.port, message("TLS2"), ssl=ssl.create_default_context(),
                                   server_hostname="localhost")
    run(body())
    assert seen[0].tls and not seen[0].certificate  # no client certificate was asked for


def test_mutual_tls(certificates: Any) -> None:
    seen: list[Peer] = []

    async def recording(raw: bytes, peer: Peer) -> bytes:
        seen.append(peer)
        return await ack_handler(raw, peer)

    async def body() -> None:
        async with await server(recording, ssl=server_context(certificates, mutual=True)) as srv:
            ack = await send_message(HOST, srv.port, message("MTLS1"), ssl=client_context(certificates, "client"),
                                     server_hostname="localhost")
            assert parse(ack).get("MSA-1") == "AA"
            for cert in (None, "rogue"):
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    await send_message(HOST, srv.port, message("MTLS2"), ssl=client_context(certificates, cert),
                                       server_hostname="localhost", timeout=5)
            # a rejected handshake does not disturb the listener
            ack = await send_message(HOST, srv.port, message("MTLS3"), ssl=client_context(certificates, "client"),
                                     server_hostname="localhost")
            assert parse(ack).get("MSA-2") == "MTLS3"
    run(body())
    subject = dict(x[0] for x in seen[0].certificate["subject"]) if seen[0].certificate else {}
    assert seen[0].tls and subject.get("commonName") == "client"
    assert len(seen) == 2


# -- interoperability -----------------------------------------------------------------------------

class _Loop:
    """Our server on an event loop in a background thread, for blocking third-party clients."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(server(**kwargs), self.loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_python_hl7_blocking_client_with_utf8() -> None:
    from hl7.client import MLLPClient as Hl7Client

    background = _Loop()
    try:
        with Hl7Client(HOST, background.server.port, encoding="utf-8") as client:
            client.socket.settimeout(5)
            for n, name in enumerate(["Gonçalves^Inês", "Nguyễn^Thị", "Ångström^Åke"]):
                reply = client.send_message(message(f"PH{n}", name).decode())
                ack = parse(reply.strip(b"\x0b\x1c\r"))
                assert ack.get("MSA-2") == f"PH{n}" and ack.get("MSA-3") == name.replace("^", " ")
    finally:
        background.close()


def test_python_hl7_mllp_send_cli(tmp_path: Any) -> None:
    """python-hl7's `mllp_send` command (it sends the file's bytes as they are: UTF-8 here)."""
    script = Path(sys.executable).parent / "mllp_send"
    if not script.exists():
        pytest.skip(f"{script} is not installed")
    file = tmp_path / "two.hl7"
    file.write_bytes((message("CLI1", "Ærøskøbing^Åse") + message("CLI2")).replace(b"\r", b"\r\n"))
    background = _Loop()
    try:
        done = subprocess.run([str(script), "--loose", "-p", str(background.server.port), "-f", str(file), HOST],
                              capture_output=True, timeout=30, check=True)
    finally:
        background.close()
    acks = [parse(chunk.strip(b"\x0b\x1c\r\n")) for chunk in done.stdout.split(b"\x1c") if b"MSA" in chunk]
    assert [a.get("MSA-2") for a in acks] == ["CLI1", "CLI2"] and acks[0].get("MSA-3") == "Ærøskøbing Åse"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_python_hl7_asyncio_client() -> None:
    import hl7
    from hl7.mllp import open_hl7_connection

    async def body() -> None:
        async with await server() as srv:
            reader, writer = await open_hl7_connection(HOST, srv.port, encoding="utf-8")
            writer.writemessage(hl7.parse(message("PA1", "Šťastný^Jiří").decode()))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 5)
            assert str(ack.segment("MSA")[1]) == "AA" and str(ack.segment("MSA")[3]) == "Šťastný Jiří"
            writer.close()
    run(body())


def test_our_client_against_hl7apy_server() -> None:
    from hl7apy.mllp import AbstractHandler
    from hl7apy.mllp import MLLPServer as Hl7apyServer

    class Echo(AbstractHandler):  # type: ignore[misc]
        def reply(self) -> str:
            incoming = parse(self.incoming_message)
            ack = accept_ack(incoming, "accept", control_id="APY-" + incoming.control_id, timestamp="20240401")
            assert ack is not None
            return "\x0b" + ack.to_er7() + "\x1c\r"

    apy = Hl7apyServer(HOST, 0, {"ADT^A01^ADT_A01": (Echo,)}, timeout=5)
    thread = threading.Thread(target=apy.serve_forever, daemon=True)
    thread.start()
    try:
        port = apy.server_address[1]
        ack = parse(run(send_message(HOST, port, message("APY1", "Müller^Jürgen"), timeout=5)))
        assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "APY1" and ack.get("MSH-10") == "APY-APY1"
    finally:
        apy.shutdown()
        apy.server_close()
        thread.join(5)


def test_parse_error_type_is_exported_for_handlers() -> None:
    assert issubclass(ParseError, ValueError)

"""An asyncio MLLP server: the edge that frames, calls the handler and writes the ACK it returns.

Per connection, frames are handled one at a time and answered in order; connections run in
parallel. Nothing a peer sends can disturb another connection:

* a frame whose payload does not start with MSH gets an AR (table 0357 code 100) without calling
  the handler, and so does one holding a stray 0x1C (code 102: the decoder keeps it in the frame,
  see ``mllp.py``), rather than half the message being answered; a handler raising HL7Error gets an AR with that error's code, any other exception
  an AR with code 207 (HL7 v2.5 section 2.9.2: AR when the receiver cannot process the message);
* a frame over ``max_message_bytes`` gets an AR naming the size and the limit;
* bytes outside any frame (not MLLP at all) close the connection cleanly, after answering the
  frames that came before them;
* a connection silent for ``idle_timeout`` seconds is closed; beyond ``max_connections``
  concurrent connections a new one is closed at once;
* a frame not ended ``frame_timeout`` seconds after its first bytes were read closes the
  connection: a sender trickling bytes is never idle, and a few of them could hold every one of
  ``max_connections`` (slowloris). Nothing of that frame was acknowledged, so nothing is lost;
* a frame's FS with nothing after it for ``lone_fs_grace`` seconds ends the frame: some senders
  end frames with FS alone (no CR) and wait for the answer. A CR that comes later is whitespace
  between frames and ignored; 0 waits for the byte after the FS however long it takes.

The handler returns the ACK bytes, or an awaitable of them (an ``async def``), or an async generator
yielding every frame to send for the message, in order - none, one, or more. The first two are the
short path for the common case of one ACK (no generator protocol per message). Enhanced-mode acknowledgment (HL7 v2.5
section 2.9.3) needs both: no accept ACK when MSH-15 says NE, and an accept ACK on receipt followed
by the application ACK once the message is processed. The next frame of that connection is handled
after the generator finishes. An exception before the first frame gets an AR as above; after it,
the connection is closed (the peer has its first answer, a second one cannot be made up).

TLS and mutual TLS come from the ``ssl.SSLContext`` passed in (set ``verify_mode = CERT_REQUIRED``
and load a CA for client certificates); the handler sees the verified peer certificate in
``Peer.certificate``. Logs carry peer addresses and sizes, never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .ack import reject_unparseable
from .errors import FrameTooLarge, HL7Error
from .mllp import DEFAULT_MAX_MESSAGE_BYTES, END_BLOCK, Garbage, MLLPDecoder, Oversize, Truncated, frame

__all__ = ["Handler", "MLLPServer", "Peer", "start_mllp_server"]

log = logging.getLogger("ehrgate.hl7.listener")


@dataclass(frozen=True, slots=True)
class Peer:
    """The remote end of a connection; ``certificate`` is ``SSLSocket.getpeercert()`` under mutual TLS."""

    host: str
    port: int
    tls: bool = False
    certificate: dict[str, Any] | None = None


Handler = Callable[[bytes, Peer], bytes | Awaitable[bytes] | AsyncIterator[bytes]]


def _control_id() -> str:
    return uuid.uuid4().hex[:20]


def _now() -> datetime:
    return datetime.now(UTC)


class _AfterReply(Exception):
    """The handler failed after a frame was sent for the message: close the connection."""


class _IdleTimer:
    """One timer per connection for ``idle_timeout``, ``frame_timeout`` and ``lone_fs_grace``, instead of a timeout
    armed and disarmed around every read (that was about a tenth of the loop's work per message).
    The listener only records since when it has been waiting for the peer (``since``; None while a
    message is handled: a busy connection is never idle) and since when it has been waiting for the
    end of a frame begun in an earlier read (``frame_since``, set with ``frame_started`` once per
    such frame; a frame read whole never sets it) and, while the last byte read was a frame's FS,
    since when (``fs_since``, set with ``fs_started``). When the timer fires it re-arms itself for
    the time left, or, once a limit is passed, cancels the connection's task and sets ``fired`` (to
    ``"idle"``, ``"frame"`` or ``"fs"``; after ``"fs"`` the connection goes on: ``rearm``)."""

    __slots__ = ("_frame_timeout", "_fs_grace", "_handle", "_loop", "_task", "_timeout", "fired", "frame_since",
                 "fs_since", "since")

    def __init__(self, timeout: float, frame_timeout: float, fs_grace: float = 0.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._timeout = timeout
        self._frame_timeout = frame_timeout
        self._fs_grace = fs_grace
        self.since: float | None = self._loop.time()
        self.frame_since: float | None = None
        self.fs_since: float | None = None
        self.fired = ""
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self.since + timeout, self._check)

    def frame_started(self, now: float) -> None:
        self.frame_since = now
        self._due(now + self._frame_timeout)

    def fs_started(self, now: float) -> None:
        self.fs_since = now
        self._due(now + self._fs_grace)

    def _due(self, due: float) -> None:
        if self._handle is not None and self._handle.when() > due:
            self._handle.cancel()
            self._handle = self._loop.call_at(due, self._check)

    def rearm(self) -> None:
        """After ``"fs"`` fired: the connection goes on, and so do its limits."""
        self.fired = ""
        self.fs_since = None
        if self._handle is None:
            self._handle = self._loop.call_at(self._loop.time() + min(self._timeout, self._frame_timeout), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if self.since is None:  # handling a message: neither idle nor slow
            due, fired = now + min(self._timeout, self._frame_timeout), ""
        else:
            due, fired = self.since + self._timeout, "idle"
            if self.frame_since is not None and self.frame_since + self._frame_timeout < due:
                due, fired = self.frame_since + self._frame_timeout, "frame"
            if self.fs_since is not None and self.fs_since + self._fs_grace < due:
                due, fired = self.fs_since + self._fs_grace, "fs"
        if due > now:
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self.fired = fired
        if self._task is not None:
            self._task.cancel()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class MLLPServer:
    """A running listener. ``async with`` it, or call ``close()`` and ``await wait_closed()``."""

    def __init__(self, handler: Handler, *, idle_timeout: float, max_message_bytes: int, max_connections: int,
                 frame_timeout: float = 60.0, lone_fs_grace: float = 0.25, control_id: Callable[[], str] = _control_id,
                 clock: Callable[[], datetime] = _now) -> None:
        self._handler = handler
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.lone_fs_grace = lone_fs_grace
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self._control_id = control_id
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self._server.sockets) if self._server else ()

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        return int(self.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        """Stop accepting and close every open connection."""
        if self._server is not None:
            self._server.close()
        for task in self._connections:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> MLLPServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername") or ("?", 0)
        tls = writer.get_extra_info("ssl_object")
        peer = Peer(str(address[0]), int(address[1]), tls is not None,
                    tls.getpeercert() if tls is not None else None)
        if len(self._connections) >= self.max_connections:
            log.warning("MLLP connection from %s:%s refused: %d connections open (max_connections)",
                        peer.host, peer.port, len(self._connections))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer, peer)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, ssl_module.SSLError, TimeoutError) as exc:
            log.info("MLLP connection from %s:%s ended: %s", peer.host, peer.port, type(exc).__name__)
        except _AfterReply:
            pass
        except Exception:  # a bug of ours must close this connection only, and be visible
            log.exception("MLLP connection from %s:%s failed", peer.host, peer.port)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        decoder = MLLPDecoder(self.max_message_bytes)
        idle = _IdleTimer(self.idle_timeout, self.frame_timeout, self.lone_fs_grace)
        clock = asyncio.get_running_loop().time
        grace = self.lone_fs_grace > 0
        try:
            while True:
                idle.since = now = clock()
                if idle.frame_since is None and decoder.in_frame:
                    idle.frame_started(now)  # once per frame that takes more than one read
                if grace and decoder.fs_pending:
                    idle.fs_started(now)
                try:
                    data: bytes | None = await reader.read(65536)
                except asyncio.CancelledError:
                    if not idle.fired:
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    if idle.fired != "fs":
                        if idle.fired == "frame":
                            log.warning("MLLP connection from %s:%s did not end a frame within %ss (frame_timeout; "
                                        "%d bytes of it read, none acknowledged), closing", peer.host, peer.port,
                                        self.frame_timeout, decoder.frame_bytes)
                        else:
                            log.info("MLLP connection from %s:%s idle for %ss, closing", peer.host, peer.port,
                                     self.idle_timeout)
                        return
                    idle.rearm()  # the sender ended the frame with FS alone and waits for the answer
                    data = None
                idle.since = idle.fs_since = None
                if data is None:
                    events = decoder.end_pending()
                elif not data:
                    for event in decoder.close():
                        log.info("MLLP connection from %s:%s closed inside a frame (%s)", peer.host, peer.port,
                                 type(event).__name__)
                    return
                else:
                    events = decoder.feed(data)
                if events:
                    idle.frame_since = None  # a frame ended: one begun after it is timed from the next read
                for event in events:
                    if isinstance(event, Garbage):
                        log.warning("MLLP connection from %s:%s sent %d bytes outside any frame, closing",
                                    peer.host, peer.port, len(event.data))
                        return
                    if isinstance(event, Truncated):
                        log.warning("MLLP frame from %s:%s cut short by a new start block; dropped", peer.host,
                                    peer.port)
                        continue
                    if isinstance(event, Oversize):
                        await self._send(writer, self._reply_oversize(event, peer))
                        continue
                    await self._answer(event.payload, writer, peer)
        finally:
            idle.stop()

    async def _answer(self, payload: bytes, writer: asyncio.StreamWriter, peer: Peer) -> None:
        """Call the handler for one frame and send what it answers. Bytes and awaitables (the common
        one-ACK case) take the short path; an async generator goes through ``_stream``."""
        if payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:3] != b"MSH":
            await self._send(writer, self._reject(payload, None))
            return
        stray = payload.find(END_BLOCK[:1])
        if stray >= 0:  # the decoder keeps a stray FS in the frame: refuse the whole message
            await self._send(writer, self._reject(payload, HL7Error(
                f"Message contains the MLLP end block 0x1C at offset {stray} without the CR that "
                "ends a frame (expected 0x1C only at the end of the frame; send the byte as \\X1C\\)", code=102)))
            return
        try:
            result = self._handler(payload, peer)
            if hasattr(result, "__anext__"):
                replies = result
            else:
                reply = result if type(result) is bytes else await result  # type: ignore[misc]
                if type(reply) is not bytes or b"\x1c" in reply or b"\x0b" in reply:
                    reply = self._checked(reply, payload)
                replies = None
        except HL7Error as exc:
            reply, replies = self._reject(payload, exc), None
        except Exception:
            reply, replies = self._failed(payload, peer), None
        if replies is None:
            await self._send(writer, reply)
        else:
            await self._stream(replies, payload, writer, peer)  # type: ignore[arg-type]

    async def _send(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        writer.write(frame(reply))
        # Wait for the peer to read only when it lags: most ACKs fit in the transport's buffer.
        transport = writer.transport
        if transport.get_write_buffer_size() > 65536 or transport.is_closing():
            async with asyncio.timeout(self.idle_timeout):
                await writer.drain()

    async def _stream(self, replies: AsyncIterator[bytes], payload: bytes, writer: asyncio.StreamWriter,
                      peer: Peer) -> None:
        """Send every frame a generator handler yields; a failure before the first one gets an AR."""
        sent = False
        try:
            while True:
                try:
                    reply = await anext(replies)
                except StopAsyncIteration:
                    return
                except HL7Error as exc:
                    if sent:
                        raise _AfterReply(exc.message) from None
                    await self._send(writer, self._reject(payload, exc))
                    return
                except Exception as exc:
                    if sent:
                        log.warning("MLLP handler failed after answering a %d-byte message from %s:%s (%s); "
                                    "closing the connection", len(payload), peer.host, peer.port,
                                    type(exc).__name__)
                        raise _AfterReply() from None
                    await self._send(writer, self._failed(payload, peer))
                    return
                await self._send(writer, self._checked(reply, payload))
                sent = True
        finally:
            aclose = getattr(replies, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _failed(self, payload: bytes, peer: Peer) -> bytes:
        log.exception("MLLP handler failed for a %d-byte message from %s:%s", len(payload), peer.host, peer.port)
        return self._reject(payload, HL7Error("Application internal error (expected the message to be "
                                              "processed; send it again later)", code=207))

    def _reply_oversize(self, event: Oversize, peer: Peer) -> bytes:
        log.warning("MLLP frame from %s:%s of %d bytes exceeds max_message_bytes %d", peer.host, peer.port,
                    event.size, event.limit)
        error = FrameTooLarge(f"Message of {event.size} bytes exceeds the limit of {event.limit} bytes "
                              "(expected a smaller message; split it or ask for a higher limit)")
        return self._reject(event.head, error)

    def _checked(self, reply: Any, payload: bytes) -> bytes:
        if not isinstance(reply, (bytes, bytearray)) or b"\x1c" in reply or b"\x0b" in reply:
            log.error("MLLP handler returned %s instead of ACK bytes", type(reply).__name__)
            return self._reject(payload, HL7Error("Application internal error (the handler returned no "
                                                  "usable acknowledgment)", code=207))
        return bytes(reply)

    def _reject(self, payload: bytes, error: HL7Error | None) -> bytes:
        ack = reject_unparseable(payload, control_id=self._control_id(), timestamp=self._clock(), error=error,
                                 diagnostic=None if error else
                                 "Frame payload is not an HL7 v2 message (expected it to start with MSH)")
        try:
            return ack.to_bytes()
        except HL7Error:  # a diagnostic quoting text the declared character set cannot carry
            return ack.to_er7().encode(ack.codec, "replace")


async def start_mllp_server(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl: ssl_module.SSLContext | None = None,
    idle_timeout: float = 60.0,
    frame_timeout: float = 60.0,
    lone_fs_grace: float = 0.25,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_connections: int = 100,
    control_id: Callable[[], str] = _control_id,
    clock: Callable[[], datetime] = _now,
) -> MLLPServer:
    """Listen for MLLP on ``host:port``; ``handler(raw, peer)`` returns the ACK bytes for each message.

    ``frame_timeout``: seconds a frame may take from its first bytes to its end block.
    ``lone_fs_grace``: seconds after a frame's FS with no byte after it until that FS alone ends the
    frame (0: wait for the next byte).
    ``control_id`` and ``clock`` supply MSH-10 and MSH-7 of the ARs the listener builds itself.
    """
    server = MLLPServer(handler, idle_timeout=idle_timeout, max_message_bytes=max_message_bytes,
                        max_connections=max_connections, frame_timeout=frame_timeout, lone_fs_grace=lone_fs_grace,
                        control_id=control_id, clock=clock)
    server._server = await asyncio.start_server(
        server._accept, host, port, ssl=ssl, ssl_handshake_timeout=idle_timeout if ssl else None,
        limit=65536)
    return server

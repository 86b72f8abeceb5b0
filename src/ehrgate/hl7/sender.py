"""An asyncio MLLP client: send messages on one connection and return the ACK for each.

One message is outstanding at a time (HL7 v2 Appendix C: the sender waits for the acknowledgment
before sending the next message). Text is sent in the character set its MSH-18 names, UTF-8 when
empty, so non-ASCII names travel intact. After a timeout the connection is closed, because a late
ACK would otherwise be read as the answer to the next message. An ACK whose frame ends with FS
alone (no CR) is taken once nothing has followed the FS for ``LONE_FS_GRACE`` seconds
(``read_chunk``), as the listener takes such messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module

from .charset import codec_for, header_charset
from .errors import AckTimeout, ConnectionClosed, FrameTooLarge, MLLPError
from .message import Message
from .mllp import DEFAULT_MAX_MESSAGE_BYTES, Frame, MLLPDecoder, Oversize, frame

__all__ = ["LONE_FS_GRACE", "MLLPClient", "encode_message", "read_chunk", "send_message"]

LONE_FS_GRACE = 0.25
"""Seconds after a frame's FS with nothing after it until that FS alone ends the frame."""


async def read_chunk(reader: asyncio.StreamReader, decoder: MLLPDecoder, grace: float = LONE_FS_GRACE) -> bytes | None:
    """The next bytes from ``reader`` for ``decoder``: None when the decoder holds a frame's FS and
    nothing followed it for ``grace`` seconds (``decoder.end_pending()`` then gives that frame), b""
    at end of stream. A peer that ends frames with FS alone waits for our answer forever otherwise."""
    if grace > 0 and decoder.fs_pending:
        try:
            async with asyncio.timeout(grace):
                return await reader.read(65536)
        except TimeoutError:
            return None
    return await reader.read(65536)


def encode_message(message: bytes | str | Message) -> bytes:
    """Bytes to put on the wire: bytes as given, a Message per its codec, text per its MSH-18."""
    if isinstance(message, Message):
        return message.to_bytes()
    if isinstance(message, str):
        codec = codec_for(header_charset(message.encode("utf-8", "replace"))) or "utf-8"
        return message.encode(codec)
    return bytes(message)


class MLLPClient:
    """A connection to an MLLP listener. Use ``await MLLPClient.connect(...)`` or ``async with``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float,
                 max_message_bytes: int) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self._decoder = MLLPDecoder(max_message_bytes)
        self._pending: list[bytes] = []
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def connect(cls, host: str, port: int, *, ssl: ssl_module.SSLContext | None = None,
                      server_hostname: str | None = None, timeout: float = 10.0,
                      max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> MLLPClient:
        """Open a connection (TLS when ``ssl`` is given); raises ConnectionError or AckTimeout."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ssl, server_hostname=server_hostname if ssl else None),
                timeout)
        except TimeoutError:
            raise AckTimeout(f"Connecting to {host}:{port} took longer than {timeout}s") from None
        return cls(reader, writer, timeout=timeout, max_message_bytes=max_message_bytes)

    async def send(self, message: bytes | str | Message, *, timeout: float | None = None) -> bytes:
        """Send one message and return the payload of the next frame the peer sends (its ACK)."""
        data = frame(encode_message(message))
        limit = self.timeout if timeout is None else timeout
        async with self._lock:
            if self._closed:
                raise ConnectionClosed("The MLLP connection is closed (expected an open connection; "
                                       "connect again)")
            try:
                return await asyncio.wait_for(self._exchange(data), limit)
            except TimeoutError:
                await self.close()
                raise AckTimeout(f"No ACK within {limit}s (the connection was closed; the message may or may "
                                 "not have been received)") from None
            except (ConnectionError, MLLPError):
                await self.close()
                raise

    async def _exchange(self, data: bytes) -> bytes:
        self._pending.clear()  # frames nobody asked for (a duplicate ACK) must not answer this message
        self._writer.write(data)
        await self._writer.drain()
        while True:
            if self._pending:
                return self._pending.pop(0)
            chunk = await read_chunk(self._reader, self._decoder)
            if chunk is not None and not chunk:
                self._decoder.close()
                raise ConnectionClosed("The peer closed the connection before sending an ACK")
            for event in self._decoder.end_pending() if chunk is None else self._decoder.feed(chunk):
                if isinstance(event, Frame):
                    self._pending.append(event.payload)
                elif isinstance(event, Oversize):
                    raise FrameTooLarge(f"ACK of {event.size} bytes exceeds the limit of {event.limit} bytes")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    async def __aenter__(self) -> MLLPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def send_message(host: str, port: int, message: bytes | str | Message, *,
                       ssl: ssl_module.SSLContext | None = None, server_hostname: str | None = None,
                       timeout: float = 10.0) -> bytes:
    """Connect, send one message, return its ACK payload, close."""
    async with await MLLPClient.connect(host, port, ssl=ssl, server_hostname=server_hostname,
                                        timeout=timeout) as client:
        return await client.send(message)

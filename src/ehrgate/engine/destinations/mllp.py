"""Destination ``mllp``: send to a remote MLLP listener and check its ACK (HL7 v2 Appendix C and
v2.5 section 2.9).

Original mode (the message's MSH-15 and MSH-16 empty): MSA-1 AA or CA: sent; AE, AR, CE or CR: the
receiver refused - ERROR without retry (as the reference engine does; reprocess once the receiver is
fixed). A timeout, a closed connection or an answer that is not an ACK: retried.

Enhanced mode (MSH-15 or MSH-16 set): CA means the receiver has safely stored the message; CE/CR
that it has not (ERROR). When MSH-16 asks for an application acknowledgment in every case (AL, or
empty), the destination then waits for it on the same connection, within ``timeout``: AA sent,
AE/AR ERROR; none in time: sent (the receiver took the message with its CA, so sending it again
would duplicate it) with a note, and the connection is closed. With MSH-16 ER, SU or NE the CA is
the answer; an application ACK that comes later is recognised by its MSA-2 and skipped.

Answers are matched to the message by MSA-2 (its MSH-10): a late ACK of an earlier message on the
same connection is skipped, not taken for this message's. One connection per worker, kept open
between messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import time
from collections.abc import Mapping
from typing import Any

from ...hl7 import AckMode, Frame, HL7Error, MLLPDecoder, Oversize, acknowledgment_mode, frame, parse
from ...hl7.sender import read_chunk
from ..config import DestinationConfig, check_tls, known_options
from ..errors import ChannelConfigError
from ..queue import Delivered
from .base import Context, Destination, Payload, require, tls_context

log = logging.getLogger("ehrgate.engine.destinations.mllp")

_ACK_LIMIT = 1024 * 1024


class _Link:
    """One connection to the receiver: write frames, read the frames that come back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = MLLPDecoder(_ACK_LIMIT)
        self.frames: list[bytes] = []

    @classmethod
    async def open(cls, host: str, port: int, ssl: ssl_module.SSLContext | None, timeout: float) -> _Link:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl, server_hostname=host if ssl else None), timeout)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(frame(data))
        await self.writer.drain()

    async def next_frame(self) -> bytes:
        while not self.frames:
            chunk = await read_chunk(self.reader, self.decoder)  # None: an ACK ended with FS alone
            if chunk is not None and not chunk:
                raise ConnectionResetError("the receiver closed the connection")
            for event in self.decoder.end_pending() if chunk is None else self.decoder.feed(chunk):
                if isinstance(event, Frame):
                    self.frames.append(event.payload)
                elif isinstance(event, Oversize):
                    raise ConnectionResetError(f"an answer of {event.size} bytes (expected an ACK)")
        return self.frames.pop(0)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def _read_ack(data: bytes) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, error text) of an answer; MSA-1 is '' when it is not an ACK."""
    try:
        ack = parse(data)
        return (ack.get("MSA-1").upper(), ack.get("MSA-2"),
                ack.get("ERR-8") or ack.get("MSA-3") or ack.get("ERR-3.2"))
    except HL7Error:
        return "", "", ""


class MllpDestination(Destination):
    def __init__(self, cfg: DestinationConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.host = str(cfg.options["host"])
        self.port = int(cfg.options["port"])
        self.ssl = tls_context(cfg.options.get("tls"), server=False, base=ctx.base_dir,
                               where=f"destinations.{cfg.name}.tls")
        self._links: list[_Link] = []

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        known_options(options, ("host", "port", "tls"), "the mllp destination")
        require(options, "host", str, "the receiver's host name or address")
        port = require(options, "port", int, "the receiver's TCP port")
        if not 0 < port < 65536:
            raise ChannelConfigError(f"option 'port' has value {port!r}. Expected 1-65535.")
        check_tls(options.get("tls"), ("ca", "cert", "key", "verify"), "the mllp destination")

    async def deliver(self, payload: Payload) -> Delivered:
        started = time.perf_counter()
        where = f"{self.host}:{self.port}"
        wait_application = False
        control_id = payload.control_id
        try:
            msg = parse(payload.body)
            control_id = msg.control_id
            if acknowledgment_mode(msg) is AckMode.ENHANCED:
                wait_application = msg.application_ack_type.upper() in ("", "AL")
        except HL7Error:
            pass
        try:
            frame(payload.body)
        except HL7Error as exc:  # sending it again cannot help
            return Delivered(False, request=payload.body, error=f"{where}: {exc.message}", retry=False)
        link = self._links.pop() if self._links else None
        if link is not None and (link.reader.at_eof() or link.writer.is_closing()):
            await link.close()  # the receiver closed it while idle (as many do): not a failed attempt
            link = None
        answers: list[bytes] = []
        state = {"accepted": False, "keep": False}
        try:
            if link is None:
                link = await _Link.open(self.host, self.port, self.ssl, self.cfg.timeout)
            ok, error, retry = await self._exchange(link, payload.body, control_id, wait_application, answers, state)
        except TimeoutError:
            if state["accepted"]:
                ok, error, retry = True, (f"{where} accepted the message (CA) but sent no application "
                                          f"acknowledgment within {self.cfg.timeout:g}s"), False
            else:
                ok, error, retry = False, (f"{where}: no ACK within {self.cfg.timeout:g}s (the connection was "
                                           "closed; the message may or may not have been received)"), True
        except (HL7Error, OSError) as exc:
            if state["accepted"]:
                ok, error, retry = True, (f"{where} accepted the message (CA), then the connection failed "
                                          "before the application acknowledgment"), False
            else:
                detail = exc.message if isinstance(exc, HL7Error) else (exc.strerror or str(exc) or type(exc).__name__)
                ok, error, retry = False, f"{where}: {detail}", True
        finally:
            if link is not None:
                if state["keep"]:
                    self._links.append(link)
                else:
                    await link.close()
        return Delivered(ok, request=payload.body, response=b"\r\n".join(answers) or None, error=error,
                         retry=retry, duration_ms=int((time.perf_counter() - started) * 1000))

    async def _exchange(self, link: _Link, body: bytes, control_id: str, wait_application: bool,
                        answers: list[bytes], state: dict[str, bool]) -> tuple[bool, str | None, bool]:
        """Send ``body`` and read answers until one settles it: (ok, error, retry)."""
        where = f"{self.host}:{self.port}"
        deadline = time.monotonic() + self.cfg.timeout
        link.frames.clear()  # answers nobody waits for any more (to an earlier, timed-out message)
        await link.send(body)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            answer = await asyncio.wait_for(link.next_frame(), left)
            code, their_id, text = _read_ack(answer)
            if code and their_id and control_id and their_id != control_id:
                log.info("mllp destination %s: skipped an ACK for another message while waiting", where)
                continue
            answers.append(answer)
            if code == "CA" and wait_application:
                state["accepted"] = True
                continue
            state["keep"] = bool(code)
            if code in ("AA", "CA"):
                return True, None, True
            if code in ("AE", "AR", "CE", "CR"):
                return False, f"{where} answered {code}" + (f": {text}" if text else ""), False
            return False, f"{where} answered with something that is not an ACK", True

    async def close(self) -> None:
        for link in self._links:
            await link.close()
        self._links.clear()

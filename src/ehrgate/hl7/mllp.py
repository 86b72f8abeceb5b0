"""MLLP framing, sans-I/O (HL7 v2 Appendix C, "Minimal Lower Layer Protocol", release 2).

A frame is ``<VT> payload <FS><CR>``. The decoder is fed whatever bytes TCP delivers and returns
events in stream order, so frame boundaries may fall anywhere, including between FS and CR:

* ``Frame(payload)`` - a complete frame;
* ``Oversize(size, limit, head)`` - a frame longer than ``max_message_bytes``; its bytes were
  dropped as they arrived (memory stays bounded) except the first ``head_bytes``, kept so an AR can
  echo the MSH;
* ``Truncated(head)`` - a frame cut short by a new start block or by the end of the stream;
* ``Garbage(data)`` - bytes outside any frame. Whitespace between frames (CR/LF that some senders
  append) is skipped silently.

Payloads are bytes; no character set is assumed here (see ``charset.py``). The end block is FS CR;
an FS followed by LF or by the next frame's VT also ends a frame (senders that leave out the CR).
An FS followed by anything else is part of the payload: ending the frame there cut a message that
holds a stray 0x1C in two, and the first half was answered as if it were the whole message while
the rest was read as bytes outside any frame. A payload holding an FS is not HL7 text; the listener
answers it with an AR. A sender that ends its frames with a lone FS and waits for the answer gets
none until its next bytes show where the frame ended (as in the reference engine, which waits for
the CR).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MLLPError

__all__ = [
    "END_BLOCK",
    "START_BLOCK",
    "Frame",
    "Garbage",
    "MLLPDecoder",
    "MLLPEvent",
    "Oversize",
    "Truncated",
    "frame",
]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
_VT, _FS, _CR, _LF = 0x0B, 0x1C, 0x0D, 0x0A
_WHITESPACE = b" \t\r\n"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    size: int
    limit: int
    head: bytes


@dataclass(frozen=True, slots=True)
class Truncated:
    head: bytes


@dataclass(frozen=True, slots=True)
class Garbage:
    data: bytes


MLLPEvent = Frame | Oversize | Truncated | Garbage


def frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in MLLP start and end blocks. Raises MLLPError if it contains VT or FS."""
    for byte, name in ((_VT, "start block 0x0B"), (_FS, "end block 0x1C")):
        at = payload.find(bytes([byte]))
        if at >= 0:
            raise MLLPError(f"Payload contains the MLLP {name} at offset {at} (expected HL7 text; encode the "
                            "byte as an \\X..\\ escape sequence)")
    return START_BLOCK + payload + END_BLOCK


class MLLPDecoder:
    """Incremental MLLP decoder: ``feed(bytes) -> [events]``, ``close() -> [events]`` at end of stream."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *, head_bytes: int = 4096) -> None:
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes {max_message_bytes} is not valid (expected 1 or more)")
        self.max_message_bytes = max_message_bytes
        self.head_bytes = min(head_bytes, max_message_bytes)
        self._in_frame = False
        self._fs_pending = False  # the last byte fed was FS; a CR may follow in the next chunk
        self._buf = bytearray()
        self._size = 0
        self._oversize = False

    @property
    def in_frame(self) -> bool:
        """True between a start block and its end block."""
        return self._in_frame

    @property
    def fs_pending(self) -> bool:
        """True when the last byte fed was the FS of a frame: whether it ends the frame depends on
        the next byte (CR, LF or VT: it does; anything else: a stray FS inside the payload)."""
        return self._fs_pending

    def end_pending(self) -> list[MLLPEvent]:
        """Take a pending FS as the end of its frame (a sender that ends frames with FS alone and
        waits for the answer: nothing followed it for a while). [] when no FS is pending."""
        if not self._fs_pending:
            return []
        self._fs_pending = False
        return [self._end_frame()]

    @property
    def frame_bytes(self) -> int:
        """Payload bytes read so far of the frame in progress (for logs: a size, never content)."""
        return self._size if self._in_frame else 0

    def feed(self, data: bytes) -> list[MLLPEvent]:
        if (not self._in_frame and not self._fs_pending and data[:1] == START_BLOCK and data[-2:] == END_BLOCK
                and len(data) - 3 <= self.max_message_bytes and data.find(b"\x1c", 1) == len(data) - 2
                and data.find(START_BLOCK, 1) < 0):
            return [Frame(data[1:-2])]  # the usual read: exactly one whole frame, nothing around it
        events: list[MLLPEvent] = []
        garbage = bytearray()
        i, n = 0, len(data)
        while i < n:
            if self._fs_pending:
                self._fs_pending = False
                if data[i] in (_CR, _LF, _VT):
                    events.append(self._end_frame())
                    if data[i] == _CR:
                        i += 1
                else:
                    self._append(b"\x1c")  # a stray FS inside the payload
                continue
            if not self._in_frame:
                j = data.find(START_BLOCK, i)
                stop = n if j < 0 else j
                garbage += data[i:stop]
                if j < 0:
                    break
                self._flush_garbage(garbage, events)
                self._start_frame()
                i = j + 1
                continue
            k = data.find(b"\x1c", i)
            v = data.find(START_BLOCK, i, n if k < 0 else k)
            if v >= 0:
                self._append(data[i:v])
                events.append(Truncated(self._head()))
                self._start_frame()
                i = v + 1
                continue
            if k < 0:
                self._append(data[i:])
                break
            if k + 1 >= n:
                self._append(data[i:k])
                self._fs_pending = True
                i = n
            elif data[k + 1] in (_CR, _LF, _VT):
                self._append(data[i:k])
                events.append(self._end_frame())
                i = k + 2 if data[k + 1] == _CR else k + 1
            else:  # a stray FS inside the payload: keep it, the frame goes on
                self._append(data[i:k + 1])
                i = k + 1
        self._flush_garbage(garbage, events)
        return events

    def close(self) -> list[MLLPEvent]:
        """End of stream: report a frame left open, then reset."""
        events: list[MLLPEvent] = []
        if self._fs_pending:
            self._fs_pending = False
            events.append(self._end_frame())
        elif self._in_frame:
            events.append(Truncated(self._head()))
            self._in_frame = False
            self._buf = bytearray()
        return events

    def _start_frame(self) -> None:
        self._in_frame = True
        self._buf = bytearray()
        self._size = 0
        self._oversize = False

    def _append(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._oversize:
            return
        if self._size > self.max_message_bytes:
            self._oversize = True
            self._buf += chunk
            del self._buf[self.head_bytes:]
            return
        self._buf += chunk

    def _head(self) -> bytes:
        return bytes(self._buf[: self.head_bytes])

    def _end_frame(self) -> MLLPEvent:
        self._in_frame = False
        event: MLLPEvent
        if self._oversize:
            event = Oversize(self._size, self.max_message_bytes, self._head())
        else:
            event = Frame(bytes(self._buf))
        self._buf = bytearray()
        return event

    @staticmethod
    def _flush_garbage(garbage: bytearray, events: list[MLLPEvent]) -> None:
        if garbage and garbage.strip(_WHITESPACE):
            events.append(Garbage(bytes(garbage)))
        garbage.clear()

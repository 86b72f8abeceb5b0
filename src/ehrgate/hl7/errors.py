"""HL7 v2 errors. Each carries an HL7 table 0357 error code so an ACK can render it (see ``ack.py``).

    HL7Error (207 application internal error)
    ├── ParseError (100 segment sequence error, 101 or 102; ER7 that is not a usable message)
    ├── PathError (a terse path such as 'PID-5.1' that is malformed or cannot be written)
    ├── EncodeError (a value that cannot be encoded in the message's MSH-18 character set)
    ├── BatchError (FHS/BHS/BTS/FTS structure or counts that do not agree)
    └── MLLPError (framing or transport, HL7 v2 Appendix C "MLLP")
        ├── FrameTooLarge (a frame longer than max_message_bytes)
        ├── ConnectionClosed (the peer closed before an ACK arrived)
        └── AckTimeout (no ACK within the timeout; also a TimeoutError)

Messages name the thing, the bad value and what was expected, e.g.
``ParseError("Segment 1 is 'EVN', expected 'MSH'")``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AckTimeout",
    "BatchError",
    "ConnectionClosed",
    "EncodeError",
    "ErrorLocation",
    "FrameTooLarge",
    "HL7Error",
    "MLLPError",
    "ParseError",
    "PathError",
]


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """Where an error sits, rendered as ERR-2 (data type ERL, HL7 v2.5 section 2.A.27).

    ``segment^sequence^field^repetition^component^subcomponent``; trailing unknown parts are left out.
    """

    segment: str
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    def to_er7(self, component_sep: str = "^") -> str:
        parts = [self.segment, str(self.sequence)]
        for value in (self.field, self.repetition, self.component, self.subcomponent):
            if value is None:
                break
            parts.append(str(value))
        return component_sep.join(parts)


class HL7Error(Exception):
    """Base of every HL7 error; ``code`` is from HL7 table 0357 (message error condition codes)."""

    code: int = 207

    def __init__(self, message: str, *, code: int | None = None, location: ErrorLocation | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.location = location

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ParseError(HL7Error, ValueError):
    """The text is not a usable ER7 message (missing MSH, bad encoding characters, bad segment id)."""

    code = 100


class PathError(HL7Error, ValueError):
    """A terse path is malformed ('PID-x') or cannot be written ('MSH-1', a missing segment)."""

    code = 207


class EncodeError(HL7Error, ValueError):
    """Message text cannot be encoded in the character set MSH-18 declares."""

    code = 207


class BatchError(HL7Error):
    """A batch file whose FHS/BHS/BTS/FTS envelope is malformed or whose counts disagree."""

    code = 100


class MLLPError(HL7Error):
    """Framing or transport failure of the Minimal Lower Layer Protocol."""


class FrameTooLarge(MLLPError):
    """A frame exceeded the configured ``max_message_bytes``."""


class ConnectionClosed(MLLPError, ConnectionError):
    """The peer closed the connection before a complete ACK frame arrived."""


class AckTimeout(MLLPError, TimeoutError):
    """No ACK frame arrived within the timeout."""

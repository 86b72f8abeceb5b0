"""HL7 v2: the ER7 message model, escaping, ACK/ERR builders, batches, MLLP framing, listener, sender.

Everything except ``listener`` and ``sender`` is sans-I/O. Quick tour::

    msg = parse(raw_bytes)                  # lazy: fields are split when first read
    msg.get("PID-5.1"), msg.get("OBX[3]-5"), msg.get("PID-3(2).1")
    msg.set("PID-5.1", "Smith"); msg.to_bytes()
    ack = accept_ack(msg, "accept", control_id="A1", timestamp="20240101120000")
"""

from __future__ import annotations

from .ack import (
    AckCode,
    AckError,
    AckMode,
    ErrorCode,
    Outcome,
    Severity,
    accept_ack,
    acknowledgment_mode,
    application_ack,
    build_ack,
    format_timestamp,
    reject_unparseable,
    wants_accept_ack,
    wants_application_ack,
)
from .batch import Batch, BatchFile, read_batch, split_messages
from .charset import decode
from .delimiters import Delimiters
from .errors import (
    AckTimeout,
    BatchError,
    ConnectionClosed,
    EncodeError,
    ErrorLocation,
    FrameTooLarge,
    HL7Error,
    MLLPError,
    ParseError,
    PathError,
)
from .escape import escape, unescape
from .listener import MLLPServer, Peer, start_mllp_server
from .message import Message, PatientIdentifier
from .mllp import END_BLOCK, START_BLOCK, Frame, Garbage, MLLPDecoder, Oversize, Truncated, frame
from .parse import parse
from .segment import Segment
from .sender import MLLPClient, send_message
from .tree import format_tree

__all__ = [
    "END_BLOCK",
    "START_BLOCK",
    "AckCode",
    "AckError",
    "AckMode",
    "AckTimeout",
    "Batch",
    "BatchError",
    "BatchFile",
    "ConnectionClosed",
    "Delimiters",
    "EncodeError",
    "ErrorCode",
    "ErrorLocation",
    "Frame",
    "FrameTooLarge",
    "Garbage",
    "HL7Error",
    "MLLPClient",
    "MLLPDecoder",
    "MLLPError",
    "MLLPServer",
    "Message",
    "Outcome",
    "Oversize",
    "ParseError",
    "PathError",
    "PatientIdentifier",
    "Peer",
    "Segment",
    "Severity",
    "Truncated",
    "accept_ack",
    "acknowledgment_mode",
    "application_ack",
    "build_ack",
    "decode",
    "escape",
    "format_timestamp",
    "format_tree",
    "frame",
    "parse",
    "read_batch",
    "reject_unparseable",
    "send_message",
    "split_messages",
    "start_mllp_server",
    "unescape",
    "wants_accept_ack",
    "wants_application_ack",
]

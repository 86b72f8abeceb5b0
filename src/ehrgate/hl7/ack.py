"""Acknowledgment messages: MSA and ERR, original and enhanced mode (HL7 v2.5 sections 2.9 and 2.15).

Original mode (MSH-15 and MSH-16 both empty, section 2.9.2): the receiver answers every message with
AA (accepted), AE (error) or AR (rejected). Enhanced mode (section 2.9.3): an accept acknowledgment
CA/CE/CR confirms safe receipt, sent when MSH-15 asks for it (table 0155: AL always, NE never, ER
only on error/reject, SU only on success), and an application acknowledgment AA/AE/AR follows when
MSH-16 asks for it. An empty MSH-15 or MSH-16 in an enhanced-mode message is read as AL.

The builders are pure: the new control ID (MSH-10) and timestamp (MSH-7) are passed in. The ACK
uses the original's delimiters and character set, swaps sending and receiving application and
facility, copies processing ID and version, and echoes the original control ID in MSA-2. Errors are
rendered per version: ERR-2 location, ERR-3 code (table 0357), ERR-4 severity (table 0516) and ERR-8
user message from v2.5; ERR-1 (ELD) plus MSA-3/MSA-6 before v2.5, where those fields were current.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Literal

from .charset import decode
from .delimiters import DEFAULT, Delimiters
from .errors import EncodeError, ErrorLocation, HL7Error
from .escape import escape, unescape
from .message import Message
from .parse import parse

__all__ = [
    "AckCode",
    "AckError",
    "AckMode",
    "ErrorCode",
    "Outcome",
    "Severity",
    "accept_ack",
    "acknowledgment_mode",
    "application_ack",
    "build_ack",
    "format_timestamp",
    "reject_unparseable",
    "wants_accept_ack",
    "wants_application_ack",
]

Outcome = Literal["accept", "error", "reject"]


class AckCode(StrEnum):
    """HL7 table 0008, acknowledgment code (MSA-1)."""

    AA = "AA"  # original mode: application accept; enhanced mode: application acknowledgment accept
    AE = "AE"  # application error
    AR = "AR"  # application reject
    CA = "CA"  # enhanced mode accept acknowledgment: commit accept
    CE = "CE"  # commit error
    CR = "CR"  # commit reject


class AckMode(StrEnum):
    ORIGINAL = "original"
    ENHANCED = "enhanced"


class ErrorCode(IntEnum):
    """HL7 table 0357, message error condition codes (ERR-3)."""

    ACCEPTED = 0
    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        return _ERROR_TEXT[self]


_ERROR_TEXT = {
    ErrorCode.ACCEPTED: "Message accepted",
    ErrorCode.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE_ERROR: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCode.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCode.APPLICATION_INTERNAL_ERROR: "Application internal error",
}


class Severity(StrEnum):
    """HL7 table 0516, error severity (ERR-4)."""

    ERROR = "E"
    WARNING = "W"
    INFORMATION = "I"


@dataclass(frozen=True, slots=True)
class AckError:
    """One problem to report in an ERR segment. ``diagnostic`` is the human-readable ERR-8 text."""

    code: ErrorCode
    diagnostic: str
    location: ErrorLocation | None = None
    severity: Severity = Severity.ERROR

    @classmethod
    def from_exception(cls, exc: HL7Error) -> AckError:
        try:
            code = ErrorCode(exc.code)
        except ValueError:
            code = ErrorCode.APPLICATION_INTERNAL_ERROR
        return cls(code, exc.message, exc.location)


_OUTCOME_CODES: dict[Outcome, tuple[AckCode, AckCode]] = {
    "accept": (AckCode.AA, AckCode.CA),
    "error": (AckCode.AE, AckCode.CE),
    "reject": (AckCode.AR, AckCode.CR),
}


def acknowledgment_mode(message: Message) -> AckMode:
    """Original mode when MSH-15 and MSH-16 are both empty (section 2.9.2), else enhanced.

    Both fields empty in the split header (the usual case, asked of every message received) is
    answered from the field list; a field with text goes through ``get``, which reads its first
    component ('^AL' is empty)."""
    i = message._find("MSH", 1)
    if i >= 0:
        f = message._field_list(i)
        if (len(f) <= 15 or not f[15]) and (len(f) <= 16 or not f[16]):
            return AckMode.ORIGINAL
    if message.accept_ack_type or message.application_ack_type:
        return AckMode.ENHANCED
    return AckMode.ORIGINAL


def _wanted(condition: str, outcome: Outcome) -> bool:
    condition = condition.upper() or "AL"
    if condition == "NE":
        return False
    if condition == "ER":
        return outcome != "accept"
    if condition == "SU":
        return outcome == "accept"
    return True  # AL, and unknown values: answering is the safe side


def wants_accept_ack(message: Message, outcome: Outcome) -> bool:
    """Whether an accept acknowledgment is due for ``outcome`` per MSH-15 (always in original mode)."""
    if acknowledgment_mode(message) is AckMode.ORIGINAL:
        return True
    return _wanted(message.accept_ack_type, outcome)


def wants_application_ack(message: Message, outcome: Outcome) -> bool:
    """Whether an application acknowledgment is due per MSH-16 (in original mode the one ACK is it)."""
    if acknowledgment_mode(message) is AckMode.ORIGINAL:
        return True
    return _wanted(message.application_ack_type, outcome)


def accept_ack(original: Message, outcome: Outcome, *, control_id: str, timestamp: str | datetime,
               errors: Sequence[AckError] = ()) -> Message | None:
    """The acknowledgment to send on receipt. Original mode: AA/AE/AR (send AA only once the message
    is durably stored). Enhanced mode: CA/CE/CR, or None when MSH-15 does not ask for one."""
    if not wants_accept_ack(original, outcome):
        return None
    original_code, commit_code = _OUTCOME_CODES[outcome]
    code = original_code if acknowledgment_mode(original) is AckMode.ORIGINAL else commit_code
    return build_ack(original, code, control_id=control_id, timestamp=timestamp, errors=errors)


def application_ack(original: Message, outcome: Outcome, *, control_id: str, timestamp: str | datetime,
                    errors: Sequence[AckError] = ()) -> Message | None:
    """The application acknowledgment AA/AE/AR in enhanced mode, or None when MSH-16 does not ask for
    it. In original mode the ACK from ``accept_ack`` already is the application acknowledgment: None."""
    if acknowledgment_mode(original) is AckMode.ORIGINAL or not wants_application_ack(original, outcome):
        return None
    code = _OUTCOME_CODES[outcome][0]
    return build_ack(original, code, control_id=control_id, timestamp=timestamp, errors=errors)


def format_timestamp(value: str | datetime) -> str:
    """HL7 DTM: YYYYMMDDHHMMSS[+/-ZZZZ] for a datetime; a string is used as given."""
    if isinstance(value, str):
        return value
    return value.strftime("%Y%m%d%H%M%S") + value.strftime("%z")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().lstrip("vV").split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts) or (2, 5)


def build_ack(original: Message, code: AckCode | str, *, control_id: str, timestamp: str | datetime,
              errors: Sequence[AckError] = (), text: str = "") -> Message:
    """An ACK for ``original`` with MSA-1 ``code`` and one ERR per entry of ``errors``."""
    code = AckCode(code)
    d = original.delimiters
    msh = {n: original.er7(f"MSH-{n}") for n in (3, 4, 5, 6, 11, 12, 18)}
    return _assemble(d, msh, original.trigger_event, original.er7("MSH-10"), code, control_id, timestamp,
                     errors, text)


def _assemble(d: Delimiters, msh: dict[int, str], trigger: str, original_control_id: str, code: AckCode,
              control_id: str, timestamp: str | datetime, errors: Sequence[AckError], text: str) -> Message:
    version = _version(msh[12].split(d.component)[0] if d.component else msh[12])
    enhanced = code in (AckCode.CA, AckCode.CE, AckCode.CR)
    if version >= (2, 3, 1) and trigger:
        message_type = d.component.join(("ACK", _text(trigger, d), "ACK"))
    elif version >= (2, 2) and trigger:
        message_type = d.component.join(("ACK", _text(trigger, d)))
    else:
        message_type = "ACK"
    fields = ["MSH", d.encoding_characters, msh[5], msh[6], msh[3], msh[4], _text(format_timestamp(timestamp), d),
              "", message_type, _text(control_id, d), msh[11], msh[12], "", "",
              "NE" if enhanced else "", "NE" if enhanced else "", "", msh[18]]
    while fields[-1] == "":
        fields.pop()
    segments = [d.field.join(fields)]
    old_style = version < (2, 5)
    msa = ["MSA", code.value, original_control_id]
    if text or (old_style and errors):
        msa.append(_text(text or errors[0].diagnostic, d))
    if old_style and errors:
        msa += ["", "", _coded(errors[0].code, d, d.component)]
    segments.append(d.field.join(msa))
    if old_style and errors:
        shown = errors if d.repetition else errors[:1]
        segments.append("ERR" + d.field + d.repetition.join(_eld(e, d) for e in shown))
    else:
        for error in errors:
            location = error.location.to_er7(d.component) if error.location else ""
            segments.append(d.field.join(["ERR", "", location, _coded(error.code, d, d.component),
                                          error.severity.value, "", "", "", _text(error.diagnostic, d)]))
    return parse("\r".join(segments) + "\r")


def _text(value: str, d: Delimiters) -> str:
    """Escape free text for the ACK; without an escape character (MSH-2 '^~') delimiters become spaces."""
    try:
        return escape(value, d)
    except EncodeError:
        for char in (d.field, d.component, d.repetition, d.subcomponent, d.truncation):
            if char:
                value = value.replace(char, " ")
        return escape("".join(c if c.isprintable() else " " for c in value), d)


def _coded(code: ErrorCode, d: Delimiters, sep: str) -> str:
    """A CWE/CE value from table 0357: code^text^HL70357."""
    return sep.join((str(int(code)), _text(code.text, d), "HL70357")) if sep else str(int(code))


def _eld(error: AckError, d: Delimiters) -> str:
    """ERR-1 (data type ELD, v2.1-2.4): segment^sequence^field^code&text&HL70357."""
    loc = error.location
    parts = [loc.segment, str(loc.sequence), str(loc.field or "")] if loc else ["", "", ""]
    return d.component.join(parts + [_coded(error.code, d, d.subcomponent)])


def reject_unparseable(raw: bytes | str, *, control_id: str, timestamp: str | datetime,
                       error: HL7Error | None = None, diagnostic: str | None = None) -> Message:
    """A best-effort AR for a payload that is not a parseable message.

    What can be salvaged from an MSH at the start (delimiters, applications, facilities, control ID,
    processing ID, version) is used; otherwise the ACK has standard delimiters, version 2.5.1 and an
    empty MSA-2. The ERR carries ``error``'s code and text, or code 100 and ``diagnostic``.
    """
    text = decode(bytes(raw))[0] if isinstance(raw, (bytes, bytearray)) else raw
    text = text.lstrip("\ufeff \t\r\n\x0b")
    d, msh, trigger, original_id = _salvage(text)
    if error is not None:
        problem = AckError.from_exception(error)
    else:
        problem = AckError(ErrorCode.SEGMENT_SEQUENCE_ERROR,
                           diagnostic or "Payload is not an HL7 v2 message (expected it to start with MSH)",
                           ErrorLocation("MSH"))
    return _assemble(d, msh, trigger, original_id, AckCode.AR, control_id, timestamp, [problem], "")


def _salvage(text: str) -> tuple[Delimiters, dict[int, str], str, str]:
    blank: dict[int, str] = {3: "", 4: "", 5: "", 6: "", 11: "P", 12: "2.5.1", 18: ""}
    end = min((i for i in (text.find("\r"), text.find("\n")) if i >= 0), default=len(text))
    line = text[:end]
    if line[:3] != "MSH" or len(line) < 5:
        return DEFAULT, blank, "", ""
    fs = line[3]
    stop = line.find(fs, 4)
    try:
        d = Delimiters.from_header(fs, line[4:] if stop < 0 else line[4:stop])
    except HL7Error:
        return DEFAULT, blank, "", ""
    parts = line.split(fs)
    fields = ["MSH", fs] + parts[1:]

    def field(n: int) -> str:
        value = fields[n] if n < len(fields) else ""
        return "".join(c for c in value if c.isprintable())

    msh = {n: field(n) for n in blank}
    msh[11] = msh[11] or "P"
    if not _version(msh[12].split(d.component)[0] if d.component else msh[12]) or not msh[12][:1].isdigit():
        msh[12] = "2.5.1"
    nine = field(9).split(d.component) if d.component else [field(9)]
    trigger = unescape(nine[1], d) if len(nine) > 1 else ""
    return d, msh, trigger, field(10)

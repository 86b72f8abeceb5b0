"""Acknowledgments the engine sends (HL7 v2.5 sections 2.9.2, 2.9.3), built by ``ehrgate.hl7.ack``.

Every message gets one, before its sender may send the next, so the common one - accept, no ERR -
is cached: the ACK of a message differs from the ACK of the previous message from the same sender
only in MSH-7 (time), MSH-10 (our control ID) and MSA-2 (their control ID). The first message of a
kind (same delimiters, MSH-3..6, 9, 11, 12, 15, 16, 18) is answered by the builder; its ACK becomes
the template for the next ones. tests/engine/test_acks.py proves the bytes equal the builder's.
Errors (AE/AR/CE/CR with ERR) always go through the builder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import count
from operator import itemgetter

from ..hl7 import (
    AckCode,
    AckError,
    HL7Error,
    Message,
    Outcome,
    accept_ack,
    application_ack,
    build_ack,
    reject_unparseable,
)

__all__ = ["Ack", "Acks"]

Ack = tuple[bytes, str]
"""ACK bytes and MSA-1."""

_KEY_FIELDS = (1, 2, 3, 4, 5, 6, 9, 11, 12, 15, 16, 18)
_key_of = itemgetter(*_KEY_FIELDS)  # one C call instead of a generator over the twelve fields
_PAD = [""] * (max(_KEY_FIELDS) + 1)
_MAX_TEMPLATES = 512


class _Template:
    __slots__ = ("code", "codec", "fs", "head", "middle", "tail")

    def __init__(self, ack: Message) -> None:
        msh = ack.segment("MSH")
        msa = ack.segment("MSA")
        assert msh is not None and msa is not None
        f = msh.fields  # f[1] is the field separator itself
        fs = f[1]
        self.fs = fs
        self.code = msa.get("1")
        self.codec = ack.codec
        # MSH|enc|...|MSH-6| <ts> |MSH-8|MSH-9| <our id> |MSH-11...  then MSA|code| <their id>
        self.head = "MSH" + fs + fs.join(f[2:7]) + fs
        self.middle = fs + fs.join(f[8:10]) + fs
        rest = fs.join(f[11:])
        self.tail = (fs + rest if len(f) > 11 else "") + "\rMSA" + fs + self.code + fs

    @classmethod
    def of(cls, ack: Message, stamp: str, control_id: str, their_id: str) -> _Template | None:
        """The template of ``ack``, or None when the builder did not place the three values verbatim
        (a delimiter such as '+' that they contain had to be escaped): such ACKs are always built."""
        try:
            template = cls(ack)
            if template.render(stamp, control_id, their_id) == ack.to_bytes():
                return template
        except (HL7Error, UnicodeEncodeError):
            pass
        return None

    def render(self, stamp: str, control_id: str, their_id: str) -> bytes:
        return (self.head + stamp + self.middle + control_id + self.tail + their_id + "\r").encode(self.codec)


def _encoded(ack: Message) -> bytes:
    """The ACK's bytes in its MSH-18 character set; a character that set cannot carry (an error text
    quoting a remote server, a name read with a fallback codec) becomes '?' - an ACK that raised
    instead reached the sender as an AR 'cannot be encoded', whatever the message's outcome."""
    try:
        return ack.to_bytes()
    except HL7Error:
        return ack.to_er7().encode(ack.codec, "replace")


class Acks:
    """ACK builder with its control IDs (a per-process prefix and a counter) and a template cache."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._counter = count(1)
        self._templates: dict[tuple[object, ...], _Template | None] = {}
        self._second = -1
        self._stamp = ""

    def control_id(self) -> str:
        return f"{self._prefix}{next(self._counter):012d}"

    def timestamp(self) -> str:
        """Now as HL7 DTM in UTC (what ``format_timestamp(datetime.now(UTC))`` gives), per second."""
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y%m%d%H%M%S+0000", time.gmtime(second))
        return self._stamp

    # -- building ------------------------------------------------------------------------------

    def accepted(self, msg: Message, *, application: bool) -> Ack:
        """The ACK for a message stored (``application=False``: on receipt) or processed without error."""
        header = msg.segment("MSH")
        fields = header.fields if header is not None else []
        n = len(fields)
        key = (application, *_key_of(fields if n >= len(_PAD) else fields + _PAD[n:]))
        templates = self._templates
        template = templates.get(key)
        stamp, control_id = self.timestamp(), self.control_id()
        if template is not None:
            try:
                return template.render(stamp, control_id, fields[10] if n > 10 else ""), template.code
            except UnicodeEncodeError:
                pass  # the builder says why (EncodeError)
        ack = self._build(msg, "accept", (), application=application, stamp=stamp, control_id=control_id)
        if key not in templates and len(templates) < _MAX_TEMPLATES:
            templates[key] = _Template.of(ack, stamp, control_id, fields[10] if n > 10 else "")
        return _encoded(ack), ack.get("MSA-1")

    def outcome(self, msg: Message, outcome: Outcome, errors: Sequence[AckError], *, application: bool) -> Ack:
        if outcome == "accept" and not errors:
            return self.accepted(msg, application=application)
        ack = self._build(msg, outcome, errors, application=application, stamp=self.timestamp(),
                          control_id=self.control_id())
        return _encoded(ack), ack.get("MSA-1")

    def reject(self, raw: bytes, error: HL7Error) -> Ack:
        ack = reject_unparseable(raw, control_id=self.control_id(), timestamp=datetime.now(UTC), error=error)
        return _encoded(ack), "AR"

    @staticmethod
    def _build(msg: Message, outcome: Outcome, errors: Sequence[AckError], *, application: bool, stamp: str,
               control_id: str) -> Message:
        ack = None
        if application:
            ack = application_ack(msg, outcome, control_id=control_id, timestamp=stamp, errors=errors)
        if ack is None:
            ack = accept_ack(msg, outcome, control_id=control_id, timestamp=stamp, errors=errors)
        if ack is None:
            # Enhanced mode with MSH-15 NE/ER/SU: MLLP still needs an answer on this connection.
            code = {"accept": AckCode.CA, "error": AckCode.CE, "reject": AckCode.CR}[outcome]
            ack = build_ack(msg, code, control_id=control_id, timestamp=stamp, errors=errors)
        return ack


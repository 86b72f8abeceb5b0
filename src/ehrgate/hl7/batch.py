"""Batch files and multi-message files, HL7 v2.5 section 2.10.3 (batch protocol).

A file is ``[FHS] { [BHS] { MSH ... } [BTS] } [FTS]``. BTS-1 (batch message count) must equal the
number of messages in its batch and FTS-1 (file batch count) the number of batches. Messages that
are not inside a BHS/BTS pair form an implicit batch, which is also how a plain file of back-to-back
messages is read. Blank lines are ignored; CR, LF and CRLF all end a segment.

``read_batch`` never stops at the first problem: it returns every message it could delimit and a
list of problems (count mismatches, a BHS without BTS, segments before any MSH...). Pass
``strict=True`` to raise BatchError on the first problem instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .charset import decode
from .errors import BatchError

__all__ = ["Batch", "BatchFile", "read_batch", "split_messages"]


@dataclass
class Batch:
    """One batch: its BHS and BTS segments (ER7 text, None when absent) and its messages."""

    header: str | None = None
    trailer: str | None = None
    messages: list[str] = field(default_factory=list)


@dataclass
class BatchFile:
    """A batch file: FHS/FTS (ER7 text or None), its batches and the problems found while reading."""

    header: str | None = None
    trailer: str | None = None
    batches: list[Batch] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Every message in file order, each as ER7 text ending in CR (parse each with ``parse``)."""
        return [m for b in self.batches for m in b.messages]

    @property
    def ok(self) -> bool:
        return not self.problems


def split_messages(data: bytes | str, *, charset: str | None = None) -> list[str]:
    """Split a file of one or more messages (with or without batch envelope) on MSH boundaries."""
    return read_batch(data, charset=charset).messages


def read_batch(data: bytes | str, *, charset: str | None = None, strict: bool = False) -> BatchFile:
    """Read a batch file or plain multi-message file. See the module docstring for the rules."""
    text = decode(data, charset)[0] if isinstance(data, (bytes, bytearray)) else data.lstrip("\ufeff")
    return _Reader(strict).read(text)


class _Reader:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.file = BatchFile()
        self.batch: Batch | None = None  # the open batch (explicit or implicit)
        self.message: list[str] | None = None
        self.closed = False  # FTS seen
        self.fs = "|"

    def problem(self, text: str) -> None:
        if self.strict:
            raise BatchError(text)
        self.file.problems.append(text)

    def end_message(self) -> None:
        if self.message is not None and self.batch is not None:
            self.batch.messages.append("\r".join(self.message) + "\r")
        self.message = None

    def end_batch(self) -> None:
        self.end_message()
        self.batch = None

    def read(self, text: str) -> BatchFile:
        lines = [s for s in text.replace("\n", "\r").split("\r") if s and not s.isspace()]
        for n, line in enumerate(lines, start=1):
            name = line[:3]
            if self.closed:
                self.problem(f"Segment {n} ({name}) comes after FTS (expected FTS to end the file)")
                self.closed = False
            if name in ("FHS", "BHS", "MSH") and len(line) > 3:
                self.fs = line[3]
            handler = getattr(self, "on_" + name, None) if name in ("FHS", "BHS", "BTS", "FTS", "MSH") else None
            if handler is not None:
                handler(n, line)
            elif self.message is None:
                self.problem(f"Segment {n} ({line[:12]!r}) comes before any MSH (expected a message header)")
            else:
                self.message.append(line)
        self.end_message()
        if self.batch is not None and self.batch.header is not None:
            self.problem(f"Batch {len(self.file.batches)} has a BHS but no BTS (expected BTS to close it)")
        if self.file.header is not None and self.file.trailer is None:
            self.problem("File has an FHS but no FTS (expected FTS to close it)")
        return self.file

    def on_FHS(self, n: int, line: str) -> None:  # noqa: N802 - named for the segment
        if self.file.header is not None:
            self.problem(f"Segment {n} is a second FHS (expected one per file)")
        elif n > 1:
            self.problem(f"Segment {n} is an FHS after other segments (expected FHS first)")
        self.end_batch()
        self.file.header = line

    def on_BHS(self, n: int, line: str) -> None:  # noqa: N802
        if self.batch is not None and self.batch.header is not None:
            self.problem(f"Segment {n} is a BHS but batch {len(self.file.batches)} has no BTS yet "
                         "(expected BTS before the next BHS)")
        elif self.batch is not None:
            self.problem(f"Segment {n} is a BHS after messages outside any batch")
        self.end_batch()
        self.batch = Batch(header=line)
        self.file.batches.append(self.batch)

    def on_MSH(self, n: int, line: str) -> None:  # noqa: N802
        self.end_message()
        if self.batch is None:
            if any(b.header is not None for b in self.file.batches):
                self.problem(f"Segment {n} is an MSH outside any BHS/BTS batch")
            self.batch = Batch()
            self.file.batches.append(self.batch)
        self.message = [line]

    def on_BTS(self, n: int, line: str) -> None:  # noqa: N802
        self.end_message()
        batch = self.batch
        if batch is None or batch.header is None:
            self.problem(f"Segment {n} is a BTS without a BHS (expected BHS to open the batch)")
            if batch is None:
                batch = Batch()
                self.file.batches.append(batch)
        batch.trailer = line
        self._check_count(line, "BTS-1", "messages", len(batch.messages), f"batch {len(self.file.batches)}")
        self.batch = None

    def on_FTS(self, n: int, line: str) -> None:  # noqa: N802
        if self.batch is not None and self.batch.header is not None:
            self.problem(f"Batch {len(self.file.batches)} has a BHS but no BTS (expected BTS before FTS)")
        self.end_batch()
        if self.file.header is None:
            self.problem(f"Segment {n} is an FTS without an FHS (expected FHS to open the file)")
        if self.file.trailer is not None:
            self.problem(f"Segment {n} is a second FTS (expected one per file)")
        self.file.trailer = line
        self._check_count(line, "FTS-1", "batches", len(self.file.batches), "the file")
        self.closed = True

    def _check_count(self, line: str, field_name: str, noun: str, actual: int, where: str) -> None:
        fields = line.split(self.fs)
        value = fields[1].strip() if len(fields) > 1 else ""
        if not value:
            return
        if not value.isdigit():
            self.problem(f"{field_name} {value!r} is not a count (expected a whole number)")
        elif int(value) != actual:
            self.problem(f"{field_name} is {int(value)} but {where} holds {actual} {noun} (expected them to agree)")

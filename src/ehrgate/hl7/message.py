"""The ER7 ("pipe and hat") message model, HL7 v2.5 section 2.5 (message construction rules).

A Message holds its segments as ER7 text (built by ``parse.parse``) and splits a segment into fields
the first time it is read; repetitions, components and subcomponents are split on each read of that
field only. Serializing an unmodified message gives back the parsed text with every segment
terminated by a single CR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .charset import codec_for
from .delimiters import Delimiters
from .errors import EncodeError, ParseError, PathError
from .escape import unescape
from .paths import Path, _cache, parse_path
from .segment import HEADER_SEGMENTS, Segment, read_all, read_er7, valid_id, write_field

__all__ = ["Message", "PatientIdentifier"]


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """One repetition of PID-3 (data type CX): ID, assigning authority (CX-4) and type code (CX-5)."""

    value: str
    authority: str
    type_code: str


class Message:
    """An HL7 v2 message. Read with terse paths (see ``paths.py``), change with ``set``, write with
    ``to_er7``/``to_bytes``. ``get`` returns decoded text and ``''`` for anything absent."""

    __slots__ = ("_codec", "_fields", "_heads", "_segs", "delimiters")

    def __init__(self, segments: list[str], heads: list[str], delimiters: Delimiters, codec: str | None) -> None:
        """Internal: use ``parse``. ``heads`` are the segment ids each followed by the field separator."""
        self._segs = segments
        self._heads = heads  # segment id + field separator of each segment, for lookups
        self._fields: dict[int, list[str]] = {}  # split on first read, keyed by segment position
        self.delimiters = delimiters
        self._codec = codec

    # -- reading -------------------------------------------------------------------------------------

    def _field_list(self, i: int) -> list[str]:
        fields = self._fields.get(i)
        if fields is None:
            fs = self.delimiters.field
            fields = self._segs[i].split(fs)
            if fields[0] in HEADER_SEGMENTS:
                fields.insert(1, fs)
            self._fields[i] = fields
        return fields

    def _find(self, name: str, occurrence: int) -> int:
        heads = self._heads
        if occurrence == 1:
            try:
                return heads.index(name + self.delimiters.field)
            except ValueError:
                return -1
        seen = 0
        for i, h in enumerate(heads):
            if h[:3] == name:
                seen += 1
                if seen == occurrence:
                    return i
        return -1

    def get(self, path: str) -> str:
        """Decoded value at ``path``; a path that names a field or component reads its first
        component/subcomponent ('PID-5' is the family name). ``''`` when absent."""
        p = _cache.get(path) or parse_path(path)
        name, occurrence, field, rep, comp, sub, _ = p
        d = self.delimiters
        if occurrence == 1:
            try:
                i = self._heads.index(name + d.field)
            except ValueError:
                return ""
        else:
            i = self._find(name, occurrence)
            if i < 0:
                return ""
        fields = self._fields.get(i) or self._field_list(i)
        # The body of segment.read_value, inlined: this is the hot path of every channel.
        if field >= len(fields):
            return ""
        x = fields[field]
        if not x:
            return ""
        if field < 3 and name in HEADER_SEGMENTS:
            return x if rep == comp == sub == 1 else ""
        sep = d.repetition
        if rep > 1 or (sep and sep in x):
            parts = x.split(sep) if sep else [x]
            if rep > len(parts):
                return ""
            x = parts[rep - 1]
        sep = d.component
        if comp > 1 or (sep and sep in x):
            parts = x.split(sep) if sep else [x]
            if comp > len(parts):
                return ""
            x = parts[comp - 1]
        sep = d.subcomponent
        if sub > 1 or (sep and sep in x):
            parts = x.split(sep) if sep else [x]
            if sub > len(parts):
                return ""
            x = parts[sub - 1]
        sep = d.escape
        if sep and sep in x:
            return unescape(x, d)
        return x

    __getitem__ = get

    def get_all(self, path: str) -> list[str]:
        """Decoded value at ``path`` for every repetition of the field ('PID-3.1' → every patient ID)."""
        p = parse_path(path)
        i = self._find(p.segment, p.occurrence)
        return [] if i < 0 else read_all(self._field_list(i), p, self.delimiters)

    def er7(self, path: str) -> str:
        """Raw ER7 text (still escaped) of the level ``path`` names; 'PID-3' includes all repetitions."""
        p = parse_path(path)
        i = self._find(p.segment, p.occurrence)
        return "" if i < 0 else read_er7(self._field_list(i), p, self.delimiters)

    # -- writing -------------------------------------------------------------------------------------

    def set(self, path: str, value: str) -> None:
        """Escape ``value`` and store it as the primitive ``get(path)`` reads."""
        self._write(self._require(path), parse_path(path), value, raw=False)

    def set_er7(self, path: str, text: str) -> None:
        """Store ER7 ``text`` unchanged at the level ``path`` names (e.g. a whole field 'A^B~C')."""
        self._write(self._require(path), parse_path(path), text, raw=True)

    def _require(self, path: str) -> int:
        p = parse_path(path)
        i = self._find(p.segment, p.occurrence)
        if i < 0:
            count = sum(1 for h in self._heads if h[:3] == p.segment)
            raise PathError(f"Path {path!r}: the message has {count} {p.segment} "
                            f"segment(s) (expected at least {p.occurrence}; add one with append_segment)")
        return i

    def _write(self, i: int, p: Path, text: str, *, raw: bool) -> None:
        fields = self._field_list(i)
        write_field(fields, p, text, self.delimiters, raw=raw)
        self._segs[i] = self._join(fields)

    def _join(self, fields: list[str]) -> str:
        fs = self.delimiters.field
        if fields[0] in HEADER_SEGMENTS:
            return fields[0] + fs + fs.join(fields[2:])
        return fs.join(fields)

    def append_segment(self, text: str) -> Segment:
        """Append a segment given as ER7 text (e.g. 'ZPI|1|x'); returns it."""
        return self.insert_segment(len(self._segs), text)

    def insert_segment(self, index: int, text: str) -> Segment:
        """Insert a segment before position ``index`` (1 or more: MSH stays first)."""
        name = text[:3]
        if not valid_id(name) or (len(text) > 3 and text[3] != self.delimiters.field) or name in HEADER_SEGMENTS:
            raise ParseError(f"Segment {text[:12]!r} is not a segment (expected 3 upper-case letters or digits "
                             f"followed by {self.delimiters.field!r}, not MSH)")
        if "\r" in text or "\n" in text:
            raise ParseError(f"Segment {text[:12]!r} contains a line break (expected one segment)")
        if not 1 <= index <= len(self._segs):
            raise PathError(f"Segment position {index} is out of range (expected 1..{len(self._segs)})")
        self._segs.insert(index, text)
        self._heads.insert(index, name + self.delimiters.field)
        self._fields = {k + (k >= index): v for k, v in self._fields.items()}
        return Segment(self, index)

    def remove_segment(self, index: int) -> None:
        """Remove the segment at position ``index`` (not the MSH at 0)."""
        if not 1 <= index < len(self._segs):
            raise PathError(f"Segment position {index} is out of range (expected 1..{len(self._segs) - 1})")
        del self._segs[index], self._heads[index]
        self._fields = {k - (k > index): v for k, v in self._fields.items() if k != index}

    # -- segments ------------------------------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        return [Segment(self, i) for i in range(len(self._segs))]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self._segs)

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        """The ``occurrence``-th (1-based) segment called ``name``, or None."""
        i = self._find(name, occurrence)
        return None if i < 0 else Segment(self, i)

    def segments_named(self, name: str) -> list[Segment]:
        return [Segment(self, i) for i, h in enumerate(self._heads) if h[:3] == name]

    # -- header accessors (MSH, HL7 v2.5 section 2.15.9) --------------------------------------------

    @property
    def message_type(self) -> str:
        """MSH-9.1 message code, e.g. 'ADT' (table 0076)."""
        return self.get("MSH-9.1")

    @property
    def trigger_event(self) -> str:
        """MSH-9.2 trigger event, e.g. 'A01' (table 0003)."""
        return self.get("MSH-9.2")

    @property
    def message_structure(self) -> str:
        """MSH-9.3 message structure, e.g. 'ADT_A01' (v2.3.1+, table 0354)."""
        return self.get("MSH-9.3")

    @property
    def sending_application(self) -> str:
        """MSH-3.1, the sending application's namespace ID."""
        return self.get("MSH-3")

    @property
    def sending_facility(self) -> str:
        """MSH-4.1, the sending facility's namespace ID."""
        return self.get("MSH-4")

    @property
    def receiving_application(self) -> str:
        """MSH-5.1, the receiving application's namespace ID."""
        return self.get("MSH-5")

    @property
    def receiving_facility(self) -> str:
        """MSH-6.1, the receiving facility's namespace ID."""
        return self.get("MSH-6")

    @property
    def timestamp(self) -> str:
        """MSH-7.1 date/time of message."""
        return self.get("MSH-7")

    @property
    def control_id(self) -> str:
        """MSH-10 message control ID, echoed in MSA-2 of the ACK."""
        return self.get("MSH-10")

    @property
    def processing_id(self) -> str:
        """MSH-11.1 processing ID: P, D or T (table 0103)."""
        return self.get("MSH-11")

    @property
    def version(self) -> str:
        """MSH-12.1 version ID, e.g. '2.5.1' (table 0104)."""
        return self.get("MSH-12")

    @property
    def accept_ack_type(self) -> str:
        """MSH-15 accept acknowledgment type: AL, NE, ER, SU or '' (table 0155)."""
        return self.get("MSH-15")

    @property
    def application_ack_type(self) -> str:
        """MSH-16 application acknowledgment type: AL, NE, ER, SU or '' (table 0155)."""
        return self.get("MSH-16")

    @property
    def charset(self) -> str:
        """MSH-18 character set, first repetition (table 0211)."""
        return self.get("MSH-18")

    @property
    def patient_identifiers(self) -> list[PatientIdentifier]:
        """Every repetition of PID-3 (first PID segment)."""
        pid = self.segment("PID")
        if pid is None:
            return []
        out = []
        for n in range(1, len(pid.get_all("3")) + 1):
            authority = pid.get(f"3({n}).4.1") or pid.get(f"3({n}).4.2")
            out.append(PatientIdentifier(pid.get(f"3({n}).1"), authority, pid.get(f"3({n}).5")))
        return out

    # -- serializing ---------------------------------------------------------------------------------

    @property
    def codec(self) -> str:
        """The Python codec ``to_bytes`` uses: the one the bytes were decoded with, else MSH-18's."""
        if self._codec is None:
            return codec_for(self.charset) or "utf-8"
        return self._codec

    def to_er7(self) -> str:
        """The message as ER7 text, every segment terminated by CR."""
        return "\r".join(self._segs) + "\r"

    __str__ = to_er7

    def to_bytes(self) -> bytes:
        """``to_er7()`` encoded in the message's character set (see ``codec``)."""
        text = self.to_er7()
        try:
            return text.encode(self.codec)
        except UnicodeEncodeError as exc:
            bad = text[exc.start:exc.end]
            raise EncodeError(f"Character {bad!r} cannot be encoded as {self.codec!r} (MSH-18 "
                              f"{self.charset or 'empty'!r}); expected text in that character set or set "
                              "MSH-18 to 'UNICODE UTF-8'") from None

    def copy(self) -> Message:
        return Message(list(self._segs), list(self._heads), self.delimiters, self._codec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._segs == other._segs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "^".join(x for x in (self.message_type, self.trigger_event) if x)
        return f"<Message {kind or '?'} control_id={self.control_id!r} segments={len(self._segs)}>"

"""Parsing ER7 text into a Message: a lazy, sans-I/O parser for HL7 v2.1-2.8.x.

``parse`` decodes bytes per MSH-18 (see ``charset.py``), splits the text into segments on CR, LF or
CRLF (HL7 v2.5 section 2.5.1 prescribes CR; LF is common in files), drops blank lines and a UTF-8
BOM, validates MSH-1/MSH-2 (section 2.5.4) and every segment id, and stops there: fields are split
the first time a segment is read (see ``message.py``).

Segment ids are validated once per distinct "id + field separator" head and remembered, so the
usual parse checks every segment with one set comparison.
"""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter

from .charset import codec_for, decode
from .delimiters import Delimiters
from .errors import ErrorLocation, ParseError
from .message import Message
from .segment import valid_id

__all__ = ["parse"]


def parse(data: bytes | bytearray | str, *, charset: str | None = None) -> Message:
    """Parse one ER7 message. ``charset`` (an HL7 table 0211 name) overrides MSH-18 for bytes input.

    Raises ParseError when the text does not start with a usable MSH segment, a segment id is not
    three upper-case letters or digits, or a second MSH appears (use ``batch.split_messages``).
    """
    if isinstance(data, bytes) and charset is None and data.isascii():
        return _build(data.decode("ascii"), None)
    if isinstance(data, str):
        text = data[1:] if data[:1] == "\ufeff" else data
        codec = codec_for(charset) if charset else None
    elif isinstance(data, (bytes, bytearray)):
        text, codec = decode(bytes(data), charset)
    else:
        raise TypeError(f"parse() takes bytes or str, not {type(data).__name__}")
    return _build(text, codec)


@lru_cache(maxsize=256)
def _delimiters(field: str, encoding_characters: str) -> Delimiters:
    return Delimiters.from_header(field, encoding_characters)


#: Segment heads ("PID|", or "PD1" for a segment with no fields) already validated, per field separator.
_KNOWN_HEADS: dict[str, set[str]] = {}
_KNOWN_BARE: dict[str, set[str]] = {}
_HEAD = itemgetter(slice(None, 4))


def _build(text: str, codec: str | None) -> Message:
    if "\n" in text:
        text = text.replace("\n", "\r")  # LF and CRLF become CR (+ an empty segment dropped below)
    segs = text.split("\r")
    if not segs[-1]:
        segs.pop()
    if "" in segs:
        segs = [s for s in segs if s]
    if segs and segs[0].isspace():
        segs = [s for s in segs if not s.isspace()]
    if not segs:
        raise ParseError("Message is empty (expected an MSH segment)", location=ErrorLocation("MSH"))
    head = segs[0]
    if head[:3] != "MSH":
        raise ParseError(f"Segment 1 is {head[:3]!r}, expected 'MSH'", location=ErrorLocation("MSH"))
    if len(head) < 5:
        raise ParseError(f"MSH segment {head!r} is too short (expected 'MSH|^~\\&|...')", code=101,
                         location=ErrorLocation("MSH", 1, 2))
    fs = head[3]
    end = head.find(fs, 4)
    delimiters = _delimiters(fs, head[4:] if end < 0 else head[4:end])
    heads = list(map(_HEAD, segs))
    known = _KNOWN_HEADS.get(fs)
    if known is None or not known.issuperset(heads) or heads.count(heads[0]) != 1:
        return _build_checked(segs, fs, delimiters, codec)
    if not _KNOWN_BARE[fs].isdisjoint(heads):
        heads = [h if len(h) == 4 else h + fs for h in heads]
    return Message(segs, heads, delimiters, codec)


def _build_checked(segs: list[str], fs: str, delimiters: Delimiters, codec: str | None) -> Message:
    """The thorough path: drop whitespace-only lines, check each segment, remember good heads."""
    kept = [s for s in segs if not s.isspace()]
    if fs in _KNOWN_HEADS or len(_KNOWN_HEADS) < 16:  # bounded: a fuzzer can vary MSH-1 endlessly
        known, bare = _KNOWN_HEADS.setdefault(fs, set()), _KNOWN_BARE.setdefault(fs, set())
    else:
        known, bare = set(), set()
    for n, seg in enumerate(kept, start=1):
        name = seg[:3]
        if name == "MSH" and n > 1:
            raise ParseError(f"Segment {n} is a second 'MSH' (expected one message; split files with "
                             "ehrgate.hl7.split_messages)", location=ErrorLocation("MSH", 2))
        if not valid_id(name) or (len(seg) > 3 and seg[3] != fs):
            raise ParseError(f"Segment {n} starts {seg[:12]!r}, which is not a segment id (expected 3 "
                             f"upper-case letters or digits followed by {fs!r})")
        if len(known) < 4096:
            known.add(seg[:4])
            if len(seg) == 3:
                bare.add(seg)
    return Message(kept, [s[:3] + fs for s in kept], delimiters, codec)


"""Segments and the field/repetition/component/subcomponent levels inside them (HL7 v2.5 section 2.5).

A field is split into repetitions, components and subcomponents only when it is read, so a message
costs one ``str.split`` per segment touched. Values come back decoded (``escape.unescape``); raw ER7
text is available through ``er7()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .delimiters import Delimiters
from .errors import PathError
from .escape import escape, unescape
from .paths import COMPONENT, FIELD, REPETITION, SUBCOMPONENT, Path, parse_relative_path

if TYPE_CHECKING:
    from .message import Message

__all__ = ["HEADER_SEGMENTS", "Segment", "valid_id"]

#: Segments whose field 1 is the field separator and field 2 the encoding characters.
HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})


def valid_id(name: str) -> bool:
    """A segment id: an upper-case letter then two upper-case letters or digits (section 2.5.2)."""
    return len(name) == 3 and "A" <= name[0] <= "Z" and all("A" <= c <= "Z" or "0" <= c <= "9" for c in name[1:])


class Segment:
    """A view on segment ``index`` (0-based position) of a message. Field ``n`` is ``SEG-n``."""

    __slots__ = ("_index", "_message")

    def __init__(self, message: Message, index: int) -> None:
        self._message = message
        self._index = index

    @property
    def name(self) -> str:
        return self._message._heads[self._index][:3]

    @property
    def index(self) -> int:
        """0-based position in the message (MSH is 0)."""
        return self._index

    @property
    def fields(self) -> list[str]:
        """Raw (escaped) field texts; ``fields[n]`` is ``SEG-n`` and ``fields[0]`` the segment id."""
        return list(self._message._field_list(self._index))

    def __len__(self) -> int:
        """The number of the last field present."""
        return len(self._message._field_list(self._index)) - 1

    def __str__(self) -> str:
        return self._message._segs[self._index]

    def __repr__(self) -> str:
        return f"<Segment {self._message._segs[self._index][:40]!r}>"

    def get(self, path: str) -> str:
        """Decoded value at ``path`` inside this segment ('5', '5.1', '3(2).1'); '' when absent."""
        return read_value(self._message._field_list(self._index), parse_relative_path(path, self.name),
                          self._message.delimiters)

    def get_all(self, path: str) -> list[str]:
        """Decoded value at ``path`` for every repetition of the field."""
        p = parse_relative_path(path, self.name)
        return read_all(self._message._field_list(self._index), p, self._message.delimiters)

    def er7(self, path: str) -> str:
        """Raw ER7 text of the level ``path`` names ('3' is the whole field with its repetitions)."""
        return read_er7(self._message._field_list(self._index), parse_relative_path(path, self.name),
                        self._message.delimiters)

    def set(self, path: str, value: str) -> None:
        """Escape ``value`` and store it as the primitive at ``path`` (the same one ``get`` reads)."""
        self._message._write(self._index, parse_relative_path(path, self.name), value, raw=False)

    def set_er7(self, path: str, text: str) -> None:
        """Store ER7 ``text`` unchanged at the level ``path`` names."""
        self._message._write(self._index, parse_relative_path(path, self.name), text, raw=True)

    def parts(self, field: int) -> list[list[list[str]]]:
        """Field ``field`` split into repetitions → components → subcomponents, raw (still escaped)."""
        fields = self._message._field_list(self._index)
        if field >= len(fields):
            return []
        raw = fields[field]
        d = self._message.delimiters
        if field <= 2 and self.name in HEADER_SEGMENTS:
            return [[[raw]]]
        return [[_split(c, d.subcomponent) for c in _split(r, d.component)] for r in _split(raw, d.repetition)]


def _split(text: str, sep: str) -> list[str]:
    return text.split(sep) if sep else [text]


def _literal(fields: list[str], field: int) -> bool:
    return field <= 2 and fields[0] in HEADER_SEGMENTS


def read_value(fields: list[str], p: Path, d: Delimiters) -> str:
    """The decoded primitive at ``p``: missing repetition/component/subcomponent numbers mean 1."""
    _, _, field, rep, comp, sub, _ = p
    if field >= len(fields):
        return ""
    x = fields[field]
    if not x:
        return ""
    if field < 3 and fields[0] in HEADER_SEGMENTS:
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
    esc = d.escape
    if esc and esc in x:
        return unescape(x, d)
    return x


def read_all(fields: list[str], p: Path, d: Delimiters) -> list[str]:
    if p.field >= len(fields) or not fields[p.field]:
        return []
    if _literal(fields, p.field):
        return [fields[p.field]]
    count = len(_split(fields[p.field], d.repetition))
    return [read_value(fields, p._replace(repetition=n), d) for n in range(1, count + 1)]


def read_er7(fields: list[str], p: Path, d: Delimiters) -> str:
    if p.field >= len(fields):
        return ""
    x = fields[p.field]
    if _literal(fields, p.field) or p.depth == FIELD:
        return x
    levels = ((d.repetition, p.repetition), (d.component, p.component), (d.subcomponent, p.subcomponent))
    for depth, (sep, n) in zip((REPETITION, COMPONENT, SUBCOMPONENT), levels, strict=True):
        parts = _split(x, sep)
        if n > len(parts):
            return ""
        x = parts[n - 1]
        if depth == p.depth:
            break
    return x


def write_field(fields: list[str], p: Path, text: str, d: Delimiters, *, raw: bool) -> None:
    """Store ``text`` in ``fields`` at ``p`` (in place), padding missing levels with empty values.

    ``raw=False`` escapes ``text`` and writes the primitive ``read_value`` reads (subcomponent level).
    """
    if _literal(fields, p.field):
        raise PathError(f"Path '{p}' addresses {fields[0]}-{p.field}, the delimiters, which cannot be set "
                        "(expected a field number of 3 or more)")
    depth = p.depth
    if not raw:
        text = escape(text, d)
        depth = SUBCOMPONENT
    if len(fields) <= p.field:
        fields.extend([""] * (p.field + 1 - len(fields)))
    if depth == FIELD:
        fields[p.field] = text
        return
    levels = [(d.repetition, p.repetition, "repetition"), (d.component, p.component, "component"),
              (d.subcomponent, p.subcomponent, "subcomponent")][: depth - 1]
    fields[p.field] = _replace(fields[p.field], levels, text, p, d)


def _replace(container: str, levels: list[tuple[str, int, str]], text: str, p: Path, d: Delimiters) -> str:
    (sep, n, what), rest = levels[0], levels[1:]
    if not sep and n > 1:
        raise PathError(f"Path '{p}' needs a {what} separator but MSH-2 {d.encoding_characters!r} declares none")
    parts = _split(container, sep)
    if n > len(parts):
        parts.extend([""] * (n - len(parts)))
    parts[n - 1] = _replace(parts[n - 1], rest, text, p, d) if rest else text
    return sep.join(parts) if sep else parts[0]

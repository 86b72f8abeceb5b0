"""Reading a segment's fields as values, with the field's name ready for error messages.

A ``Seg`` is one segment split once into raw fields; ``seg.reps(5)`` gives the repetitions of
field 5 as ``Value``s and ``seg.value(5)`` the first one that holds data. A ``Value`` is one
repetition split into components (HL7 v2.5 section 2.5.3): ``v[1]`` is component 1, unescaped, its
first subcomponent; ``v.part(4)`` is component 4 as a ``Value`` of its subcomponents (an HD inside
a CX). The HL7 null ``""`` (section 2.5.3: "delete the value") reads as empty: every conversion
writes whole resources, so an absent value is already a cleared one.
"""

from __future__ import annotations

from ..hl7 import Delimiters, Segment, unescape

__all__ = ["Seg", "Value", "where"]

_NULL = '""'


def where(name: str, seq: int, field: int) -> str:
    """'PID-7', or 'OBX[3]-5' for the third OBX of the message."""
    return f"{name}-{field}" if seq == 1 else f"{name}[{seq}]-{field}"


class Value:
    """One repetition of a field (or one component, when read with ``part``)."""

    __slots__ = ("_label", "_rep", "comps", "d")

    def __init__(self, comps: list[str], d: Delimiters, where: str, rep: int = 1) -> None:
        self.comps = comps
        self.d = d
        self._label = where
        self._rep = rep

    @property
    def where(self) -> str:
        """The field's name for messages: 'PID-3', 'PID-3(2)', 'PID-3.4'."""
        return self._label if self._rep == 1 else f"{self._label}({self._rep})"

    def __getitem__(self, i: int) -> str:
        try:
            x = self.comps[i - 1]
        except IndexError:
            return ""
        if not x or x == _NULL:
            return ""
        d = self.d
        sub = d.subcomponent
        if sub and sub in x:
            x = x.split(sub, 1)[0]
        esc = d.escape
        if esc and esc in x:
            x = unescape(x, d)
        return x.strip()

    def part(self, i: int) -> Value:
        """Component ``i`` split into its subcomponents (a composite inside a composite)."""
        x = self.comps[i - 1] if i <= len(self.comps) else ""
        sub = self.d.subcomponent
        return Value(x.split(sub) if sub else [x], self.d, f"{self.where}.{i}")

    def text(self, formatted: bool = False) -> str:
        """The whole value as text: components and subcomponents unescaped and joined with their
        separators (for ST/TX/FT values whose sender left a '^' or '&' unescaped: text, not structure).
        ``formatted`` reads FT formatting commands as plain text (``unescape(..., plain=True)``)."""
        d = self.d
        sub, esc = d.subcomponent, d.escape
        parts = []
        for x in self.comps:
            if not x or x == _NULL:
                parts.append("")
                continue
            pieces = x.split(sub) if sub and sub in x else [x]
            parts.append(sub.join(unescape(p, d, plain=formatted) if esc and esc in p else p for p in pieces).strip())
        while parts and not parts[-1]:
            parts.pop()
        return (d.component or "^").join(parts)

    def empty(self) -> bool:
        return not any(c and c != _NULL for c in self.comps)

    def __repr__(self) -> str:
        return f"<Value {self.where} {self.comps!r}>"


class Seg:
    """A segment of the message being converted: its name, its occurrence number and raw fields."""

    __slots__ = ("_reps", "d", "index", "name", "raw", "seq")

    def __init__(self, segment: Segment, seq: int, d: Delimiters) -> None:
        self.name = segment.name
        self.index = segment.index
        self.raw = segment.fields
        self.seq = seq
        self.d = d
        self._reps: dict[int, list[Value]] = {}  # a field is split once, however often it is read

    def where(self, field: int) -> str:
        return where(self.name, self.seq, field)

    def has(self, field: int) -> bool:
        raw = self.raw
        return field < len(raw) and bool(raw[field]) and raw[field] != _NULL

    def valued(self) -> list[int]:
        """Numbers of the fields that hold data (MSH-1 and MSH-2 excluded)."""
        start = 3 if self.name == "MSH" else 1
        return [n for n in range(start, len(self.raw)) if self.raw[n] and self.raw[n] != _NULL]

    def reps(self, field: int) -> list[Value]:
        """Every repetition of ``field`` that holds data."""
        found = self._reps.get(field)
        if found is None:
            found = self._reps[field] = self._split(field)
        return found

    def _split(self, field: int) -> list[Value]:
        raw_fields = self.raw
        if field >= len(raw_fields):
            return []
        raw = raw_fields[field]
        if not raw or raw == _NULL:
            return []
        d = self.d
        label = where(self.name, self.seq, field)
        if self.name == "MSH" and field <= 2:
            return [Value([raw], d, label)]
        rsep, csep = d.repetition, d.component
        if not rsep or rsep not in raw:
            return [Value(raw.split(csep) if csep else [raw], d, label)]
        out = []
        for n, piece in enumerate(raw.split(rsep), start=1):
            if piece and piece != _NULL:
                out.append(Value(piece.split(csep) if csep else [piece], d, label, n))
        return out

    def string(self, field: int) -> str:
        """An ST/TX field as text (``Value.text``): a '&' or '^' left unescaped is part of it."""
        v = self.value(field)
        return v.text() if v is not None else ""

    def value(self, field: int) -> Value | None:
        """The first repetition of ``field`` that holds data, or None."""
        reps = self.reps(field)
        for v in reps:
            if not v.empty():
                return v
        return None

    def text(self, field: int, component: int = 1) -> str:
        """Component ``component`` of the first repetition, unescaped ('' when absent)."""
        raw = self.raw
        if field >= len(raw):
            return ""
        x = raw[field]
        d = self.d
        if x and (not d.repetition or d.repetition not in x) and self.name != "MSH":
            # the common case, read without building Values: one repetition
            if x == _NULL:
                return ""
            if d.component and d.component in x:
                parts = x.split(d.component)
                x = parts[component - 1] if component <= len(parts) else ""
            elif component > 1:
                return ""
            if not x or x == _NULL:
                return ""
            if d.subcomponent and d.subcomponent in x:
                x = x.split(d.subcomponent, 1)[0]
            if d.escape and d.escape in x:
                x = unescape(x, d)
            return x.strip()
        v = self.value(field)
        return v[component] if v is not None else ""

    def __repr__(self) -> str:
        return f"<Seg {self.name}[{self.seq}]>"

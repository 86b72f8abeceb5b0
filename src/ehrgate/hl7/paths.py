"""Terse paths that address a value in a message.

Syntax (all numbers 1-based)::

    PID-5            field 5 of the first PID segment
    PID-5.1          component 1 (of the first repetition)
    PID-5.1.2        subcomponent 2 of component 1
    PID-3(2).1       component 1 of the second repetition of PID-3
    OBX[3]-5         field 5 of the third OBX segment
    OBX[3]-5(2).1.1  every level at once

Within a segment (``Segment.get``) the same path without the segment part is used: ``5.1``,
``3(2).1``. MSH fields are numbered as the standard does: MSH-1 is the field separator and MSH-2 the
encoding characters, so MSH-9 is the message type (HL7 v2.5 section 2.15.9).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import PathError

__all__ = ["FIELD", "REPETITION", "COMPONENT", "SUBCOMPONENT", "Path", "parse_path", "parse_relative_path"]

FIELD, REPETITION, COMPONENT, SUBCOMPONENT = 1, 2, 3, 4

_ABSOLUTE = re.compile(r"([A-Z][A-Z0-9]{2})(?:\[([0-9]+)\])?-(.+)")
_RELATIVE = re.compile(r"([0-9]+)(?:\(([0-9]+)\))?(?:\.([0-9]+)(?:\.([0-9]+))?)?")
_SYNTAX = "SEG[n]-field(rep).component.subcomponent, e.g. 'PID-5.1', 'OBX[3]-5', 'PID-3(2).1'"


class Path(NamedTuple):
    """A compiled path. ``depth`` is the deepest level the path names (FIELD..SUBCOMPONENT)."""

    segment: str
    occurrence: int
    field: int
    repetition: int
    component: int
    subcomponent: int
    depth: int

    def __str__(self) -> str:
        out = f"{self.segment}[{self.occurrence}]-{self.field}" if self.occurrence != 1 else \
            f"{self.segment}-{self.field}"
        if self.depth == REPETITION or self.repetition != 1:
            out += f"({self.repetition})"
        if self.depth >= COMPONENT:
            out += f".{self.component}"
        if self.depth == SUBCOMPONENT:
            out += f".{self.subcomponent}"
        return out


_cache: dict[str, Path] = {}


def parse_path(path: str) -> Path:
    """Compile ``path`` (cached). Raises PathError naming the path and the expected syntax."""
    found = _cache.get(path)
    if found is not None:
        return found
    match = _ABSOLUTE.fullmatch(path)
    if match is None:
        raise PathError(f"Path {path!r} is not a terse path (expected {_SYNTAX})")
    occurrence = _positive(match.group(2) or "1", path, "segment occurrence")
    compiled = _relative(match.group(3), path, match.group(1), occurrence)
    if len(_cache) > 4096:
        _cache.clear()
    _cache[path] = compiled
    return compiled


def parse_relative_path(path: str, segment: str) -> Path:
    """Compile a path inside one segment (``'5.1'``, ``'3(2)'``)."""
    key = segment + "|" + path
    found = _cache.get(key)
    if found is None:
        found = _cache[key] = _relative(path, path, segment, 1)
    return found


def _relative(text: str, path: str, segment: str, occurrence: int) -> Path:
    match = _RELATIVE.fullmatch(text)
    if match is None:
        raise PathError(f"Path {path!r} is not a terse path (expected {_SYNTAX})")
    field_s, rep_s, comp_s, sub_s = match.groups()
    field = _positive(field_s, path, "field number")
    depth = SUBCOMPONENT if sub_s else COMPONENT if comp_s else REPETITION if rep_s else FIELD
    return Path(segment, occurrence, field, _positive(rep_s or "1", path, "repetition"),
                _positive(comp_s or "1", path, "component"), _positive(sub_s or "1", path, "subcomponent"), depth)


def _positive(text: str, path: str, what: str) -> int:
    value = int(text)
    if value < 1:
        raise PathError(f"Path {path!r}: {what} {value} is not valid (expected 1 or more; paths are 1-based)")
    return value

"""Escape sequences in ER7 text data, HL7 v2.5 section 2.7 (v2.7+ section 2.7.1 adds ``\\P\\``).

Decoding (``unescape``) turns ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\`` into the delimiter they stand
for, ``\\Xhh..\\`` into the characters the hex bytes spell (UTF-8, falling back to Latin-1) and the
formatting command ``\\.br\\`` into a line feed. Every other sequence (highlighting ``\\H\\``/``\\N\\``,
other formatting commands, character-set switches ``\\C..\\``/``\\M..\\``, local ``\\Z..\\``) is kept
verbatim, escape characters included, so no information is lost; an escape character with no closing
partner is kept as text. ``unescape(text, plain=True)`` (FT text shown as plain text) also turns the
formatting commands of HL7 v2.5.1 section 2.7.6 into text: ``\\.sp n\\`` n line breaks (one without n),
``\\.ce\\`` a line break, ``\\.sk n\\`` n spaces; highlighting, indents and fill modes, which have no
plain-text form, are dropped.

Encoding (``escape``) is the inverse for any string: delimiters become their sequences, a line feed
becomes ``\\.br\\``, a carriage return and other C0 control characters (except tab) become
``\\Xhh\\`` so they can never end a segment or an MLLP frame. ``unescape(escape(s)) == s`` for every
``s``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from .delimiters import DEFAULT, Delimiters
from .errors import EncodeError

__all__ = ["escape", "unescape"]


# FT formatting commands (HL7 v2.5.1 section 2.7.6), read by ``unescape(..., plain=True)``
_FORMATTING = re.compile(r"H|N|\.(sp|sk|in|ti)\s*([+-]?\d*)|\.(ce|fi|nf)")


def unescape(text: str, delimiters: Delimiters = DEFAULT, *, plain: bool = False) -> str:
    """Decode the escape sequences in one primitive value (component or subcomponent text); with
    ``plain``, FT formatting commands too (module docstring)."""
    esc = delimiters.escape
    if not esc or esc not in text:
        return text
    parts = text.split(esc)
    out = [parts[0]]
    count = len(parts)
    i = 1
    while i < count:
        if i + 1 >= count:
            out.append(esc + parts[i])
            break
        out.append(_decode_sequence(parts[i], delimiters, plain))
        out.append(parts[i + 1])
        i += 2
    return "".join(out)


def _decode_sequence(seq: str, d: Delimiters, plain: bool = False) -> str:
    if plain and seq != ".br":
        m = _FORMATTING.fullmatch(seq)
        if m is not None:
            if m.group(1) in ("sp", "sk"):
                n = min(int(m.group(2).lstrip("+-") or 1), 9)  # bounded: the text, not the layout, matters
                return "\n" * n if m.group(1) == "sp" else " " * n
            return "\n" if m.group(3) == "ce" else ""
    if len(seq) == 1:
        simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape,
                  "P": d.truncation}.get(seq)
        if simple:
            return simple
    elif seq == ".br":
        return "\n"
    elif seq[:1] == "X" and len(seq) > 1 and len(seq) % 2 == 1:
        try:
            raw = bytes.fromhex(seq[1:])
        except ValueError:
            pass
        else:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
    return d.escape + seq + d.escape


def escape(text: str, delimiters: Delimiters = DEFAULT) -> str:
    """Encode ``text`` so it can be placed in one primitive value of an ER7 message."""
    pattern, replace = _escaper(delimiters)
    if pattern.search(text) is None:
        return text
    return pattern.sub(replace, text)


@lru_cache(maxsize=64)
def _escaper(d: Delimiters) -> tuple[re.Pattern[str], Callable[[re.Match[str]], str]]:
    esc = d.escape or "\\"
    table: dict[str, str] = {}
    for char, code in ((d.escape, "E"), (d.field, "F"), (d.component, "S"), (d.subcomponent, "T"),
                       (d.repetition, "R"), (d.truncation, "P")):
        if char:
            table[char] = f"{esc}{code}{esc}"
    for byte in (*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F):
        table[chr(byte)] = f"{esc}X{byte:02X}{esc}"
    table["\n"] = f"{esc}.br{esc}"
    if not d.escape:
        # MSH-2 declared no escape character (e.g. '^~'): delimiters cannot be carried as data.
        table = {char: "" for char in table if char not in (d.field, d.component, d.subcomponent,
                                                              d.repetition, d.truncation)}
        for char in (d.field, d.component, d.subcomponent, d.repetition, d.truncation):
            if char:
                table[char] = ""
    pattern = re.compile("[" + "".join(re.escape(c) for c in table) + "]")

    def replace(match: re.Match[str]) -> str:
        found = match.group()
        out = table[found]
        if not out:
            raise EncodeError(
                f"Value contains {found!r} but MSH-2 {d.encoding_characters!r} declares no escape character "
                "(expected text without delimiters or control characters)")
        return out

    return pattern, replace

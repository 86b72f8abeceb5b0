"""What the message store records about a message at receipt, read from its header (sans-I/O).

HL7 v2.5 section 2.15.9: MSH-3/MSH-4 sending application and facility, MSH-9 type, MSH-10 control
ID; PID-3 patient identifiers (data type CX). Also the text that the search index gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..hl7 import Delimiters, HL7Error, Message, decode, parse, unescape

__all__ = ["MessageInfo", "describe", "search_text", "SEARCH_TEXT_LIMIT"]

#: Text search covers the first 256 KiB of each message (PostgreSQL caps a tsvector at 1 MiB).
SEARCH_TEXT_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class MessageInfo:
    msg_type: str = ""
    control_id: str = ""
    sender: str = ""
    patient_ids: tuple[str, ...] = ()
    order_key: str = ""
    error: str | None = None
    """Why the message could not be parsed (it is stored with status ERROR and answered with AR)."""
    message: Message | None = field(default=None, compare=False, repr=False)


def _leaf(x: str, d: Delimiters) -> str:
    sub = d.subcomponent
    if sub and sub in x:
        x = x[: x.index(sub)]
    esc = d.escape
    return unescape(x, d) if esc and esc in x else x


def _first(x: str, d: Delimiters) -> str:
    """Repetition 1, component 1, subcomponent 1 of raw field text ``x``, unescaped: what
    ``Message.get('SEG-n')`` returns, without building a path."""
    if not x:
        return ""
    rep, comp = d.repetition, d.component
    if rep and rep in x:
        x = x[: x.index(rep)]
    if comp and comp in x:
        x = x[: x.index(comp)]
    return _leaf(x, d)


def _second(x: str, d: Delimiters) -> str:
    """Component 2 of repetition 1, unescaped: what ``Message.get('MSH-9.2')`` returns."""
    rep, comp = d.repetition, d.component
    if rep and rep in x:
        x = x[: x.index(rep)]
    if not comp or comp not in x:
        return ""
    return _leaf(x.split(comp, 2)[1], d)


def _value(x: str, d: Delimiters) -> str:
    """``_first(x, d)``, or ``x`` itself when it holds none of the four delimiters (the usual case)."""
    if d.component in x or d.repetition in x or d.subcomponent in x or d.escape in x:  # "" is in any text
        return _first(x, d)
    return x


def describe(raw: bytes, order_by: str | None = None) -> MessageInfo:
    """Header facts of ``raw``; ``order_by`` is a terse path whose value is the ordering key.

    The MSH and PID fields are read from the split segments directly: the same values as
    ``Message.get('MSH-9.1')`` etc. (tests/engine/test_acks.py proves it against them, over the
    samples, the corpus and generated delimiters and escapes), at a tenth of the cost, because this
    runs for every message before its ACK. A field holding none of the four delimiters (the usual
    case: every one declared, none in the text) is its own value; only the others go through
    ``_first``, which cuts and unescapes.
    """
    try:
        msg = parse(raw)
    except HL7Error as exc:
        return MessageInfo(error=exc.message)
    try:
        d = msg.delimiters
        rep, comp, sub, esc = d.repetition, d.component, d.subcomponent, d.escape
        msh = msg.segment("MSH")
        assert msh is not None  # parse guarantees it
        f = msh.fields
        n = len(f)
        nine = f[9] if n > 9 else ""
        if comp and rep not in nine and sub not in nine and esc not in nine:  # "" (undeclared) is in any text
            kind, _, rest = nine.partition(comp)
            if rest:
                trigger = rest.partition(comp)[0]
                if trigger:
                    kind += "^" + trigger
        else:
            kind = _first(nine, d)
            trigger = _second(nine, d) if nine else ""
            if trigger:
                kind += "^" + trigger
        sender = _value(f[3], d) if n > 3 else ""
        facility = _value(f[4], d) if n > 4 else ""
        if facility:
            sender += "^" + facility
        control_id = _value(f[10], d) if n > 10 else ""
        ids: list[str] = []
        pid = msg.segment("PID")
        if pid is not None:
            pf = pid.fields
            three = pf[3] if len(pf) > 3 else ""
            if three:
                plain = bool(comp) and sub not in three and esc not in three  # then a value ends at comp
                for r in (three.split(rep) if rep else [three]):
                    value = (r.partition(comp)[0] if plain else _first(r, d)) if r else ""
                    if value and value not in ids:
                        ids.append(value[:128])
        key = msg.get(order_by) if order_by else ""
        return MessageInfo(kind[:40], control_id[:64], sender[:128], tuple(ids), key[:128], None, msg)
    except HL7Error as exc:
        return MessageInfo(error=exc.message)


_NUL = re.compile("\x00")


def search_text(raw: bytes) -> str:
    """The decoded text that is indexed for search (bounded; NUL removed, PostgreSQL refuses it)."""
    text = decode(raw[:SEARCH_TEXT_LIMIT])[0]
    return _NUL.sub(" ", text) if "\x00" in text else text


_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_words(text: str) -> list[str]:
    """The words of a ``--text`` query, lower-case: letters and digits, as both indexes split them."""
    return [w.lower() for w in _WORD.findall(text)][:16]

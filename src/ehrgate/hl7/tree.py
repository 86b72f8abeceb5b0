"""A readable tree of a message for people (``ehrgate hl7 show``).

Every label is a terse path that ``Message.get`` accepts (``OBX[2]-5``, ``PID-3(2).4.1``), so what
you see is what you can address. Empty fields are left out; components and subcomponents are shown
only when a field has more than one; leaf values are decoded, field summaries are raw ER7. Control
characters in decoded values (a line break from ``\\.br\\``) are shown as ``\\n``-style escapes so each
item stays on one line.
"""

from __future__ import annotations

from .delimiters import Delimiters
from .escape import unescape as _unescape
from .fields import field_name, segment_name
from .message import Message

__all__ = ["format_tree"]


def format_tree(message: Message) -> str:
    """Render ``message`` as an indented tree, one line per segment, non-empty field and part."""
    d = message.delimiters
    lines: list[str] = []
    seen: dict[str, int] = {}
    for segment in message.segments:
        name = segment.name
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}[{seen[name]}]"
        title = segment_name(name)
        lines.append(f"{label}  {title}" if title else label)
        raw_fields = segment.fields
        for number in range(1, len(raw_fields)):
            raw = raw_fields[number]
            if not raw:
                continue
            fname = field_name(name, number)
            caption = f" {fname}:" if fname else ""
            reps = segment.parts(number)
            for r, comps in enumerate(reps, start=1):
                if not any(any(subs) for subs in comps):
                    continue
                path = f"{label}-{number}" + (f"({r})" if len(reps) > 1 else "")
                flat = len(comps) == 1 and len(comps[0]) == 1
                text = unescape(comps[0][0], d) if flat else _join(comps, d.component, d.subcomponent)
                lines.append(f"  {path}{caption} {text}")
                if flat:
                    continue
                for c, subs in enumerate(comps, start=1):
                    if not any(subs):
                        continue
                    if len(subs) == 1:
                        lines.append(f"    {path}.{c}  {unescape(subs[0], d)}")
                        continue
                    lines.append(f"    {path}.{c}  {d.subcomponent.join(subs)}")
                    for s, sub in enumerate(subs, start=1):
                        if sub:
                            lines.append(f"      {path}.{c}.{s}  {unescape(sub, d)}")
    return "\n".join(lines) + "\n"


def unescape(text: str, d: Delimiters) -> str:
    """Decoded text made printable on one line."""
    value = _unescape(text, d)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def _join(comps: list[list[str]], component: str, subcomponent: str) -> str:
    return component.join(subcomponent.join(subs) for subs in comps)

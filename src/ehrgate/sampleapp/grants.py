"""What the granted scopes let each section of the summary show (SMART App Launch 2.2 §Scopes).

The app reads the ``scope`` of the token response (the server echoes what the user actually
granted, which may be less than asked, or narrower category scopes) and decides per section:
``full`` (shown), ``partial`` (shown, but only some categories were shared) or ``none`` (the section
says it is unavailable and why). v1 (``.read``) and v2 (``.rs``, query-constrained) both count.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

__all__ = ["Access", "section_access"]

_SCOPE = re.compile(r"^(patient|user)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(?:\?(.*))?$")


@dataclass(frozen=True)
class Access:
    status: str  # full | partial | none
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status != "none"


def _letters(perms: str) -> set[str]:
    if perms in ("read", "*"):
        return {"r", "s"}
    if perms == "write":
        return set()
    return set(perms)


def section_access(granted: str, res_type: str, label: str, *, need: str = "s", category: str | None = None) -> Access:
    """Whether the granted scopes allow ``need`` (``r`` read, ``s`` search) on ``res_type``,
    restricted to ``category`` (a code such as ``laboratory``) when the section shows only that."""
    wanted = f"patient/{res_type}.rs" + (f"?category={category}" if category else "")
    shared_categories: list[str] = []
    for raw in granted.split():
        m = _SCOPE.match(raw)
        if not m or m.group(2) not in ("*", res_type) or need not in _letters(m.group(3)):
            continue
        constraints = dict(parse_qsl(m.group(4) or ""))
        constrained = constraints.get("category")
        if constrained is None:
            return Access("full")
        code = constrained.split("|")[-1]
        if category is not None and code == category:
            return Access("full")
        shared_categories.append(code.replace("-", " "))
    if shared_categories and category is None:
        return Access("partial", f"Only {', '.join(shared_categories)} {label} were shared with the app; others are not shown.")
    if shared_categories:
        return Access("none", f"Only {', '.join(shared_categories)} records were shared with the app, not {label}. To see "
                              f"them, launch the app again and keep {label} ticked on the consent page ({wanted}).")
    return Access("none", f"Not shared: when the app was authorized, permission to read {label} was not granted "
                          f"(the app asks for {wanted}). To see them, launch the app again and keep {label} ticked on "
                          "the consent page.")

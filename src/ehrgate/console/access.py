"""Who may do what in the engine console: the engine admin API's own table
(``engine.access.PERMISSIONS``), read as the console's two levels.

``VIEW`` is the engine's ``read``; ``CONTROL`` needs both ``control`` and ``reprocess`` (its buttons
pause, resume, deploy, undeploy and reprocess). So ``admin`` and ``operator`` see and act,
``viewer`` only sees, and every other role (clinicians, patients) is refused - as in the admin API.
A role counts only while ``smart.users.ROLES`` declares it, so a role that is not (or no longer)
declared grants nothing.
"""

from __future__ import annotations

from ..engine.access import PERMISSIONS
from ..smart import users

__all__ = ["CONTROL", "VIEW", "console_permissions", "console_roles"]

VIEW = "view"
"""See channels, their statistics, messages and their content."""
CONTROL = "control"
"""Deploy, undeploy, pause and resume channels; reprocess messages."""

_NEEDS: dict[str, tuple[str, ...]] = {VIEW: ("read",), CONTROL: ("control", "reprocess")}


def console_permissions(role: str) -> frozenset[str]:
    """What a signed-in user with ``role`` may do in the console (empty: refused)."""
    if role not in users.ROLES:
        return frozenset()
    return frozenset(level for level, needs in _NEEDS.items() if all(role in PERMISSIONS[p] for p in needs))


def console_roles() -> list[str]:
    """The declared roles that may open the console, for the sentence that refuses the others."""
    return [r for r in PERMISSIONS["read"] if r in users.ROLES]

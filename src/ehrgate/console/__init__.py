"""The web console of the HL7 v2 engine (``/console``): channels with their state and statistics
and the buttons that control them, message search, and each message with every stage, delivery and
attempt. Server-rendered pages; sign-in and session are the authorization server's (docs/engine.md
"Web console")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from .access import CONTROL, VIEW, console_permissions
from .pages import Console

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..smart.server import SmartServer

__all__ = ["CONTROL", "VIEW", "Console", "console_permissions", "console_routes"]


def console_routes(srv: SmartServer, engine: Any = None) -> list[Route]:
    """The console's routes; ``engine`` (an ``ehrgate.engine.Engine``) or None when this process runs none."""
    c = Console(srv, engine)
    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/console", c.channels, ["GET"]),
        ("/console/channels/{name}/{action}", c.control, ["POST"]),
        ("/console/messages", c.messages, ["GET"]),
        ("/console/messages/{id}", c.message, ["GET"]),
        ("/console/messages/{id}/reprocess", c.reprocess, ["POST"]),
    ]
    return [Route(path, fn, methods=methods) for path, fn, methods in table]

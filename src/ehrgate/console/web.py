"""The console's HTTP edge: who is signed in (the EHR simulator's session cookie), rendering
(Jinja2, autoescaped, templates under ``templates/``), flash messages and the refusal pages.

Sign-in is the authorization server's (``/auth/login``, ``smart.authorize``): the console reads the
same session and uses the same double-submit CSRF cookie for its forms. Pages carry a strict
Content-Security-Policy (no script at all; message content is untrusted input).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..smart.authorize import _session_user
from ..smart.users import User
from ..smart.web import CSRF_COOKIE, check_csrf, csrf_token, set_cookie
from .access import CONTROL, VIEW, console_permissions, console_roles

if TYPE_CHECKING:
    from ..smart.server import SmartServer

__all__ = ["FLASH_COOKIE", "Visitor", "check_csrf", "flash", "refuse", "render", "visitor"]

FLASH_COOKIE = "ehrgate_console_flash"
TEMPLATES = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


@dataclass(frozen=True)
class Visitor:
    """The signed-in user and what the console lets them do."""

    user: User
    permissions: frozenset[str]

    @property
    def may_control(self) -> bool:
        return CONTROL in self.permissions


def render(request: Request, template: str, *, secure: bool, status: int = 200, **context: Any) -> HTMLResponse:
    """A console page: the CSRF value for its forms (cookie set when new) and the pending flash
    message (shown once: its cookie is deleted)."""
    token, new = csrf_token(request)
    note = _read_flash(request)
    html = TEMPLATES.get_template(template).render(csrf=token, flash=note, **context)
    response = HTMLResponse(html, status, headers=dict(HEADERS))
    if new:
        set_cookie(response, CSRF_COOKIE, token, secure=secure)
    if note is not None:
        response.delete_cookie(FLASH_COOKIE, path="/console", httponly=True, samesite="lax", secure=secure)
    return response


def flash(url: str, text: str, *, ok: bool, secure: bool) -> RedirectResponse:
    """Redirect (303, after a POST) to ``url``, which shows ``text`` once."""
    response = RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
    value = quote(("ok|" if ok else "error|") + text[:400], safe="")
    response.set_cookie(FLASH_COOKIE, value, max_age=120, path="/console", httponly=True, samesite="lax", secure=secure)
    return response


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, text = unquote(raw).partition("|")
    return {"ok": kind == "ok", "text": text} if text else None


def refuse(request: Request, title: str, message: str, *, secure: bool, status: int = 403,
           user: User | None = None, link: tuple[str, str] | None = None,
           who: Visitor | None = None) -> HTMLResponse:
    """A page that says what went wrong and what to do (never a stack trace); ``who``: a console
    user, whose page keeps the console's navigation."""
    return render(request, "error.html", secure=secure, status=status, title=title, message=message,
                  user=who.user if who else user, link=link, visitor=who)


async def visitor(srv: SmartServer, request: Request, *, need: str = VIEW, back: str | None = None,
                  refused: Callable[[Visitor], Awaitable[None]] | None = None) -> Visitor | Response:
    """The signed-in user allowed ``need``; otherwise the answer to send: the sign-in page (coming
    back to ``back``, default this page) or a page saying why the user may not. ``refused`` is
    awaited when a console user lacks ``need`` (the audit trail records the attempt)."""
    found = await _session_user(srv, request)
    secure = srv.secure_cookies
    if found is None:
        if back is None:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/auth/login?{urlencode({'next': back})}", status_code=303,
                                headers={"Cache-Control": "no-store"})
    user: User = found[2]
    permissions = console_permissions(user.role)
    if VIEW not in permissions:
        roles = " or ".join(console_roles()) or "admin"
        return refuse(request, "The engine console is for integration staff",
                      f"You are signed in as {user.username}, a {user.role}. The engine console needs the role "
                      f"{roles}. Sign out and sign in with such an account, or ask an administrator for one.",
                      secure=secure, user=user, link=("/", "Back to the start page"))
    who = Visitor(user, permissions)
    if need not in permissions:
        if refused is not None:
            await refused(who)
        return refuse(request, "Your role can only look",
                      f"You are signed in as {user.username}, a {user.role}: you can see channels and messages but "
                      "not change them. Ask an operator or an administrator to do it.",
                      secure=secure, who=who, link=(back or "/console", "Back to the console"))
    return who


"""HTTP helpers of the authorization server: JSON and OAuth-error responses, CORS, cookies, CSRF,
and server-rendered pages (Jinja2, autoescaped, templates under ``templates/``)."""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .errors import NO_STORE, OAuthError
from .hashing import new_token

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "check_csrf",
    "cors",
    "csrf_token",
    "error_page",
    "json_response",
    "oauth_error",
    "page",
    "preflight",
    "set_cookie",
]

SESSION_COOKIE = "ehrgate_session"
CSRF_COOKIE = "ehrgate_csrf"
TEMPLATES = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def json_response(body: Any, status: int = 200, *, no_store: bool = True, headers: dict[str, str] | None = None) -> Response:
    out = dict(NO_STORE) if no_store else {}
    out.update(headers or {})
    return Response(json.dumps(body), status, out, media_type="application/json")


def oauth_error(exc: OAuthError, request: Request | None = None, *, cors_open: bool = False) -> Response:
    status, body, headers = exc.render()
    if cors_open and request is not None:
        headers.update(cors(request))
    return Response(body, status, headers)


def cors(request: Request, *, methods: str = "GET, POST, OPTIONS") -> dict[str, str]:
    """Open CORS without credentials: discovery, JWKS and the token endpoint of public clients."""
    origin = request.headers.get("origin")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def preflight(request: Request) -> Response:
    return Response(None, 204, cors(request))


def set_cookie(response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax", secure=secure)


def csrf_token(request: Request) -> tuple[str, bool]:
    """The double-submit CSRF value for forms: (value, whether the cookie must be set)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return new_token(24), True


def check_csrf(request: Request, form_value: Any) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    value = form_value if isinstance(form_value, str) else ""
    # as bytes: compare_digest refuses str with non-ASCII characters (a forged value could hold any)
    return bool(cookie) and bool(value) and hmac.compare_digest(cookie.encode(), value.encode())


def page(
    request: Request, template: str, *, status: int = 200, secure: bool = False, **context: Any
) -> HTMLResponse:
    """Render a page; forms get the CSRF value (cookie set here when new)."""
    token, new = csrf_token(request)
    html = TEMPLATES.get_template(template).render(csrf=token, **context)
    response = HTMLResponse(html, status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer",
    })
    if new:
        set_cookie(response, CSRF_COOKIE, token, secure=secure)
    return response


def error_page(request: Request, title: str, message: str, *, status: int = 400, secure: bool = False,
               link: tuple[str, str] | None = None, user: Any = None) -> HTMLResponse:
    """A page that says what went wrong and what to do; ``link`` (href, text): where to go next;
    ``user``: signed in, so the page offers to sign out."""
    return page(request, "error.html", status=status, secure=secure, title=title, message=message, link=link, user=user)

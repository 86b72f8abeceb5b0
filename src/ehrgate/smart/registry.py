"""The app registry in the browser (``/ehr/apps``, admins only): the registered SMART apps, a form
to register one, and for apps registered here or with the CLI, *Rotate secret* and *Remove*. The
same service as ``ehrgate apps`` and ``/admin/apps``; apps declared in ``ehrgate.yaml`` are shown
and left to the file. A new or rotated client secret is shown once, on the page that answers the
form, and never again (it is stored as a digest)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .apps import (
    CLIENT_TYPES,
    App,
    AppError,
    add_app,
    get_app,
    list_apps,
    record_change,
    remove_app,
    rotate_secret,
)
from .authorize import _session_user
from .web import check_csrf, error_page, page

if TYPE_CHECKING:
    from ..fhir.store.service import WriteSession
    from .server import SmartServer

__all__ = ["PATH", "add", "app_action", "registry"]

PATH = "/ehr/apps"


async def _admin(srv: SmartServer, request: Request) -> Any:
    found = await _session_user(srv, request)
    if found is None:
        return RedirectResponse(f"/auth/login?next={quote(PATH)}", status_code=303)
    user = found[2]
    if user.role != "admin":
        return error_page(request, "The app registry is for administrators",
                          f"You are signed in as {user.username}, a {user.role}. Registering and removing apps needs "
                          "the admin role.", status=403, secure=srv.secure_cookies, link=("/ehr", "Back to patients"),
                          user=user)
    return user


async def _posted(srv: SmartServer, request: Request) -> Any:
    """A form of the registry page: (admin, form), or the answer that refuses it (sign-in, another
    role, an expired or forged CSRF value)."""
    user = await _admin(srv, request)
    if isinstance(user, Response):
        return user
    form = await request.form()
    if not check_csrf(request, form.get("csrf")):
        return error_page(request, "The form has expired", "Reload the app registry and send the form again.",
                          status=403, secure=srv.secure_cookies, link=(PATH, "App registry"), user=user)
    return user, form


def _record(srv: SmartServer, w: WriteSession, request: Request, user: Any, change: str, client_id: str) -> None:
    record_change(w, change, client_id, actor=user.username, user=user.fhir_user or None, via="page",
                  request_id=request.scope.get("state", {}).get("request_id"), now=srv.clock())


def _render(srv: SmartServer, request: Request, user: Any, apps: list[App], *, status: int = 200,
            form: dict[str, str] | None = None, error: str = "", notice: str = "", secret: str = "",
            secret_for: str = "") -> Response:
    response = page(request, "registry.html", status=status, secure=srv.secure_cookies, user=user,
                    apps=[a.summary() for a in apps], types=CLIENT_TYPES, form=form or {}, error=error,
                    notice=notice, secret=secret, secret_for=secret_for)
    response.headers["Cache-Control"] = "no-store"  # a page with a secret on it is never cached
    return response


async def registry(srv: SmartServer, request: Request) -> Response:
    user = await _admin(srv, request)
    if isinstance(user, Response):
        return user
    done = {"removed": "The app was removed: it can no longer start a launch or get tokens."}.get(
        request.query_params.get("done", ""), "")
    return _render(srv, request, user, await srv.reading(list_apps), notice=done)


def _app_from_form(form: Any) -> App:
    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    kwargs: dict[str, Any] = {}
    scopes = " ".join(text("scopes").split())
    if scopes:
        kwargs["scopes"] = scopes
    return App(client_id=text("client_id"), name=text("name"), client_type=text("type"),
               redirect_uris=tuple(u for u in text("redirect_uris").split() if u), launch_url=text("launch_url"),
               description=text("description"), jwks_uri=text("jwks_uri"), source="web", **kwargs)


async def add(srv: SmartServer, request: Request) -> Response:
    posted = await _posted(srv, request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    shown = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
    try:
        app = _app_from_form(form)

        def write(w: WriteSession) -> tuple[App, str | None]:
            done = add_app(w.conn, app, now=srv.now())
            _record(srv, w, request, user, "add", app.client_id)
            return done

        created, secret = await srv.writing(write)
    except AppError as exc:
        return _render(srv, request, user, await srv.reading(list_apps), status=400, form=shown, error=str(exc))
    return _render(srv, request, user, await srv.reading(list_apps),
                   notice=f"Registered {created.name} ({created.client_id}).", secret=secret or "",
                   secret_for=created.client_id)


async def app_action(srv: SmartServer, request: Request) -> Response:
    posted = await _posted(srv, request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    client_id, action = request.path_params["client_id"], request.path_params["action"]
    app = await srv.reading(lambda conn: get_app(conn, client_id))
    problem = ""
    if app is None:
        problem = f"No app with client_id {client_id!r} is registered."
    elif app.source == "config":
        problem = (f"{app.name} is declared in ehrgate.yaml: change or remove it there (the file is the registry of "
                   "the apps it declares).")
    elif action not in ("remove", "rotate-secret"):
        problem = f"Unknown action {action!r}. Expected remove or rotate-secret."
    if problem:
        return _render(srv, request, user, await srv.reading(list_apps), status=400, error=problem)
    try:
        if action == "remove":
            def remove(w: WriteSession) -> None:
                remove_app(w.conn, client_id)
                _record(srv, w, request, user, "remove", client_id)

            await srv.writing(remove)
            return RedirectResponse(f"{PATH}?done=removed", status_code=303)

        def rotate(w: WriteSession) -> str:
            new = rotate_secret(w.conn, client_id)
            _record(srv, w, request, user, "rotate-secret", client_id)
            return new

        secret = await srv.writing(rotate)
    except AppError as exc:
        return _render(srv, request, user, await srv.reading(list_apps), status=400, error=str(exc))
    return _render(srv, request, user, await srv.reading(list_apps),
                   notice=f"New client secret for {client_id}; the old one no longer works.", secret=secret,
                   secret_for=client_id)

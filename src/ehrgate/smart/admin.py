"""The admin HTTP API for the app registry (the same service the CLI uses).

``GET/POST /admin/apps``, ``GET/DELETE /admin/apps/{client_id}``, ``POST
/admin/apps/{client_id}/rotate-secret``. Authenticated with HTTP Basic as a user with the ``admin``
role; writes take JSON only (a cross-site form cannot send it). Secrets appear once, in the answer
to add/rotate.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..ratelimit import client_key
from .apps import App, AppError, add_app, get_app, list_apps, record_change, remove_app, rotate_secret
from .users import User, authenticate
from .web import json_response

if TYPE_CHECKING:
    from ..fhir.store.service import WriteSession
    from .server import SmartServer

__all__ = ["app_item", "apps_collection", "rotate"]

log = logging.getLogger("ehrgate.smart.admin")


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers=headers)


async def _admin(srv: SmartServer, request: Request) -> Response | User:
    """The signed-in admin, or the answer that refuses the request."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Basic realm="EHRGate admin"'}
    if scheme.lower() != "basic":
        return _problem(401, "Sign in with HTTP Basic as an admin user.", challenge)
    try:
        username, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return _problem(401, "The Basic credentials are not base64 of username:password.", challenge)
    address = client_key(request.client.host if request.client else "")
    wait = srv.login_failures.wait(address)  # the sign-in page's limit: guesses here count there too
    if wait:
        return _problem(429, f"Too many failed sign-ins from this address; try again in {wait} s.",
                        {"Retry-After": str(wait)})
    srv.login_failures.hit(address)
    user = await srv.reading(lambda conn: authenticate(conn, username, password))
    if user is None:
        log.warning("admin API: failed sign-in as %r from %s", username[:64], address or "?")
        return _problem(401, "The username or password is not right.", challenge)
    srv.login_failures.forgive(address)
    if user.role != "admin":
        return _problem(403, f"User {username!r} is not an admin.")
    return user


def _record(srv: SmartServer, w: WriteSession, request: Request, user: User, change: str, client_id: str) -> None:
    record_change(w, change, client_id, actor=user.username, user=user.fhir_user or None, via="api",
                  request_id=request.scope.get("state", {}).get("request_id"), now=srv.clock())


def app_from_json(data: Any) -> App:
    if not isinstance(data, dict):
        raise AppError("Send a JSON object with client_id, name, type, redirect_uris, ….")
    known = {"client_id", "name", "type", "redirect_uris", "launch_url", "description", "icon_url", "scopes", "jwks", "jwks_uri"}
    unknown = set(data) - known
    if unknown:
        raise AppError(f"Unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}.")
    scopes = data.get("scopes")
    if isinstance(scopes, list):
        scopes = " ".join(scopes)
    kwargs: dict[str, Any] = {}
    if scopes:
        kwargs["scopes"] = str(scopes)
    return App(
        client_id=str(data.get("client_id") or ""), name=str(data.get("name") or ""), client_type=str(data.get("type") or ""),
        redirect_uris=tuple(str(u) for u in data.get("redirect_uris") or ()), launch_url=str(data.get("launch_url") or ""),
        description=str(data.get("description") or ""), icon_url=str(data.get("icon_url") or ""),
        jwks=data.get("jwks"), jwks_uri=str(data.get("jwks_uri") or ""), source="api", **kwargs,
    )


async def apps_collection(srv: SmartServer, request: Request) -> Response:
    user = await _admin(srv, request)
    if isinstance(user, Response):
        return user
    if request.method == "GET":
        apps = await srv.reading(list_apps)
        return json_response({"apps": [a.summary() for a in apps]})
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _problem(415, "Send the app as JSON (Content-Type: application/json).")
    try:
        app = app_from_json(json.loads(await request.body()))

        def add(w: WriteSession) -> tuple[App, str | None]:
            done = add_app(w.conn, app, now=srv.now())
            _record(srv, w, request, user, "add", app.client_id)
            return done

        created, secret = await srv.writing(add)
    except json.JSONDecodeError:
        return _problem(400, "The body is not valid JSON.")
    except AppError as exc:
        return _problem(400, str(exc))
    body = created.summary()
    if secret:
        body["client_secret"] = secret
    return json_response(body, 201)


async def app_item(srv: SmartServer, request: Request) -> Response:
    user = await _admin(srv, request)
    if isinstance(user, Response):
        return user
    client_id = request.path_params["client_id"]
    if request.method == "DELETE":
        try:
            def remove(w: WriteSession) -> None:
                remove_app(w.conn, client_id)
                _record(srv, w, request, user, "remove", client_id)

            await srv.writing(remove)
        except AppError as exc:
            return _problem(404, str(exc))
        return Response(None, 204)
    app = await srv.reading(lambda conn: get_app(conn, client_id))
    if app is None:
        return _problem(404, f"No app with client_id {client_id!r}.")
    return json_response(app.summary())


async def rotate(srv: SmartServer, request: Request) -> Response:
    user = await _admin(srv, request)
    if isinstance(user, Response):
        return user
    client_id = request.path_params["client_id"]
    try:
        def rotate_it(w: WriteSession) -> str:
            new = rotate_secret(w.conn, client_id)
            _record(srv, w, request, user, "rotate-secret", client_id)
            return new

        secret = await srv.writing(rotate_it)
    except AppError as exc:
        return _problem(404 if "No app" in str(exc) else 400, str(exc))
    return json_response({"client_id": client_id, "client_secret": secret})

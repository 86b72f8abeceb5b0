"""The ASGI application: the FHIR API under ``/fhir`` (later: SMART, console, engine admin).

``create_app(settings, store)`` wires the parts; ``open_store(settings)`` (from ``database.py``) opens
and migrates the database. Errors are rendered in one place per surface: FHIR errors as OperationOutcome.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .bulk import BulkExports, bulk_routes
from .database import MIGRATION_DIRS as MIGRATION_DIRS
from .database import open_store
from .fhir.api import FhirContext, FhirRoute
from .fhir.api.render import error_response
from .fhir.capability import OPERATION_DEFINITIONS, build_capability
from .fhir.errors import FhirError, MethodNotAllowed, NotFound, PayloadTooLarge
from .fhir.store.service import Store
from .settings import Settings

__all__ = ["create_app", "open_store"]

log = logging.getLogger("ehrgate")
access_log = logging.getLogger("ehrgate.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _BodyTooLarge(Exception):
    def __init__(self, error: FhirError) -> None:
        super().__init__(error.diagnostics)
        self.error = error


def _declared_too_large(scope: Scope, limit: int) -> FhirError | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            if value.isdigit() and int(value) > limit:
                return PayloadTooLarge(f"The request body is {int(value)} bytes; the limit is {limit} bytes "
                                       "(setting max_body_bytes).")
            break
    return None


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body once it passes ``limit`` bytes (the app gets ``_BodyTooLarge``)."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge(PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes "
                                                    "(setting max_body_bytes)."))
        return message

    return capped


class RequestIdMiddleware:
    """Gives every request an id (``X-Request-Id``, kept if the client sent a sane one), logs one
    access line with it, and turns any unhandled exception into an OperationOutcome (no stack
    traces to clients; the log gets the traceback and the id, never the body)."""

    def __init__(self, app: ASGIApp, access_lines: bool = False, max_body: int = 0) -> None:
        self.app = app
        self.access_lines = access_lines
        self.max_body = max_body
        """Largest request body (setting ``max_body_bytes``; 0: no limit here), for every route: the
        FHIR handlers checked it, but the forms (token endpoint, sign-in, consent) and the Bulk Data
        kick-off read whatever came, so one huge POST could take the server's memory."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        if self.max_body and scope["method"] in _BODY_METHODS:
            too_large = _declared_too_large(scope, self.max_body)
            if too_large is not None:
                await error_response(None, too_large)(scope, receive, send)
                return
            receive = _capped(receive, self.max_body)
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except _BodyTooLarge as exc:  # a body without Content-Length (chunked) that grew past the limit
            if not response_started:
                await error_response(None, exc.error)(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s %s %s failed", request_id, scope.get("method"), scope.get("path"))
            if not response_started:
                response = error_response(None, FhirError(f"The server failed to handle the request (request id {request_id})."))
                await response(scope, receive, send_with_id)
        finally:
            if self.access_lines and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s %d %.1fms", request_id, scope.get("method"), scope.get("path"), status,
                    (time.perf_counter() - started) * 1000,
                )


class _EngineUsers:
    """EHRGate's users for the engine admin API (``engine.access.UserDirectory``): the engine does not
    import the SMART package, so the two meet here. Passwords are checked (argon2, tens of
    milliseconds) in a worker thread: the event loop also answers MLLP senders."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def role_of(self, username: str, password: str) -> str | None:
        import anyio

        from .smart.users import authenticate

        def check() -> str | None:
            with self.store.reader() as conn:
                user = authenticate(conn, username, password)
            return user.role if user else None

        return await anyio.to_thread.run_sync(check)

    async def has_engine_users(self) -> bool:
        import anyio

        from .engine.access import ENGINE_ROLES
        from .smart.users import has_role

        def check() -> bool:
            with self.store.reader() as conn:
                return has_role(conn, ENGINE_ROLES)

        return await anyio.to_thread.run_sync(check)


def _engine_routes(engine: Any, settings: Settings, store: Store) -> list[Any]:
    from .engine.http import engine_routes

    return engine_routes(engine, settings.admin_token, _EngineUsers(store))


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return error_response(request, exc)


_API_PREFIXES = ("/fhir", "/bulk", "/admin", "/metrics", "/auth/token", "/auth/introspect", "/auth/revoke",
                 "/auth/jwks", "/channels")


def _wants_page(request: Request) -> bool:
    """A person's browser asking for a page outside the APIs (those answer OperationOutcomes)."""
    path = request.url.path
    if any(path == p or path.startswith(p + "/") for p in _API_PREFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


_PAGE = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
         'content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>{title} · EHRGate</title>'
         '<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;'
         'color:#1b1f24}}li{{margin:.3rem 0}}</style></head><body><h1>{title}</h1>{body}</body></html>')
_LINKS = ('<ul><li><a href="/ehr">EHR simulator</a> - patient list, charts, app launch (sign in)</li>'
          '<li><a href="/console">Engine console</a> - HL7 v2 channels, message search, reprocess (sign in)</li>'
          '<li><a href="/sample-app">Sample SMART app</a></li>'
          '<li><a href="/fhir/metadata">FHIR CapabilityStatement</a> (the API is at /fhir)</li>'
          '<li><a href="/fhir/.well-known/smart-configuration">SMART configuration</a></li></ul>')


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _wants_page(request) and exc.status_code in (404, 405):
        from html import escape

        text = (f"<p>Nothing is served at <code>{escape(request.url.path)}</code>.</p>" if exc.status_code == 404
                else f"<p>{escape(request.method)} is not allowed on <code>{escape(request.url.path)}</code>.</p>")
        return HTMLResponse(_PAGE.format(title="Not found" if exc.status_code == 404 else "Not allowed",
                                         body=text + "<p>Where to go:</p>" + _LINKS), exc.status_code)
    if exc.status_code == 404:
        err: FhirError = NotFound(f"Nothing is served at {request.url.path}.")
    elif exc.status_code == 405:
        err = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
    else:
        err = FhirError(str(exc.detail))
        err.status = exc.status_code
    return error_response(request, err)


def create_app(settings: Settings, store: Store | None = None, engine: Any = None) -> Starlette:
    """``engine`` (an ``ehrgate.engine.Engine``): its HTTP source, admin API and /metrics are mounted."""
    from .console import console_routes
    from .fhir.operations.everything import NAME as EVERYTHING
    from .fhir.operations.everything import everything
    from .fhir.validation import known_resource_types
    from .smart.server import SmartServer

    store = store or open_store(settings)
    smart = SmartServer(settings, store)
    from .sampleapp import SampleApp
    from .smart.demo import SAMPLE_APP

    sample_app = SampleApp(settings.public_base + "/fhir", SAMPLE_APP, secure_cookies=smart.secure_cookies)
    base = settings.public_base + "/fhir"
    types = frozenset(known_resource_types())
    started = datetime.now(UTC).isoformat(timespec="seconds")
    operations_defs = {EVERYTHING: OPERATION_DEFINITIONS["everything"], **BulkExports.OPERATION_DEFINITIONS}
    cap_cache: dict[str, Any] = {}

    def capability() -> dict[str, Any]:
        if "cap" not in cap_cache:
            cap_cache["cap"] = build_capability(
                base, types, operations_defs, software_date=started, security=smart.capability_security()
            )
        return cap_cache["cap"]

    ctx = FhirContext(
        store=store,
        base=base,
        known_types=types,
        max_body=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        page_size=settings.default_page_size,
        max_page=settings.max_page_size,
        capability=capability,
        operations={EVERYTHING: everything},
        policy=smart.policy,
    )
    bulk = BulkExports(settings, store, ctx)  # registers $export; `ehrgate serve` starts its worker
    ctx.capability = bulk.capability(capability)

    from .fhir.audit import AuditSink

    ctx.audit = AuditSink(store, enabled=settings.audit_access, max_calls=settings.audit_access_max_calls)
    fhir_route = FhirRoute("/fhir", ctx)

    async def root(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):  # a person: where to go; a client: the API
            from html import escape

            return HTMLResponse(_PAGE.format(title="EHRGate", body=f"<p>FHIR base: <code>{escape(base)}</code></p>" + _LINKS))
        return RedirectResponse(url="/fhir/metadata")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        ctx.audit.flush()  # the calls of the last second, before whoever owns the store closes it

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            fhir_route,  # first: O(1) dispatch; leaves /fhir/.well-known/… to the SMART routes
            Route("/", root),
            Route("/healthz", health),
            *smart.routes(),
            *sample_app.routes(),  # /sample-app: the bundled SMART app (docs/smart.md)
            *bulk_routes(bulk),
            *console_routes(smart, engine),  # /console: the engine's web console (docs/engine.md)
            *(_engine_routes(engine, settings, store) if engine is not None else []),
        ],
        exception_handlers={FhirError: _fhir_error, HTTPException: _http_error},
        middleware=[],
        lifespan=lifespan,
    )
    app.state.fhir = ctx
    app.state.settings = settings
    app.state.store = store
    app.state.smart = smart
    app.state.sample_app = sample_app
    app.state.bulk = bulk
    app.add_middleware(RequestIdMiddleware, access_lines=settings.access_log, max_body=settings.max_body_bytes)
    return app

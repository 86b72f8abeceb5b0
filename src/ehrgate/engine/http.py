"""HTTP edges of the engine: the HTTP source, the admin API (with its OpenAPI description) and
``/metrics``. Handlers are thin: they parse, call the Engine or the MessageStore, render JSON.

Admin API access: with the ``admin_token`` setting, a ``Bearer`` token equal to it; without, only
requests from the loopback address. (Role-based access comes with the SMART package.)
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import ChannelConfigError, UnknownChannel
from .runner import Engine
from .stats import CONTENT_TYPE
from .store import STATUSES, SearchQuery
from .timeparse import TimeError, parse_since

__all__ = ["engine_routes"]

HL7_TYPE = "application/hl7-v2; charset=utf-8"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, (bytes, bytearray, memoryview)):
            v = bytes(v).decode("utf-8", "replace")
        out[k] = v
    return out


def engine_routes(engine: Engine, admin_token: str = "") -> list[Route]:
    store = engine.messages

    def guarded(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            if admin_token:
                given = request.headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {admin_token}".encode()):
                    return _error(401, "The admin API needs 'Authorization: Bearer <admin_token>'.")
            elif (request.client.host if request.client else "") not in _LOOPBACK:
                return _error(403, "The admin API answers only loopback requests; set the admin_token setting "
                              "to use it from elsewhere.")
            try:
                return await fn(request)
            except UnknownChannel as exc:
                return _error(404, exc.message)
            except ChannelConfigError as exc:
                return _error(422, exc.message)
        return wrapper

    async def receive(request: Request) -> Response:
        """HTTP source: POST one HL7 v2 message; the answer is its ACK (HTTP 200 whatever MSA-1 says,
        as in HL7 over HTTP; the code is also in the X-HL7-Ack-Code header)."""
        name = request.path_params["name"]
        rt = engine.runtimes.get(name)
        if rt is None or rt.cfg.source.type != "http":
            return _error(404, f"No deployed channel '{name}' with an HTTP source. Expected one of: "
                          + (", ".join(n for n, r in engine.runtimes.items() if r.cfg.source.type == "http") or "none"))
        body = await request.body()
        if not body.strip():
            return _error(400, "The request body is empty. Expected one HL7 v2 message (ER7).")
        client = request.client.host if request.client else "?"
        ack, code = await engine.handle(name, body, f"http {client}")
        return Response(ack, media_type=HL7_TYPE, headers={"X-HL7-Ack-Code": code})

    async def metrics(request: Request) -> Response:
        data = await asyncio.to_thread(engine.stats.exposition)
        return Response(data, media_type=CONTENT_TYPE)

    async def channels(request: Request) -> Response:
        return JSONResponse({"channels": engine.channel_list()})

    async def channel(request: Request) -> Response:
        stats = await asyncio.to_thread(engine.channel_stats, request.path_params["name"])
        return JSONResponse(stats)

    async def control(request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        actions = {"deploy": engine.deploy, "undeploy": engine.undeploy, "pause": engine.pause, "resume": engine.resume}
        if action not in actions:
            return _error(404, f"Unknown action {action!r}. Expected one of: {', '.join(actions)}.")
        state = await actions[action](name)
        return JSONResponse({"channel": name, "action": action, "state": state})

    async def search(request: Request) -> Response:
        p = request.query_params
        status = p.get("status")
        if status and status.upper() not in STATUSES:
            return _error(400, f"status {status!r} is not a status. Expected one of: {', '.join(STATUSES)}.")
        try:
            since = parse_since(p["since"], store.clock()) if p.get("since") else None
            until = parse_since(p["until"], store.clock()) if p.get("until") else None
            limit = int(p.get("limit", "100"))
            before = int(p["before_id"]) if p.get("before_id") else None
        except (TimeError, ValueError) as exc:
            return _error(400, str(exc) if isinstance(exc, TimeError) else "limit and before_id must be whole numbers.")
        q = SearchQuery(channel=p.get("channel"), status=status, since=since, until=until, msg_type=p.get("type"),
                        control_id=p.get("control_id"), patient=p.get("patient"), text=p.get("text"),
                        before_id=before, limit=limit)
        rows = await asyncio.to_thread(store.search, q)
        return JSONResponse({"messages": [_row(r) for r in rows]})

    async def show(request: Request) -> Response:
        try:
            mid = int(request.path_params["id"])
        except ValueError:
            return _error(400, f"Message id {request.path_params['id']!r} is not a number.")
        found = await asyncio.to_thread(store.get, mid)
        if found is None:
            return _error(404, f"Message {mid} is not in the store.")
        found["deliveries"] = [_row(d) for d in found["deliveries"]]
        return JSONResponse(_row(found))

    async def reprocess(request: Request) -> Response:
        try:
            body = await request.json()
            ids = [int(i) for i in body["ids"]]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Expected a JSON body {\"ids\": [message ids]}.")
        done, skipped = await asyncio.to_thread(store.reprocess, ids)
        for name in {r.name for r in engine.runtimes.values()}:
            engine.runtimes[name].wake_pipeline.set()
        return JSONResponse({"reprocessed": done, "skipped": skipped})

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    return [
        Route("/channels/{name}/messages", receive, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/admin/openapi.json", openapi),
        Route("/admin/channels", guarded(channels)),
        Route("/admin/channels/{name}", guarded(channel)),
        Route("/admin/channels/{name}/{action}", guarded(control), methods=["POST"]),
        Route("/admin/messages", guarded(search)),
        Route("/admin/messages/reprocess", guarded(reprocess), methods=["POST"]),
        Route("/admin/messages/{id}", guarded(show)),
    ]


def _op(summary: str, params: list[tuple[str, str, str]] | None = None, body: bool = False,
        responses: dict[str, str] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {code: {"description": text} for code, text in
                                        (responses or {"200": "OK"}).items()}}
    if params:
        op["parameters"] = [{"name": n, "in": where, "required": where == "path", "schema": {"type": kind}}
                            for n, where, kind in params]
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}}}}
    return op


_NAME = ("name", "path", "string")
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "EHRGate engine admin API", "version": "1",
             "description": "Channels, statistics and the message store of the HL7 v2 engine. Errors are "
                            "{\"error\": sentence}."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/channels/{name}/messages": {"post": {**_op("HTTP source: send one HL7 v2 message, get its ACK",
                                                     [_NAME], responses={"200": "The ACK (ER7)",
                                                                         "404": "No such HTTP channel"}),
                                               "security": []}},
        "/metrics": {"get": {**_op("Prometheus metrics"), "security": []}},
        "/admin/channels": {"get": _op("List channels and their state")},
        "/admin/channels/{name}": {"get": _op("Statistics of one channel", [_NAME],
                                              responses={"200": "OK", "404": "Unknown channel"})},
        "/admin/channels/{name}/{action}": {"post": _op(
            "deploy (re-read ehrgate.yaml), undeploy, pause or resume a channel",
            [_NAME, ("action", "path", "string")],
            responses={"200": "Applied (other processes follow within a second)", "404": "Unknown channel",
                       "422": "The channel declaration is not valid"})},
        "/admin/messages": {"get": _op("Search messages (newest first)", [
            ("channel", "query", "string"), ("status", "query", "string"), ("since", "query", "string"),
            ("until", "query", "string"), ("type", "query", "string"), ("control_id", "query", "string"),
            ("patient", "query", "string"), ("text", "query", "string"), ("limit", "query", "integer"),
            ("before_id", "query", "integer")])},
        "/admin/messages/{id}": {"get": _op("One message: every stage's content, deliveries and attempts",
                                            [("id", "path", "integer")],
                                            responses={"200": "OK", "404": "Not in the store"})},
        "/admin/messages/reprocess": {"post": _op("Reprocess finished messages", body=True)},
    },
}

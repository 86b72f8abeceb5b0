"""HTTP edges of the engine: the HTTP source, the admin API (with its OpenAPI description) and
``/metrics``. Handlers are thin: they parse, call the Engine or the MessageStore, render JSON.

Admin API access (``access.py``): HTTP Basic as a user whose role allows the call (viewer: read;
operator: also control and reprocess; admin: also prune and the audit trail), ``Bearer
<admin_token>`` as admin, or - while neither an admin_token nor a user with an engine role exists -
no credentials from the loopback address. Every control, reprocess and prune, and every refusal of
one, is recorded in the audit trail (``audit.py``, ``GET /admin/audit``).
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..hl7.charset import codec_for, header_charset
from .access import Actor, Denied, Gate, UserDirectory, roles_for
from .audit import ACTIONS, AuditQuery
from .errors import ChannelConfigError, UnknownChannel
from .runner import Engine
from .stats import CONTENT_TYPE
from .store import STATUSES, SearchQuery
from .timeparse import TimeError, parse_duration, parse_since

__all__ = ["engine_routes"]


def _hl7_type(ack: bytes) -> str:
    """The Content-Type of an ACK: it is encoded in its MSH-18 character set (the message's), which
    was labelled UTF-8 whatever it was - a Latin-1 sender's names in MSH-5/6 came back garbled."""
    codec = codec_for(header_charset(ack)) or "utf-8"
    name = codecs.lookup(codec).name
    if name.startswith("iso8859-"):
        name = "iso-8859-" + name[8:]
    elif name.startswith("cp125"):
        name = "windows-" + name[2:]
    else:
        name = {"iso2022_jp": "iso-2022-jp", "euc_kr": "euc-kr"}.get(name, name)
    return f"application/hl7-v2; charset={name}"


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


MAX_ID = 2**63 - 1


def _whole(text: str, name: str) -> int:
    """A query parameter that must be a whole number a database column holds (ASCII digits)."""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        raise ValueError(f"{name} must be a whole number (0 to {MAX_ID}).")
    return int(text)


def _window(p: Any, now_ms: int) -> tuple[int | None, int | None, int, int | None]:
    """``since``, ``until``, ``limit`` and ``before_id`` of a listing (messages, audit trail);
    raises ValueError (TimeError included) with a sentence for the client."""
    since = parse_since(p["since"], now_ms) if p.get("since") else None
    until = parse_since(p["until"], now_ms) if p.get("until") else None
    limit = _whole(p.get("limit", "100"), "limit")
    before = _whole(p["before_id"], "before_id") if p.get("before_id") else None
    return since, until, limit, before


def _no_nul(p: Any, names: tuple[str, ...]) -> None:
    """Text criteria go to the database as they are; PostgreSQL refuses a NUL in text (a 500 before)."""
    for name in names:
        if "\x00" in (p.get(name) or ""):
            raise ValueError(f"{name} contains a NUL character. Expected text without control characters.")


def _message_ids(body: Any) -> list[int]:
    """``{"ids": [...]}``: a list of message ids (JSON integers, not booleans), duplicates dropped."""
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids):
        raise ValueError
    return list(dict.fromkeys(ids))


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it exceeds ``limit`` bytes: it is not read further (a sender of
    a huge or endless body no longer grows the server's memory with it)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, (bytes, bytearray, memoryview)):
            v = bytes(v).decode("utf-8", "replace")
        out[k] = v
    return out


def engine_routes(engine: Engine, admin_token: str = "", users: UserDirectory | None = None) -> list[Route]:
    """``users``: the accounts that may sign in with HTTP Basic (``app.py`` passes EHRGate's users)."""
    store = engine.messages
    gate = Gate(admin_token, users)

    def guarded(permission: str, fn: Callable[[Request, Actor], Awaitable[Response]],
                action: Callable[[Request], tuple[str, str]] | None = None) -> Callable[[Request], Awaitable[Response]]:
        """``action(request)`` → (action, target) of a call that changes something: a refusal of it
        is recorded too."""
        async def wrapper(request: Request) -> Response:
            request_id = str(request.scope.get("state", {}).get("request_id", ""))
            who = await gate.identify(request.headers.get("authorization", ""),
                                      request.client.host if request.client else "", request_id)
            if isinstance(who, Denied):
                return _denied(who, gate)
            refused = gate.refuse(who, permission)
            if refused is not None:
                if action is not None:
                    verb, target = action(request)
                    if verb in ACTIONS:
                        await asyncio.to_thread(store.audit, who, verb, target, "denied", {"status": 403})
                return _denied(refused, gate)
            try:
                return await fn(request, who)
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
        limit = int(rt.cfg.source.options.get("max_message_bytes", 16 * 1024 * 1024))
        body = await _body(request, limit)
        if body is None:
            return _error(413, f"The message exceeds the limit of {limit} bytes (max_message_bytes of the http "
                               "source). Expected a smaller message: split it, or raise the limit.")
        if not body.strip():
            return _error(400, "The request body is empty. Expected one HL7 v2 message (ER7).")
        client = request.client.host if request.client else "?"
        try:
            ack, code = await engine.handle(name, body, f"http {client}")
        except UnknownChannel as exc:  # undeployed while the body was read: not stored, nothing to ACK
            return _error(404, exc.message)
        return Response(ack, media_type=_hl7_type(ack), headers={"X-HL7-Ack-Code": code})

    async def metrics(request: Request) -> Response:
        data = await asyncio.to_thread(engine.stats.exposition)
        return Response(data, media_type=CONTENT_TYPE)

    async def channels(request: Request, who: Actor) -> Response:
        return JSONResponse({"channels": engine.channel_list()})

    async def channel(request: Request, who: Actor) -> Response:
        stats = await asyncio.to_thread(engine.channel_stats, request.path_params["name"])
        return JSONResponse(stats)

    async def control(request: Request, who: Actor) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        actions = {"deploy": engine.deploy, "undeploy": engine.undeploy, "pause": engine.pause, "resume": engine.resume}
        if action not in actions:
            return _error(404, f"Unknown action {action!r}. Expected one of: {', '.join(actions)}.")
        # The Engine changes the state in its own transaction; the audit row follows it at once.
        try:
            state = await actions[action](name)
        except (UnknownChannel, ChannelConfigError) as exc:
            status, reason = ((404, "unknown channel") if isinstance(exc, UnknownChannel)
                              else (422, "channel declaration not valid"))
            await asyncio.to_thread(store.audit, who, action, name, "failure", {"status": status, "reason": reason})
            raise
        await asyncio.to_thread(store.audit, who, action, name, "success", {"state": {
            k: state.get(k) for k in ("deployed", "paused", "generation")}})
        return JSONResponse({"channel": name, "action": action, "state": state})

    async def search(request: Request, who: Actor) -> Response:
        p = request.query_params
        status = p.get("status")
        if status and status.upper() not in STATUSES:
            return _error(400, f"status {status!r} is not a status. Expected one of: {', '.join(STATUSES)}.")
        try:
            _no_nul(p, ("channel", "type", "control_id", "patient", "text"))
            since, until, limit, before = _window(p, store.clock())
        except ValueError as exc:
            return _error(400, str(exc))
        q = SearchQuery(channel=p.get("channel"), status=status, since=since, until=until, msg_type=p.get("type"),
                        control_id=p.get("control_id"), patient=p.get("patient"), text=p.get("text"),
                        before_id=before, limit=limit)
        rows = await asyncio.to_thread(store.search, q)
        return JSONResponse({"messages": [_row(r) for r in rows]})

    async def show(request: Request, who: Actor) -> Response:
        try:
            mid = _whole(request.path_params["id"], "id")
        except ValueError:
            return _error(400, f"Message id {request.path_params['id']!r} is not a number.")
        found = await asyncio.to_thread(store.get, mid)
        if found is None:
            return _error(404, f"Message {mid} is not in the store.")
        found["deliveries"] = [_row(d) for d in found["deliveries"]]
        return JSONResponse(_row(found))

    async def reprocess(request: Request, who: Actor) -> Response:
        try:
            ids = _message_ids(await request.json())
        except ValueError:
            return _error(400, "Expected a JSON body {\"ids\": [message ids]}: a list of whole numbers.")
        done, skipped = await asyncio.to_thread(lambda: store.reprocess(ids, actor=who))
        for name in {r.name for r in engine.runtimes.values()}:
            engine.runtimes[name].wake_pipeline.set()
        return JSONResponse({"reprocessed": done, "skipped": skipped})

    async def prune(request: Request, who: Actor) -> Response:
        try:
            body = await request.json()
            older_than = str(body["older_than"])
            channel = body.get("channel")
            if channel is not None and (not isinstance(channel, str) or "\x00" in channel):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "Expected a JSON body {\"older_than\": \"30d\", \"channel\": name (optional)}.")
        try:
            age = parse_duration(older_than)
        except TimeError as exc:
            return _error(400, str(exc))
        cutoff = max(0, store.clock() - int(min(age, 1e12) * 1000))  # older than the epoch: nothing to prune
        n = await asyncio.to_thread(lambda: store.prune(channel or None, cutoff, actor=who,
                                                        criteria={"older_than": older_than}))
        return JSONResponse({"pruned": n, "older_than": older_than, "channel": channel or None})

    async def audit(request: Request, who: Actor) -> Response:
        p = request.query_params
        action = p.get("action")
        if action and action not in ACTIONS:
            return _error(400, f"action {action!r} is not an audited action. Expected one of: {', '.join(ACTIONS)}.")
        try:
            _no_nul(p, ("actor", "target"))
            since, until, limit, before = _window(p, store.clock())
        except ValueError as exc:
            return _error(400, str(exc))
        rows = await asyncio.to_thread(store.audit_log, AuditQuery(
            since=since, until=until, actor=p.get("actor") or None, action=action or None,
            target=p.get("target") or None, before_id=before, limit=limit))
        return JSONResponse({"audit": rows})

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    def control_action(request: Request) -> tuple[str, str]:
        return request.path_params["action"], request.path_params["name"]

    def messages_action(verb: str) -> Callable[[Request], tuple[str, str]]:
        return lambda request: (verb, "messages")

    return [
        Route("/channels/{name}/messages", receive, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/admin/openapi.json", openapi),
        Route("/admin/channels", guarded("read", channels)),
        Route("/admin/channels/{name}", guarded("read", channel)),
        Route("/admin/channels/{name}/{action}", guarded("control", control, control_action), methods=["POST"]),
        Route("/admin/messages", guarded("read", search)),
        Route("/admin/messages/reprocess", guarded("reprocess", reprocess, messages_action("reprocess")),
              methods=["POST"]),
        Route("/admin/messages/prune", guarded("prune", prune, messages_action("prune")), methods=["POST"]),
        Route("/admin/messages/{id}", guarded("read", show)),
        Route("/admin/audit", guarded("audit", audit)),
    ]


def _denied(d: Denied, gate: Gate) -> JSONResponse:
    headers = {"WWW-Authenticate": gate.challenge()} if d.challenge else {}
    if d.retry_after:
        headers["Retry-After"] = str(d.retry_after)
    return JSONResponse({"error": d.message}, status_code=d.status, headers=headers or None)


def _op(summary: str, params: list[tuple[str, str, str]] | None = None, body: dict[str, Any] | None = None,
        responses: dict[str, str] | None = None, permission: str | None = None) -> dict[str, Any]:
    """``permission``: the operation needs a sign-in, and one of the roles that hold it."""
    codes = dict(responses or {"200": "OK"})
    op: dict[str, Any] = {"summary": summary}
    if permission:
        roles = roles_for(permission)
        op["description"] = f"Roles: {', '.join(roles)}."
        op["x-ehrgate-roles"] = list(roles)
        codes.setdefault("401", "No or wrong credentials (WWW-Authenticate says how to sign in)")
        codes.setdefault("403", f"The user's role is not one of: {', '.join(roles)}")
    op["responses"] = {code: {"description": text} for code, text in codes.items()}
    if params:
        op["parameters"] = [{"name": n, "in": where, "required": where == "path", "schema": {"type": kind}}
                            for n, where, kind in params]
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": body}}}}
    return op


_NAME = ("name", "path", "string")
_SINCE = ("since", "query", "string")
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "EHRGate engine admin API", "version": "1",
             "description": "Channels, statistics and the message store of the HL7 v2 engine. Errors are "
                            "{\"error\": sentence}. Sign in with HTTP Basic as a user with the viewer, operator or "
                            "admin role, or send 'Bearer <admin_token>' (full access). Deploy, undeploy, pause, "
                            "resume, reprocess and prune are recorded in the audit trail (GET /admin/audit)."},
    "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                       "bearer": {"type": "http", "scheme": "bearer",
                                                  "description": "The admin_token setting"}}},
    "security": [{"basic": []}, {"bearer": []}],
    "paths": {
        "/channels/{name}/messages": {"post": {**_op("HTTP source: send one HL7 v2 message, get its ACK",
                                                     [_NAME], responses={"200": "The ACK (ER7)",
                                                                         "404": "No such HTTP channel"}),
                                               "security": []}},
        "/metrics": {"get": {**_op("Prometheus metrics"), "security": []}},
        "/admin/channels": {"get": _op("List channels and their state", permission="read")},
        "/admin/channels/{name}": {"get": _op("Statistics of one channel", [_NAME],
                                              responses={"200": "OK", "404": "Unknown channel"}, permission="read")},
        "/admin/channels/{name}/{action}": {"post": _op(
            "deploy (re-read ehrgate.yaml), undeploy, pause or resume a channel (audited)",
            [_NAME, ("action", "path", "string")],
            responses={"200": "Applied (other processes follow within a second)", "404": "Unknown channel",
                       "422": "The channel declaration is not valid"}, permission="control")},
        "/admin/messages": {"get": _op("Search messages (newest first)", [
            ("channel", "query", "string"), ("status", "query", "string"), _SINCE,
            ("until", "query", "string"), ("type", "query", "string"), ("control_id", "query", "string"),
            ("patient", "query", "string"), ("text", "query", "string"), ("limit", "query", "integer"),
            ("before_id", "query", "integer")], permission="read")},
        "/admin/messages/{id}": {"get": _op("One message: every stage's content, deliveries and attempts",
                                            [("id", "path", "integer")],
                                            responses={"200": "OK", "404": "Not in the store"}, permission="read")},
        "/admin/messages/reprocess": {"post": _op(
            "Reprocess finished messages (audited: the ids)",
            body={"ids": {"type": "array", "items": {"type": "integer"}}}, permission="reprocess")},
        "/admin/messages/prune": {"post": _op(
            "Delete finished messages older than older_than (30d, 12h), optionally of one channel (audited: "
            "criteria and count)",
            body={"older_than": {"type": "string"}, "channel": {"type": "string"}},
            responses={"200": "{\"pruned\": count}", "400": "older_than is missing or not a duration"},
            permission="prune")},
        "/admin/audit": {"get": _op(
            "The audit trail (newest first): time (epoch ms), actor, via, role, action, target, outcome, detail",
            [_SINCE, ("until", "query", "string"), ("actor", "query", "string"), ("action", "query", "string"),
             ("target", "query", "string"), ("limit", "query", "integer"), ("before_id", "query", "integer")],
            permission="audit")},
    },
}

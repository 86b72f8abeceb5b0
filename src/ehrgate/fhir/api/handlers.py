"""FHIR REST handlers (http://hl7.org/fhir/R4/http.html). Thin: parse, call the store, render."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from ..access import Access, AccessPolicy, open_policy
from ..bundles import process_batch, process_transaction, response_bundle
from ..errors import (
    BadRequest,
    FhirError,
    Issue,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    operation_outcome,
)
from ..guard import check_visible, check_write, confined, visible
from ..interactions import Target, parse_target, perform_write
from ..jsonio import dumps, parse_body
from ..search.engine import load_includes, run_search
from ..search.query import ParsedQuery, parse_query, result_int
from ..search.results import check_result
from ..store.history import HistoryQuery, history_page
from ..store.model import Stored, WriteResult
from ..store.service import ID_PATTERN, Store
from .render import (
    FHIR_JSON,
    apply_elements,
    bundle_bytes,
    check_accept,
    fhir_response,
    json_response,
    request_json,
)

__all__ = ["FhirContext"]

T = TypeVar("T")


@dataclass
class FhirContext:
    store: Store
    base: str
    """Absolute FHIR base URL, e.g. http://127.0.0.1:8080/fhir."""
    known_types: frozenset[str]
    max_body: int = 16 * 1024 * 1024
    max_depth: int = 64
    page_size: int = 50
    max_page: int = 1000
    capability: Callable[[], dict[str, Any]] | None = None
    operations: dict[str, Callable[..., Any]] = field(default_factory=dict)
    policy: AccessPolicy = open_policy
    """Decides what each request may do (the smart package's policy; open when auth is off)."""
    audit: Any = None
    """An ``audit.AuditSink`` recording calls made with a token (None: not recorded)."""

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Embedded SQLite answers in microseconds: call inline. PostgreSQL: a worker thread."""
        if self.store.inline:
            return fn(*args, **kwargs)
        import asyncio

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.store.executor, lambda: fn(*args, **kwargs))


async def access_of(ctx: FhirContext, request: Request) -> Access:
    """The caller's Access, asked of the policy once per request (kept for the audit record)."""
    access: Access | None = request.scope.get("fhir_access")
    if access is None:
        access = await ctx.policy(request)
        request.scope["fhir_access"] = access
    return access


def ctx_of(request: Request) -> FhirContext:
    ctx = request.scope.get("fhir_ctx")
    if ctx is None:
        ctx = request.app.state.fhir
    return ctx  # type: ignore[no-any-return]


def _type(ctx: FhirContext, request: Request) -> str:
    res_type = request.path_params["type"]
    if res_type not in ctx.known_types:
        raise NotFound(f"Resource type {res_type!r} is not supported by this server.")
    return res_type


async def _body(request: Request, ctx: FhirContext) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > ctx.max_body:
        raise PayloadTooLarge(f"The request body is {int(length)} bytes; the limit is {ctx.max_body} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > ctx.max_body:
            raise PayloadTooLarge(f"The request body is larger than the limit of {ctx.max_body} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _prefer(request: Request, name: str, default: str) -> str:
    """A preference of the ``Prefer`` header (RFC 7240), from any of its lines: ``Prefer:
    return=minimal`` and ``Prefer: handling=strict`` may come as two header lines."""
    for part in ",".join(request.headers.getlist("prefer")).split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key.strip().lower() == name:
                return value.strip().strip('"').lower()
    return default


def _write_response(request: Request, ctx: FhirContext, result: WriteResult) -> Response:
    stored = result.stored
    headers = {"ETag": stored.etag, "Last-Modified": stored.last_modified}
    if result.status == 201 or request.method in ("PUT", "PATCH"):
        headers["Location"] = f"{ctx.base}/{stored.location}"
    prefer = _prefer(request, "return", "representation")
    if prefer == "minimal":
        return Response(None, result.status, headers)
    if prefer == "operationoutcome":
        text = f"{stored.res_type}/{stored.res_id} {result.outcome} (version {stored.version})."
        body = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": text}]}
        return json_response(request, body, result.status, headers)
    return fhir_response(request, stored.raw, result.status, headers)


def _query_items(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items()]


# -- instance level ---------------------------------------------------------------------------


async def read(request: Request) -> Response:
    """read (http.html#read) — the hottest path: kept free of per-request work it does not need."""
    ctx = ctx_of(request)
    has_query = bool(request.scope["query_string"])
    if has_query or b"accept" in _raw_header_names(request):
        check_accept(request)
    res_type = _type(ctx, request)
    res_id = request.path_params["id"]
    access = await access_of(ctx, request)
    access.require("read", res_type)
    stored = await ctx.call(ctx.store.read, res_type, res_id)
    if access.patient is not None or access.filters:
        await ctx.call(_check_visible, ctx, access, res_type, res_id)
    headers = {"ETag": stored.etag, "Last-Modified": stored.last_modified}
    if _not_modified(request, stored):
        return Response(None, 304, headers)
    raw = stored.raw
    assert raw is not None
    if not has_query:
        return Response(raw, 200, headers, media_type=FHIR_JSON)
    return fhir_response(request, _shaped(request, raw), 200, headers)


def _shaped(request: Request, raw: bytes) -> bytes:
    """``raw`` as ``_summary`` / ``_elements`` ask (search.html#summary, #elements) for a read or vread."""
    elements = request.query_params.get("_elements")
    summary = request.query_params.get("_summary")
    if summary is not None:
        strict = _prefer(request, "handling", "lenient") == "strict"
        if check_result("_summary", summary, strict=strict) is not None:
            summary = None  # lenient: a read has no Bundle to carry the warning, so the value is just ignored
        elif summary == "count":  # a count of search matches: nothing a read returns (it stripped the resource)
            if strict:
                raise BadRequest("'_summary' has value 'count'; a count applies to searches, not to a read.")
            summary = None
    if elements or summary:
        raw = apply_elements(raw, [e.strip() for e in elements.split(",")] if elements else None, summary)
    return raw


def _raw_header_names(request: Request) -> set[bytes]:
    return {name for name, _value in request.scope["headers"]}


def _check_visible(ctx: FhirContext, access: Access, res_type: str, res_id: str) -> None:
    with ctx.store.reader() as conn:
        check_visible(conn, access, res_type, res_id)


def _not_modified(request: Request, stored: Stored) -> bool:
    names = _raw_header_names(request)
    if b"if-none-match" not in names and b"if-modified-since" not in names:
        return False
    inm = request.headers.get("if-none-match")
    if inm:
        wanted = {x.strip().removeprefix("W/").strip('"') for x in inm.split(",")}
        return str(stored.version) in wanted or "*" in wanted
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return stored.last_updated // 1000 <= int(since.timestamp())
    return False


async def vread(request: Request) -> Response:
    ctx = ctx_of(request)
    check_accept(request)
    res_type = _type(ctx, request)
    vid = request.path_params["vid"]
    if not (vid.isascii() and vid.isdigit()):
        raise NotFound(f"Version {vid!r} of {res_type}/{request.path_params['id']} is not known.")
    access = await access_of(ctx, request)
    access.require("vread", res_type)
    if access.patient is not None or access.filters:
        await ctx.call(_check_visible, ctx, access, res_type, request.path_params["id"])
    stored = await ctx.call(ctx.store.vread, res_type, request.path_params["id"], int(vid))
    headers = {"ETag": stored.etag, "Last-Modified": stored.last_modified}
    raw = stored.raw
    assert raw is not None
    return fhir_response(request, _shaped(request, raw) if request.scope["query_string"] else raw, 200, headers)


async def update(request: Request) -> Response:
    ctx = ctx_of(request)
    res_type = _type(ctx, request)
    request_json(request, b"")
    body = parse_body(await _body(request, ctx), ctx.max_depth)
    target = Target(res_type, request.path_params["id"])
    access = await access_of(ctx, request)
    result = await ctx.call(_write, ctx, access, "PUT", target, body, request.headers.get("if-match"), None, None)
    return _write_response(request, ctx, result)


async def patch(request: Request) -> Response:
    ctx = ctx_of(request)
    res_type = _type(ctx, request)
    kind = request_json(request, b"", patch=True)
    body = parse_body(await _body(request, ctx), ctx.max_depth)
    target = Target(res_type, request.path_params.get("id"), criteria=request.url.query or None)
    if target.res_id is None and not target.criteria:
        raise BadRequest(f"PATCH needs {res_type}/<id> or {res_type}?<search criteria>.")
    access = await access_of(ctx, request)
    result = await ctx.call(_write, ctx, access, "PATCH", target, body, request.headers.get("if-match"), None, kind)
    return _write_response(request, ctx, result)


async def delete(request: Request) -> Response:
    ctx = ctx_of(request)
    res_type = _type(ctx, request)
    res_id = request.path_params.get("id")
    if res_id is None and not request.url.query:
        raise MethodNotAllowed(f"DELETE on {res_type} needs search criteria, e.g. {res_type}?identifier=...")
    target = Target(res_type, res_id, criteria=request.url.query or None)
    access = await access_of(ctx, request)

    def run() -> list[WriteResult]:
        with ctx.store.writer() as w:
            return perform_write(w, "DELETE", target, None, if_match=request.headers.get("if-match"),
                                 guard=_guard(ctx, access))

    results = await ctx.call(run)
    if res_id is not None and not results:
        raise NotFound(f"{res_type}/{res_id} is not known.")
    headers = {"ETag": results[-1].stored.etag} if results else {}
    return Response(None, 204, headers)


def _guard(ctx: FhirContext, access: Access) -> Callable[..., None] | None:
    """The per-write check that applies ``access`` inside the write transaction."""
    if access.patient is None and not access.filters and access.allowed is Access().allowed:
        return None

    def guard(conn: sa.Connection, interaction: str, res_type: str, res_id: str | None, resource: Any) -> None:
        check_write(conn, access, interaction, res_type, res_id, resource, ctx.store.extract)

    return guard


def _write(
    ctx: FhirContext,
    access: Access,
    method: str,
    target: Target,
    body: Any,
    if_match: str | None,
    if_none_exist: str | None,
    patch_kind: str | None,
) -> WriteResult:
    with ctx.store.writer() as w:
        results = perform_write(w, method, target, body, if_match=if_match, if_none_exist=if_none_exist,
                                patch_kind=patch_kind, guard=_guard(ctx, access))
    return results[0]


# -- type level -------------------------------------------------------------------------------


async def create(request: Request) -> Response:
    ctx = ctx_of(request)
    res_type = _type(ctx, request)
    raw = await _body(request, ctx)
    if request_json(request, raw) == "form":
        raise BadRequest(f"To search by POST use {res_type}/_search; to create, send FHIR JSON.")
    body = parse_body(raw, ctx.max_depth)
    access = await access_of(ctx, request)
    result = await ctx.call(_write, ctx, access, "POST", Target(res_type), body, None, request.headers.get("if-none-exist"), None)
    return _write_response(request, ctx, result)


async def conditional_update(request: Request) -> Response:
    ctx = ctx_of(request)
    res_type = _type(ctx, request)
    if not request.url.query:
        raise MethodNotAllowed(f"PUT on {res_type} needs search criteria; to update one resource use PUT {res_type}/<id>.")
    request_json(request, b"")
    body = parse_body(await _body(request, ctx), ctx.max_depth)
    target = Target(res_type, None, criteria=request.url.query)
    access = await access_of(ctx, request)
    result = await ctx.call(_write, ctx, access, "PUT", target, body, request.headers.get("if-match"), None, None)
    return _write_response(request, ctx, result)


async def search_get(request: Request) -> Response:
    ctx = ctx_of(request)
    check_accept(request)
    res_type = _type(ctx, request)
    return await _search(request, ctx, res_type, _query_items(request))


async def search_post(request: Request) -> Response:
    ctx = ctx_of(request)
    check_accept(request)
    res_type = _type(ctx, request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    items = _query_items(request)
    if ctype == "application/x-www-form-urlencoded":
        form = await request.form()
        items += [(k, str(v)) for k, v in form.multi_items()]
    elif ctype:
        raise BadRequest("POST _search takes application/x-www-form-urlencoded parameters.")
    return await _search(request, ctx, res_type, items)


async def compartment_search(request: Request) -> Response:
    """``Patient/123/Observation?...``: a search confined to one patient's compartment."""
    ctx = ctx_of(request)
    check_accept(request)
    if request.path_params["type"] != "Patient":
        raise NotFound("Only the Patient compartment is supported (Patient/<id>/<type>).")
    res_type = request.path_params["ctype"]
    if res_type not in ctx.known_types:
        raise NotFound(f"Resource type {res_type!r} is not supported by this server.")
    access = await access_of(ctx, request)
    await ctx.call(ctx.store.read, "Patient", request.path_params["id"])
    await ctx.call(_check_visible, ctx, access, "Patient", request.path_params["id"])
    return await _search(request, ctx, res_type, _query_items(request), compartment=request.path_params["id"],
                         access=access)


async def _search(
    request: Request,
    ctx: FhirContext,
    res_type: str,
    items: list[tuple[str, str]],
    compartment: str | None = None,
    access: Access | None = None,
) -> Response:
    if access is None:
        access = await access_of(ctx, request)
    access.require("search", res_type)
    strict = _prefer(request, "handling", "lenient") == "strict"
    query = parse_query(res_type, items, base_url=ctx.base, strict=strict)
    self_url = _self_url(ctx, request, res_type, items, compartment)
    body = await ctx.call(search_bundle, ctx, query, self_url, compartment, None, access)
    return fhir_response(request, body, 200)


def _self_url(ctx: FhirContext, request: Request, res_type: str, items: list[tuple[str, str]], compartment: str | None) -> str:
    path = f"{ctx.base}/Patient/{compartment}/{res_type}" if compartment else f"{ctx.base}/{res_type}"
    query = urlencode([(k, v) for k, v in items if k != "_cursor"])
    return f"{path}?{query}" if query else path


def search_bundle(
    ctx: FhirContext,
    query: ParsedQuery,
    self_url: str,
    compartment: str | None = None,
    conn: sa.Connection | None = None,
    access: Access | None = None,
) -> bytes:
    summary: str | None = (query.result.get("_summary") or [None])[-1]  # type: ignore[list-item]
    access = access or Access()
    alternatives = _alternatives(ctx, access, query.res_type)
    confined_to = confined(access, query.res_type)
    if confined_to is not None:
        if compartment is not None and compartment != confined_to:
            confined_to = "#no-such-patient"  # a compartment the caller cannot see (no id has '#'): empty result
        compartment = confined_to
    count = result_int(query, "_count", ctx.page_size, ctx.max_page)
    if summary == "count":
        count = 0
    total_mode = (query.result.get("_total") or [""])[-1]
    cursor: str | None = (query.result.get("_cursor") or [None])[-1]  # type: ignore[list-item]
    # Counting every match costs O(matches); do it when asked (_total, _count=0, _summary=count).
    # When all matches fit on the first page the total is known for free.
    want_total = total_mode in ("accurate", "estimate") or count == 0
    elements_raw = query.result.get("_elements")
    elements = [e.strip() for raw in elements_raw for e in raw.split(",") if e.strip()] if elements_raw else None

    def run(c: sa.Connection) -> tuple[Any, Any]:
        page = run_search(c, query, count=count, cursor=cursor, want_total=want_total, compartment=compartment,
                          alternatives=alternatives)
        included = load_includes(c, query, page.rows, access.patient)
        if access.patient is not None or access.filters:
            included = [row for row in included if visible(c, access, row[0], row[1])]
            included = [row for row in included if access.allowed("r", row[0])]
        return page, included

    if conn is None:
        with ctx.store.reader() as c:
            page, included = run(c)
    else:
        page, included = run(conn)

    head: dict[str, Any] = {"resourceType": "Bundle", "id": _bundle_id(), "meta": {"lastUpdated": _now_iso()}, "type": "searchset"}
    if page.total is None and cursor is None and page.next_cursor is None and total_mode != "none":
        page.total = len(page.rows)
    if page.total is not None:
        head["total"] = page.total
    sep = "&" if "?" in self_url else "?"
    links = [{"relation": "self", "url": self_url if cursor is None else f"{self_url}{sep}_cursor={cursor}"}]
    if page.next_cursor:
        links.append({"relation": "next", "url": f"{self_url}{sep}_cursor={page.next_cursor}"})
    if page.prev_cursor:
        links.append({"relation": "previous", "url": f"{self_url}{sep}_cursor={page.prev_cursor}"})
    head["link"] = links
    entries: list[tuple[dict[str, Any], bytes | None]] = []
    for res_type, res_id, raw in page.rows:
        body = apply_elements(raw, elements, summary) if (elements or summary) else raw
        entries.append(({"fullUrl": f"{ctx.base}/{res_type}/{res_id}", "search": {"mode": "match"}}, body))
    for res_type, res_id, raw in included:
        entries.append(({"fullUrl": f"{ctx.base}/{res_type}/{res_id}", "search": {"mode": "include"}}, raw))
    issues = list(query.ignored)
    if query.unknown:
        text = ", ".join(sorted(set(query.unknown)))
        unknown = f"Ignored search parameters not supported for {query.res_type}: {text}."
        issues.insert(0, Issue("warning", "not-supported", unknown))
    if issues:
        entries.append(({"search": {"mode": "outcome"}}, dumps(operation_outcome(issues))))
    return bundle_bytes(head, entries)


def _alternatives(ctx: FhirContext, access: Access, res_type: str) -> tuple[ParsedQuery, ...]:
    from urllib.parse import parse_qsl

    from ..errors import InvalidSearch

    criteria = access.filters_for(res_type)
    out = []
    for text in criteria:
        try:
            out.append(parse_query(res_type, parse_qsl(text, keep_blank_values=True), base_url=ctx.base, strict=True))
        except InvalidSearch:
            continue  # e.g. a `*` scope's category constraint on a type without that parameter
    if criteria and not out:  # constrained, but no constraint applies to this type: nothing is visible
        out.append(parse_query(res_type, [("_id", "#none")], strict=True))  # no id has a '#'
    return tuple(out)


def _bundle_id() -> str:
    import uuid

    return str(uuid.uuid4())


def _now_iso() -> str:
    from ..store.model import iso_instant
    from ..store.service import now_ms

    return iso_instant(now_ms())


# -- history ----------------------------------------------------------------------------------


async def history(request: Request) -> Response:
    ctx = ctx_of(request)
    check_accept(request)
    res_type = request.path_params.get("type")
    if res_type is not None and res_type not in ctx.known_types:
        raise NotFound(f"Resource type {res_type!r} is not supported by this server.")
    res_id = request.path_params.get("id")
    access = await access_of(ctx, request)
    if res_type is not None:
        access.require("history", res_type)
    q = HistoryQuery.from_params(res_type, res_id, request.query_params, ctx.page_size, ctx.max_page)
    if access.patient is not None or access.filters:
        if res_type is None or res_id is None:
            from ..errors import Forbidden

            raise Forbidden("Type- and system-level history are not available to patient- or query-scoped tokens.")
        await ctx.call(_check_visible, ctx, access, res_type, res_id)
    elif res_type is None and not access.allowed("r", "*"):
        from ..errors import Forbidden

        raise Forbidden("System-level history needs read access to all resource types.")
    if res_id is not None:
        if not ID_PATTERN.match(res_id):
            raise NotFound(f"{res_type}/{res_id} is not known.")
        await ctx.call(_exists_ever, ctx, res_type, res_id)
    path = "/".join(p for p in (res_type, res_id) if p)
    self_url = f"{ctx.base}/{path + '/' if path else ''}_history"
    body = await ctx.call(history_page, ctx.store, q, ctx.base, self_url)
    return fhir_response(request, body)


def _exists_ever(ctx: FhirContext, res_type: str, res_id: str) -> None:
    with ctx.store.reader() as conn:
        row = conn.execute(
            sa.text("SELECT 1 FROM resource WHERE res_type = :t AND res_id = :i"), {"t": res_type, "i": res_id}
        ).first()
    if row is None:
        raise NotFound(f"{res_type}/{res_id} is not known.")


# -- system level -----------------------------------------------------------------------------


async def system_post(request: Request) -> Response:
    ctx = ctx_of(request)
    request_json(request, b"")
    body = parse_body(await _body(request, ctx), ctx.max_depth)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base URL takes a Bundle of type batch or transaction.")
    kind = body.get("type")
    request.scope["fhir_bundle_kind"] = kind
    prefer = _prefer(request, "return", "representation")
    access = await access_of(ctx, request)

    def get_entry(conn: sa.Connection, target: Target) -> tuple[int, bytes | None, dict[str, str]]:
        return _get_in(ctx, conn, target, access)

    guard = _guard(ctx, access)
    if kind == "transaction":
        results = await ctx.call(process_transaction, ctx.store, body, ctx.known_types, get_entry, None, guard)
    elif kind == "batch":
        results = await ctx.call(process_batch, ctx.store, body, ctx.known_types, get_entry, guard)
    else:
        raise BadRequest(f"Bundle.type is {kind!r}; the base URL accepts 'batch' or 'transaction'.")
    return json_response(request, response_bundle(kind, results, ctx.base, prefer))


def _get_in(
    ctx: FhirContext, conn: sa.Connection, target: Target, access: Access
) -> tuple[int, bytes | None, dict[str, str]]:
    """Answer a GET entry of a batch/transaction inside the bundle's connection."""
    if target.operation is not None:
        raise BadRequest(f"GET {target.res_type}/${target.operation} is not supported in a Bundle; "
                         "call the operation on its own URL.")
    if target.res_id and not target.rest:
        access.require("read", target.res_type)
        stored = ctx.store.read(target.res_type, target.res_id, conn)
        check_visible(conn, access, target.res_type, target.res_id)
        return 200, stored.raw, {"ETag": stored.etag, "lastModified": stored.last_updated_iso}
    if target.res_id is None:
        from urllib.parse import parse_qsl

        items = parse_qsl(target.criteria or "", keep_blank_values=True)
        access.require("search", target.res_type)
        query = parse_query(target.res_type, items, base_url=ctx.base)
        self_url = f"{ctx.base}/{target.res_type}" + (f"?{target.criteria}" if target.criteria else "")
        return 200, search_bundle(ctx, query, self_url, None, conn, access), {}
    raise BadRequest(f"GET {target.res_type}/{target.res_id}/{'/'.join(target.rest)} is not supported in a Bundle.")


async def system_search(request: Request) -> Response:
    check_accept(request)
    if request.query_params:
        raise BadRequest("Searching across all types is not supported; search a resource type, e.g. /Patient?name=smith.")
    raise MethodNotAllowed("GET on the base URL lists nothing; see /metadata for what this server supports.")


async def metadata(request: Request) -> Response:
    ctx = ctx_of(request)
    check_accept(request)
    assert ctx.capability is not None
    if not request.scope["query_string"]:
        return json_response(request, ctx.capability())
    return fhir_response(request, _shaped(request, dumps(ctx.capability())), 200)  # _summary, _elements


async def operation(request: Request) -> Response:
    ctx = ctx_of(request)
    check_accept(request)
    name = request.path_params["op"]
    res_type = request.path_params.get("type")
    key = f"{res_type or ''}${name}"
    handler = ctx.operations.get(key) or ctx.operations.get(f"${name}")
    if handler is None:
        raise NotFound(f"Operation ${name} is not supported{' on ' + res_type if res_type else ''}.")
    result: Response = await handler(request, ctx)
    return result


async def unknown_type_fallback(request: Request) -> Response:
    raise NotFound(f"Nothing is served at {request.url.path}. See {ctx_of(request).base}/metadata.")


def to_error(exc: Exception) -> FhirError:
    return exc if isinstance(exc, FhirError) else FhirError("The server failed to handle the request.")


def make_target(url: str, known: frozenset[str]) -> Target:
    return parse_target(url, known)

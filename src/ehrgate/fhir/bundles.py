"""batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction).

A transaction runs in one database transaction: all or nothing. Entries are processed in the
spec's order — DELETE, POST, PUT/PATCH, then GET/HEAD — and the response lists them in request
order. ``urn:uuid:`` fullUrls are resolved before anything is written (conditional entries first
find their match), and every reference to them is rewritten to ``Type/id``. Conditional references
(``Patient?identifier=sys|val``) are resolved against the stored data in the same pass: exactly one
match becomes ``Type/id``; none or several fail the transaction with 412 (R4 http.html#trules).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import BadRequest, FhirError, Issue, PreconditionFailed, operation_outcome
from .interactions import Target, parse_target, perform_write
from .jsonio import dumps, loads
from .store.model import Stored, WriteResult
from .store.service import Store, WriteSession

__all__ = ["EntryResult", "process_batch", "process_transaction", "rewrite_references", "transaction_locks"]

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}

# A GET entry is answered by the REST layer's read/search code: (conn, target) -> (status, body).
GetHandler = Callable[[Any, Target], tuple[int, bytes | None, dict[str, str]]]
"""Answers a GET/HEAD entry: (status, body, fields) with ``ETag`` and, for a read, ``lastModified``
(an instant, as Bundle.entry.response.lastModified takes it)."""


@dataclass
class EntryResult:
    status: int
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    resource: bytes | None = None
    outcome: dict[str, Any] | None = None

    def to_entry(self, base: str, prefer: str) -> dict[str, Any]:
        response: dict[str, Any] = {"status": _status_text(self.status)}
        if self.location:
            response["location"] = self.location
        if self.etag:
            response["etag"] = self.etag
        if self.last_modified:
            response["lastModified"] = self.last_modified
        if self.outcome:
            response["outcome"] = self.outcome
        entry: dict[str, Any] = {}
        if self.resource is not None and prefer != "minimal":
            resource = loads(self.resource)
            if self.location:
                entry["fullUrl"] = f"{base}/{self.location.split('/_history')[0]}"
            entry["resource"] = resource
        entry["response"] = response
        return entry


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
            409: "Conflict", 410: "Gone", 412: "Precondition Failed", 422: "Unprocessable Entity"}


def _status_text(code: int) -> str:
    return f"{code} {_REASONS.get(code, '')}".strip()


def _get_result(method: str, status: int, body: bytes | None, fields: dict[str, str]) -> EntryResult:
    """A GET or HEAD entry's response; HEAD is GET without the body (RFC 9110 §9.3.2)."""
    return EntryResult(status, etag=fields.get("ETag"), last_modified=fields.get("lastModified"),
                       resource=None if method == "HEAD" else body)


def _from_write(results: list[WriteResult]) -> EntryResult:
    if not results:
        return EntryResult(204)
    r = results[-1]
    if r.stored.deleted:
        return EntryResult(204 if r.outcome != "deleted" else 200, etag=r.stored.etag)
    return EntryResult(
        r.status,
        location=r.stored.location,
        etag=r.stored.etag,
        last_modified=r.stored.last_updated_iso,
        resource=r.stored.raw,
    )


_REFERENCE = re.compile(rb'"reference":"([^"\\]*)"')
_CONDITIONAL_REFERENCE = re.compile(rb'"reference":"([A-Z][A-Za-z]+\?[^"\\]*)"')
_PLACEHOLDER_REFERENCE = re.compile(rb'"reference":\s*"(urn:uuid:[^"\\]*)"')


def rewrite_references(value: Any, mapping: dict[str, str], missing: list[str] | None = None,
                       data: bytes | None = None) -> Any:
    """Replace every ``reference`` whose value is a key of ``mapping``; returns the new value.
    ``missing``, when given, collects the ``urn:uuid:`` references that name no key of ``mapping``
    (a transaction's placeholders naming none of its entries, ``unresolved_placeholder``).
    ``data``: ``value`` as ``plain_serialised`` gave it, when the caller has it already.

    Runs over every resource of every transaction, so it works on the serialised form (one regex
    pass over orjson's output, re-parsed only when something changed) instead of walking each
    element in Python, which cost ~5x more. Values orjson cannot serialise (exact decimals) take
    the element walk.
    """
    if not mapping and missing is None:
        return value
    if data is None:
        data = plain_serialised(value)
        if data is None:
            return _rewrite_walk(value, mapping, missing)
    if not mapping:  # only looking for placeholders
        if missing is not None and b"urn:uuid:" in data:
            missing.extend(m.group(1).decode() for m in _PLACEHOLDER_REFERENCE.finditer(data))
        return value
    changed = False

    def swap(match: re.Match[bytes]) -> bytes:
        nonlocal changed
        reference = match.group(1).decode()
        new = mapping.get(reference)
        if new is None:
            if missing is not None and reference.startswith("urn:uuid:"):
                missing.append(reference)
            return match.group(0)
        changed = True
        return b'"reference":' + orjson.dumps(new)

    out = _REFERENCE.sub(swap, data)
    return orjson.loads(out) if changed else value


def _rewrite_walk(value: Any, mapping: dict[str, str], missing: list[str] | None = None) -> Any:
    """The same, in place, element by element (for values holding Decimal)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(item, (dict, list)):
                    stack.append(item)
                elif key == "reference" and isinstance(item, str):
                    if item in mapping:
                        node[key] = mapping[item]
                    elif missing is not None and item.startswith("urn:uuid:"):
                        missing.append(item)
        elif isinstance(node, list):
            stack.extend(x for x in node if isinstance(x, (dict, list)))
    return value


def resolve_placeholders(resource: Any, mapping: dict[str, str], data: bytes | None = None) -> Any:
    """``resource`` (an entry of a transaction) with its references to entries (``mapping``:
    fullUrl → ``Type/id``) rewritten. Every ``urn:uuid:`` reference must name an entry it creates or
    updates (http.html#trules): one that names nothing would be stored pointing nowhere, so it is a
    400. A Bundle written as an entry (a document) keeps its own internal urn:uuid references. The
    check rides on the rewrite's one pass over the serialised resource (``data``, when the caller
    has it from ``plain_serialised``)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        return rewrite_references(resource, mapping, data=data)
    missing: list[str] = []
    resource = rewrite_references(resource, mapping, missing, data)
    if missing:
        raise BadRequest(f"the reference {missing[0]!r} names no entry of this transaction; add the entry with "
                         "that fullUrl, or refer to a stored resource as Type/id.", expression="resource")
    return resource


def _entries(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("Expected a Bundle resource at the server base.")
    if bundle.get("type") != kind:
        raise BadRequest(f"Bundle.type is {bundle.get('type')!r}; the base URL accepts 'batch' or 'transaction'.")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be an array.", expression="Bundle.entry")
    for i, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise BadRequest(f"Bundle.entry[{i}].request needs a method and a url.", expression=f"Bundle.entry[{i}].request")
        if not isinstance(request["method"], str) or request["method"].upper() not in _ORDER:
            raise BadRequest(
                f"Bundle.entry[{i}].request.method {request['method']!r} is not supported.",
                expression=f"Bundle.entry[{i}].request.method",
            )
        # Bundle.request elements are uri and string primitives (bundle.html#resource): a JSON string.
        for name in ("url", "ifNoneMatch", "ifModifiedSince", "ifMatch", "ifNoneExist"):
            if request.get(name) is not None and not isinstance(request[name], str):
                raise BadRequest(f"Bundle.entry[{i}].request.{name} is {request[name]!r}; expected a JSON string.",
                                 expression=f"Bundle.entry[{i}].request.{name}")
        if entry.get("fullUrl") is not None and not isinstance(entry["fullUrl"], str):
            raise BadRequest(f"Bundle.entry[{i}].fullUrl is {entry['fullUrl']!r}; expected a JSON string (a URI).",
                             expression=f"Bundle.entry[{i}].fullUrl")
    return entries


def check_full_urls(entries: list[dict[str, Any]]) -> None:
    """A transaction's fullUrls are unique (bundle.html invariant bdl-7): two entries claiming one
    identity would leave every reference to it pointing at whichever was planned last."""
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        full = entry.get("fullUrl")
        if not full:
            continue
        if full in seen:
            raise BadRequest(f"Bundle.entry[{i}].fullUrl {full!r} is also the fullUrl of Bundle.entry[{seen[full]}]; "
                             "each entry needs its own.", expression=f"Bundle.entry[{i}].fullUrl")
        seen[full] = i


def _serialised(resource: Any) -> bytes:
    """The JSON of ``resource`` for the regex scans (also when it holds Decimals or huge integers)."""
    return plain_serialised(resource) or dumps(resource)


def plain_serialised(resource: Any) -> bytes | None:
    """orjson's JSON of ``resource``, which ``orjson.loads`` reads back as the same value; None when
    it holds values only ``jsonio.dumps`` writes (exact decimals, integers beyond 64 bits)."""
    try:
        return orjson.dumps(resource)
    except TypeError:
        return None


def process_transaction(
    store: Store,
    bundle: dict[str, Any],
    known_types: frozenset[str],
    get_handler: GetHandler | None = None,
    session: WriteSession | None = None,
    guard: Any = None,
) -> list[EntryResult]:
    entries = _entries(bundle, "transaction")
    if session is not None:
        session.guard = guard or session.guard
        return _transaction_in(session, entries, known_types, get_handler)
    with store.writer() as w:
        w.guard = guard
        return _transaction_in(w, entries, known_types, get_handler)


def _transaction_in(
    w: WriteSession, entries: list[dict[str, Any]], known_types: frozenset[str], get_handler: GetHandler | None
) -> list[EntryResult]:
    targets: list[Target] = []
    seen: set[tuple[str, str]] = set()
    check_full_urls(entries)
    for i, entry in enumerate(entries):
        target = entry_target(i, entry["request"]["url"], known_types)
        if target.res_id and entry["request"]["method"].upper() in ("PUT", "DELETE", "PATCH"):
            write_once(i, target, seen)
        targets.append(target)
    w.lock_criteria_all(_conditional_locks(entries, targets))  # PostgreSQL: all at once, in one order

    # Resolve fullUrls of created resources before writing anything.
    mapping: dict[str, str] = {}
    assigned: dict[int, str] = {}
    for i, entry in enumerate(entries):
        full = entry.get("fullUrl")
        method = entry["request"]["method"].upper()
        target = targets[i]
        resource = entry.get("resource")
        if method == "POST":
            criteria = entry["request"].get("ifNoneExist")
            new_id = None
            if criteria:
                w.lock_criteria(target.res_type, criteria)
                found = w.find(target.res_type, criteria)
                if len(found) > 1:  # http.html#ccreate: several matches fail the conditional create
                    raise PreconditionFailed(
                        f"Bundle.entry[{i}] (POST {entry['request']['url']}): ifNoneExist {criteria!r} matches "
                        f"{len(found)} {target.res_type} resources; make the criteria select at most one.")
                if len(found) == 1:
                    new_id = found[0][1]
            assigned[i] = new_id or w.store.new_id()
            if full:
                mapping[full] = f"{target.res_type}/{assigned[i]}"
        elif method == "PUT" and full:
            if target.res_id:
                mapping[full] = f"{target.res_type}/{target.res_id}"
            elif target.criteria:
                w.lock_criteria(target.res_type, target.criteria)
                found = w.find(target.res_type, target.criteria)
                rid = found[0][1] if len(found) == 1 else (
                    resource.get("id") if isinstance(resource, dict) and resource.get("id") else w.store.new_id()
                )
                mapping[full] = f"{target.res_type}/{rid}"
                if isinstance(resource, dict) and len(found) != 1:
                    entry = {**entry, "resource": {**resource, "id": rid}}
                    entries[i] = entry

    _resolve_conditional_references(w, entries, known_types, mapping)

    results: list[EntryResult | None] = [None] * len(entries)
    order = sorted(range(len(entries)), key=lambda i: _ORDER[entries[i]["request"]["method"].upper()])
    for i in order:
        entry = entries[i]
        request = entry["request"]
        method = request["method"].upper()
        target = targets[i]
        try:
            if method in ("GET", "HEAD"):
                if get_handler is None:
                    raise BadRequest("GET entries are not supported in this context.")
                w.flush()
                status, body, headers = get_handler(w.conn, target)
                results[i] = _get_result(method, status, body, headers)
                continue
            resource = entry.get("resource")
            if method == "PATCH":
                resource = _binary_patch(resource)
            if method in ("POST", "PUT") and not isinstance(resource, dict):
                raise BadRequest(f"Bundle.entry[{i}] ({method}) has no resource.")
            if resource is not None:
                resource = resolve_placeholders(resource, mapping)
            if method == "POST" and request.get("ifNoneExist") and assigned[i] != "":
                stored = _current(w, target.res_type, assigned[i])
                if stored is not None:  # the criteria matched: nothing to write
                    results[i] = EntryResult(200, location=stored.location, etag=stored.etag,
                                             last_modified=stored.last_updated_iso, resource=stored.raw)
                    continue
            if method == "POST" and isinstance(resource, dict):
                resource = {**resource, "id": assigned[i]}
            written = perform_write(
                w,
                method,
                target,
                resource,
                if_match=request.get("ifMatch"),
                patch_kind="json-patch" if isinstance(resource, list) else None,
                assigned_id=assigned.get(i),
            )
            results[i] = _from_write(written)
        except FhirError as exc:
            issues = [
                Issue(x.severity, x.code, f"Bundle.entry[{i}]: {x.diagnostics}", _entry_expression(i, x.expression))
                for x in exc.issues
            ]
            raise type(exc)(f"Bundle.entry[{i}] ({method} {request['url']}): {exc.diagnostics}", issues=issues) from None
    return [r for r in results if r is not None]


def transaction_locks(bundle: Any, known_types: frozenset[str]) -> list[tuple[str, str]]:
    """The criteria locks (type, criteria) a transaction Bundle's conditional writes take; none for a
    Bundle the transaction would refuse (its processing reports why)."""
    try:
        entries = _entries(bundle, "transaction")
        targets = [entry_target(i, e["request"]["url"], known_types) for i, e in enumerate(entries)]
    except FhirError:
        return []
    return _conditional_locks(entries, targets)


def _conditional_locks(entries: list[dict[str, Any]], targets: list[Target]) -> list[tuple[str, str]]:
    locks = []
    for entry, target in zip(entries, targets, strict=True):
        method = entry["request"]["method"].upper()
        if method == "POST" and entry["request"].get("ifNoneExist"):
            locks.append((target.res_type, str(entry["request"]["ifNoneExist"])))
        elif method in ("PUT", "PATCH", "DELETE") and target.criteria:
            locks.append((target.res_type, target.criteria))
    return locks


def entry_target(i: int, url: str, known_types: frozenset[str]) -> Target:
    """Entry ``i``'s request URL parsed; errors name the entry."""
    try:
        return parse_target(url, known_types)
    except FhirError as exc:
        raise type(exc)(f"Bundle.entry[{i}]: {exc.diagnostics}", expression=f"Bundle.entry[{i}].request.url") from None


def write_once(i: int, target: Target, seen: set[tuple[str, str]]) -> None:
    """A transaction writes each ``Type/id`` at most once (R4 http.html#trules)."""
    key = (target.res_type, target.res_id or "")
    if key in seen:
        raise BadRequest(f"Bundle.entry[{i}] writes {target.res_type}/{target.res_id} a second time in one transaction.")
    seen.add(key)


def _resolve_conditional_references(
    w: WriteSession, entries: list[dict[str, Any]], known_types: frozenset[str], mapping: dict[str, str]
) -> None:
    """Add ``Type?criteria`` references found in the entries' resources to ``mapping``, each as the
    ``Type/id`` of its one match among the stored resources."""
    wanted: dict[str, int] = {}
    for i, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        data = _serialised(resource)
        if b"?" not in data:
            continue
        for match in _CONDITIONAL_REFERENCE.finditer(data):
            wanted.setdefault(match.group(1).decode(), i)
    for reference, i in wanted.items():
        res_type, _, criteria = reference.partition("?")
        where = f"Bundle.entry[{i}].resource"
        if res_type not in known_types:
            raise BadRequest(f"Bundle.entry[{i}]: the conditional reference {reference!r} names an unknown resource type.",
                             expression=where)
        if not criteria:
            raise BadRequest(f"Bundle.entry[{i}]: the conditional reference {reference!r} has no search criteria.",
                             expression=where)
        found = w.find(res_type, criteria)
        if len(found) != 1:
            how = "no" if not found else f"{len(found)}"
            raise PreconditionFailed(
                f"Bundle.entry[{i}]: the conditional reference {reference!r} matches {how} resources; it must match "
                "exactly one. Make the criteria more specific, or create the target first.",
                expression=where,
            )
        mapping[reference] = f"{res_type}/{found[0][1]}"


def _current(w: WriteSession, res_type: str, res_id: str) -> Stored | None:
    """The current version of ``res_type/res_id``, None when there is none (or it was deleted)."""
    from .errors import Gone, NotFound

    try:
        return w.store.read(res_type, res_id, w.conn)
    except (NotFound, Gone):
        return None


def _entry_expression(i: int, expression: str | None) -> str | None:
    """``Patient.name[0]`` inside entry 3 → ``Bundle.entry[3].resource.name[0]``."""
    if not expression:
        return None
    _type, _, rest = expression.partition(".")
    return f"Bundle.entry[{i}].resource" + (f".{rest}" if rest else "")


def _binary_patch(resource: Any) -> Any:
    """In a Bundle a JSON Patch travels as a Binary with base64 data (http.html#patch)."""
    import base64

    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            return loads(base64.b64decode(resource.get("data", "")))
        except (ValueError, TypeError):
            raise BadRequest("The Binary in a PATCH entry does not hold a JSON Patch document.") from None
    return resource


def process_batch(
    store: Store,
    bundle: dict[str, Any],
    known_types: frozenset[str],
    get_handler: GetHandler | None = None,
    guard: Any = None,
) -> list[EntryResult]:
    """Each entry on its own: a failing entry gets an OperationOutcome; the others still run."""
    entries = _entries(bundle, "batch")
    out: list[EntryResult] = []
    for entry in entries:
        request = entry["request"]
        method = request["method"].upper()
        try:
            target = parse_target(request["url"], known_types)
            if method in ("GET", "HEAD"):
                if get_handler is None:
                    raise BadRequest("GET entries are not supported in this context.")
                with store.reader() as conn:
                    status, body, headers = get_handler(conn, target)
                out.append(_get_result(method, status, body, headers))
                continue
            resource = entry.get("resource")
            if method == "PATCH":
                resource = _binary_patch(resource)
            with store.writer() as w:
                written = perform_write(
                    w,
                    method,
                    target,
                    resource,
                    if_match=request.get("ifMatch"),
                    if_none_exist=request.get("ifNoneExist"),
                    patch_kind="json-patch" if method == "PATCH" and isinstance(resource, list) else None,
                    guard=guard,
                )
            out.append(_from_write(written))
        except FhirError as exc:
            out.append(EntryResult(exc.status, outcome=exc.outcome()))
    return out


def new_uuid() -> str:
    return str(uuid.uuid4())


def response_bundle(kind: str, results: list[EntryResult], base: str, prefer: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": new_uuid(),
        "type": f"{kind}-response",
        "entry": [r.to_entry(base, prefer) for r in results],
    }


def outcome_for(exc: FhirError) -> dict[str, Any]:
    return operation_outcome(exc.issues)

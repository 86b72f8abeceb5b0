"""Response rendering for the FHIR API: content negotiation, OperationOutcome, Bundle bytes.

Bundles are assembled from the stored bytes of each resource without parsing them again, which is
both fast and exact (decimal precision survives).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest, FhirError, NotAcceptable, UnsupportedMediaType
from ..jsonio import dumps, loads

__all__ = [
    "FHIR_JSON",
    "apply_elements",
    "bundle_bytes",
    "check_accept",
    "error_response",
    "fhir_response",
    "request_json",
]

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
_XML_TYPES = ("application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml", "xml")
_FORMAT_JSON = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


def check_accept(request: Request) -> None:
    """406 for XML-only requests: EHRGate speaks FHIR JSON (http.html#mime-type)."""
    scope = request.scope
    if scope.get("query_string"):
        fmt = request.query_params.get("_format")
        if fmt is not None:
            # A MIME type may carry parameters (``application/fhir+json; fhirVersion=4.0``), and a '+'
            # written unescaped in a query string arrives as a space (``application/fhir json``).
            if fmt.split(";")[0].strip().replace(" ", "+").lower() in _FORMAT_JSON:
                return
            if any(x in fmt.lower() for x in ("xml", "turtle", "ttl")):
                raise NotAcceptable(f"_format={fmt} is not supported: EHRGate serves FHIR JSON only (use _format=json).")
            raise NotAcceptable(f"_format={fmt} is not a format EHRGate serves; use _format=json.")
    accept = ""
    for name, value in scope["headers"]:  # the raw list: no Headers object on the read path
        if name == b"accept":
            accept = value.decode("latin-1")
            break
    if accept:
        problem = _accept_problem(accept)
        if problem:
            raise NotAcceptable(problem)


@lru_cache(maxsize=256)
def _accept_problem(accept: str) -> str:
    """Why ``accept`` cannot be served ("" when it can); clients send the same few values.

    Every JSON type counts as asking for FHIR JSON. A weight of 0 means "not acceptable" (RFC 9110
    §12.4.2), and the most specific range decides (§12.5.1): ``application/fhir+json;q=0, */*``
    refuses the one type EHRGate sends, so it answers 406 too.
    """
    weights: dict[str, float] = {}
    for part in accept.split(","):
        kind, *params = part.split(";")
        weights.setdefault(kind.strip().lower(), _weight(params))
    if FHIR_JSON in weights:
        acceptable = weights[FHIR_JSON] > 0
    elif any(q > 0 and (k in _JSON_TYPES or k.endswith("+json")) for k, q in weights.items()):
        acceptable = True
    else:
        acceptable = weights.get("application/*", weights.get("*/*", 0)) > 0
    if acceptable:
        return ""
    if any(q > 0 and k in _XML_TYPES for k, q in weights.items()):
        return "XML is not supported: EHRGate serves FHIR JSON. Send Accept: application/fhir+json."
    return f"Accept {accept!r} cannot be satisfied; EHRGate serves application/fhir+json."


def _weight(params: list[str]) -> float:
    """The ``q`` of a media range (RFC 9110 §12.4.2); 1 when absent or not a number."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 1.0
    return 1.0


def request_json(request: Request, body: bytes, *, patch: bool = False) -> str:
    """Check the request Content-Type; return the kind of body ('json', 'json-patch', 'merge-patch')."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if patch:
        if ctype == "application/json-patch+json":
            return "json-patch"
        if ctype in ("application/merge-patch+json", "application/fhir+json", "application/json", ""):
            return "merge-patch"
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r} is not a patch format; use application/json-patch+json or application/merge-patch+json."
        )
    if ctype in _JSON_TYPES or ctype == "":
        return "json"
    if ctype in _XML_TYPES:
        raise UnsupportedMediaType("XML is not supported: send FHIR JSON with Content-Type: application/fhir+json.")
    if ctype == "application/x-www-form-urlencoded":
        return "form"
    raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; send application/fhir+json.")


def _pretty(request: Request) -> bool:
    return request.query_params.get("_pretty", "").lower() == "true"


def fhir_response(
    request: Request,
    body: bytes | None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if body is not None and _pretty(request):
        body = dumps(loads(body), pretty=True)
    return Response(body, status, dict(headers or {}), media_type=FHIR_JSON if body is not None else None)


def json_response(request: Request, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return fhir_response(request, dumps(value), status, headers)


def error_response(request: Request | None, exc: FhirError) -> Response:
    headers = dict(exc.headers)
    body = orjson.dumps(exc.outcome(), option=orjson.OPT_INDENT_2 if request is not None and _pretty(request) else 0)
    return Response(body, exc.status, headers, media_type=FHIR_JSON)


def bundle_bytes(head: dict[str, Any], entries: Iterable[tuple[dict[str, Any], bytes | None]]) -> bytes:
    """Serialise a Bundle whose entries embed stored resource bytes as they are."""
    parts = []
    for entry, raw in entries:
        if raw is None:
            parts.append(orjson.dumps(entry))
            continue
        encoded = orjson.dumps(entry)
        prefix = encoded[:-1] + (b"," if len(encoded) > 2 else b"")
        parts.append(prefix + b'"resource":' + raw + b"}")
    head_bytes = orjson.dumps(head)
    if not parts:
        return head_bytes
    return head_bytes[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


def apply_elements(raw: bytes, elements: list[str] | None, summary: str | None) -> bytes:
    """``_elements`` and ``_summary`` (search.html#elements, #summary) on one stored resource."""
    if not elements and summary in (None, "false"):
        return raw
    resource = loads(raw)
    if summary == "text":
        keep = {"text", *_ALWAYS}
        out = {k: v for k, v in resource.items() if k in keep}
    elif summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "true":
        from ..validation.summary import summary_elements

        keep = set(summary_elements(resource.get("resourceType", ""))) | set(_ALWAYS)
        out = {k: v for k, v in resource.items() if k in keep}
    else:
        keep = set(elements or ()) | set(_ALWAYS)
        out = {k: v for k, v in resource.items() if k in keep}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), _SUBSETTED]
    out["meta"] = meta
    return dumps(out)


def new_id() -> str:
    return str(uuid.uuid4())


def bad_request(message: str) -> BadRequest:
    return BadRequest(message)

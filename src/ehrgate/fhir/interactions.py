"""Write interactions addressed by method + relative URL, shared by the REST API and Bundles.

``perform_write`` is the one place that decides what a PUT/POST/PATCH/DELETE on a FHIR URL means
(http://hl7.org/fhir/R4/http.html), so a transaction entry and the same request sent over HTTP
behave identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import BadRequest, MethodNotAllowed, NotFound, PreconditionFailed
from .store.model import Stored, WriteResult
from .store.service import ID_PATTERN, WriteSession

__all__ = ["Target", "parse_target", "perform_write"]


@dataclass(frozen=True)
class Target:
    res_type: str
    res_id: str | None = None
    version: str | None = None
    criteria: str | None = None
    operation: str | None = None
    rest: tuple[str, ...] = ()


def parse_target(url: str, known_types: frozenset[str]) -> Target:
    """Split a relative FHIR URL (``Patient/1``, ``Patient?identifier=x``) into its parts."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise BadRequest(f"URL {url!r} names no resource type.")
    res_type = segments[0]
    if res_type not in known_types:
        raise NotFound(f"Resource type {res_type!r} is not supported by this server.")
    res_id = segments[1] if len(segments) > 1 else None
    if res_id is not None and res_id.startswith("$"):
        return Target(res_type, operation=res_id[1:], criteria=parts.query or None)
    if res_id is not None and res_id != "_search" and res_id != "_history" and not ID_PATTERN.match(res_id):
        raise BadRequest(f"Id {res_id!r} in {url!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .).")
    version = None
    if len(segments) > 3 and segments[2] == "_history":
        version = segments[3]
    return Target(res_type, res_id, version, parts.query or None, rest=tuple(segments[2:]))


def perform_write(
    w: WriteSession,
    method: str,
    target: Target,
    resource: Any,
    *,
    if_match: str | None = None,
    if_none_exist: str | None = None,
    patch_kind: str | None = None,
    assigned_id: str | None = None,
    guard: Any = None,
) -> list[WriteResult]:
    """Run one write; returns the results (a conditional delete may touch several resources).

    ``guard`` (see ``WriteSession.guard``) applies the caller's access rules to every write.
    """
    method = method.upper()
    if guard is not None:
        w.guard = guard
    if method == "POST":
        if target.res_id is not None:
            raise MethodNotAllowed(f"POST is for {target.res_type}, not {target.res_type}/{target.res_id}; use PUT to update.")
        return [w.create(target.res_type, resource, if_none_exist=if_none_exist, res_id=assigned_id,
                         fresh_id=assigned_id is not None)]
    if method == "PUT":
        if target.res_id is not None:
            return [w.update(target.res_type, target.res_id, resource, if_match=if_match)]
        if target.criteria:
            return [w.conditional_update(target.res_type, target.criteria, resource, if_match=if_match)]
        raise BadRequest(f"PUT needs {target.res_type}/<id> or {target.res_type}?<search criteria>.")
    if method == "DELETE":
        if target.res_id is not None:
            try:
                return [w.delete(target.res_type, target.res_id, if_match=if_match)]
            except NotFound:
                return []
        if target.criteria:
            return w.conditional_delete(target.res_type, target.criteria, if_match=if_match)
        raise BadRequest(f"DELETE needs {target.res_type}/<id> or {target.res_type}?<search criteria>.")
    if method == "PATCH":
        kind = patch_kind or ("json-patch" if isinstance(resource, list) else "merge-patch")
        if target.res_id is not None:
            return [w.patch(target.res_type, target.res_id, resource, kind=kind, if_match=if_match)]
        if target.criteria:
            matches = w.find(target.res_type, target.criteria)
            if not matches:  # http.html#patch, as a conditional update that may not create: 404
                raise NotFound(f"Conditional patch criteria '{target.criteria}' match no {target.res_type} resource; "
                               "nothing to patch.")
            if len(matches) > 1:
                raise PreconditionFailed(
                    f"Conditional patch criteria '{target.criteria}' match {len(matches)} resources; expected exactly one."
                )
            return [w.patch(target.res_type, matches[0][1], resource, kind=kind, if_match=if_match)]
        raise BadRequest(f"PATCH needs {target.res_type}/<id> or {target.res_type}?<search criteria>.")
    raise MethodNotAllowed(f"Method {method} is not supported here.")


def stored_headers(stored: Stored, base: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": stored.last_modified,
        "Location": f"{base}/{stored.location}",
    }

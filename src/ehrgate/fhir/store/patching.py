"""PATCH bodies: JSON Patch (RFC 6902, via the ``jsonpatch`` library) and JSON merge patch (RFC 7386).

FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html, a ``Parameters`` body) is not supported; it
arrives as ``application/fhir+json`` like a merge patch, so it is recognised by its resourceType and
answered 415 with ``Accept-Patch`` (RFC 5789 §2.2) rather than merged.

A failing JSON Patch is described by the operation's index, op and JSON pointers only: the
library's own messages embed the stored resource and Python types.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from jsonpointer import EndOfList, JsonPointer, JsonPointerException, resolve_pointer

from ..errors import BadRequest, FhirError, Unprocessable, UnsupportedMediaType

__all__ = ["ACCEPT_PATCH", "PATCH_KINDS", "apply_patch", "merge_patch"]

PATCH_KINDS = {
    "application/json-patch+json": "json-patch",
    "application/merge-patch+json": "merge-patch",
}
ACCEPT_PATCH = ", ".join(PATCH_KINDS)

_OPS = ("add", "remove", "replace", "move", "copy", "test")
_MISSING = object()
_APPLY_ERRORS = (jsonpatch.JsonPatchException, JsonPointerException, TypeError, KeyError, IndexError)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 §2: objects merge recursively, ``null`` removes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(resource: dict[str, Any], patch: Any, kind: str) -> dict[str, Any]:
    if kind == "merge-patch":
        if not isinstance(patch, dict):
            raise BadRequest("A JSON merge patch body must be a JSON object (RFC 7386).")
        if patch.get("resourceType") == "Parameters" and resource.get("resourceType") != "Parameters":
            exc = UnsupportedMediaType(f"FHIRPath Patch is not supported; use {' or '.join(PATCH_KINDS)}.")
            exc.headers["Accept-Patch"] = ACCEPT_PATCH
            raise exc
        out = merge_patch(resource, patch)
    elif kind == "json-patch":
        out = _json_patch(resource, patch)
    else:
        raise BadRequest(f"Unknown patch format {kind!r}; use application/json-patch+json or application/merge-patch+json.")
    if not isinstance(out, dict):
        raise Unprocessable("The patch did not leave a JSON object.")
    return out


def _json_patch(resource: dict[str, Any], patch: Any) -> Any:
    if not isinstance(patch, list):
        raise BadRequest("A JSON Patch body must be an array of operations (RFC 6902).")
    for index, operation in enumerate(patch):
        _check_operation(index, operation)
    try:
        return jsonpatch.JsonPatch(patch).apply(resource)
    except _APPLY_ERRORS:
        raise _failure(resource, patch) from None


def _check_operation(index: int, operation: Any) -> None:
    """RFC 6902 §4: the members each operation needs, checked before anything is applied."""
    if not isinstance(operation, dict):
        raise BadRequest(f'JSON Patch operation {index} is not an object; expected {{"op": ..., "path": ...}}.')
    op = operation.get("op")
    if op not in _OPS:
        shown = repr(op) if isinstance(op, str) else "missing" if op is None else "not a string"
        raise BadRequest(f"JSON Patch operation {index}: 'op' is {shown}; expected {', '.join(_OPS[:-1])} or {_OPS[-1]}.")
    members = ("path", "from") if op in ("move", "copy") else ("path",)
    for member in members:
        pointer = operation.get(member)
        if not isinstance(pointer, str):
            raise BadRequest(f"JSON Patch operation {index} ({op}) needs '{member}', a JSON pointer such as /name/0.")
        try:
            JsonPointer(pointer)
        except JsonPointerException:
            raise BadRequest(
                f"JSON Patch operation {index} ({op}): '{member}' {pointer!r} is not a JSON pointer (RFC 6901), "
                "e.g. /name/0."
            ) from None
    if op in ("add", "replace", "test") and "value" not in operation:
        raise BadRequest(f"{_named(index, operation)} needs a 'value'.")


def _named(index: int, operation: dict[str, Any]) -> str:
    op, path = operation["op"], operation["path"]
    if op in ("move", "copy"):
        return f"JSON Patch operation {index} ({op} from {operation['from'] or '/'} to {path or '/'})"
    return f"JSON Patch operation {index} ({op} {path or '/'})"


def _failure(resource: dict[str, Any], patch: list[dict[str, Any]]) -> FhirError:
    """Replay ``patch`` one operation at a time to name the one that fails and why."""
    doc: Any = resource
    for index, operation in enumerate(patch):
        try:
            doc = jsonpatch.JsonPatch([operation]).apply(doc)
        except jsonpatch.JsonPatchTestFailed:
            path = operation["path"]
            why = f"{path} does not exist in the resource" if _at(doc, path) is _MISSING else (
                f"the value at {path or '/'} is not the tested value")
            return Unprocessable(f"{_named(index, operation)} failed: {why}.")
        except _APPLY_ERRORS:
            return BadRequest(f"{_named(index, operation)} cannot be applied: {_location_problem(doc, operation)}.")
    return BadRequest("The JSON Patch cannot be applied.")  # not reached: the whole patch failed above


def _at(doc: Any, pointer: str) -> Any:
    """The value at ``pointer``, or _MISSING (``-``, past the end of an array, is missing too)."""
    try:
        value = resolve_pointer(doc, pointer, _MISSING)
    except JsonPointerException:
        return _MISSING
    return _MISSING if isinstance(value, EndOfList) else value


def _location_problem(doc: Any, operation: dict[str, Any]) -> str:
    op, path = operation["op"], operation["path"]
    if op in ("move", "copy"):
        source = operation["from"]
        if _at(doc, source) is _MISSING:
            return f"'from' {source} does not exist in the resource"
        if op == "move" and path.startswith(source + "/"):
            return f"{source} cannot be moved into itself"
    if op == "remove" and path == "":
        return "the whole resource cannot be removed"
    if op in ("remove", "replace") and _at(doc, path) is _MISSING:
        return f"{path} does not exist in the resource"
    parent, _, last = path.rpartition("/")
    container = _at(doc, parent)
    if container is _MISSING:
        return f"{parent} does not exist in the resource"
    if isinstance(container, list):
        return f"{last!r} is not a position in the array at {parent or '/'} (a number within it, or '-' to append)"
    if not isinstance(container, dict):
        return f"{parent or '/'} is neither an object nor an array"
    return f"{path} cannot be used on this resource"

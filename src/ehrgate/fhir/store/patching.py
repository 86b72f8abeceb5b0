"""PATCH bodies: JSON Patch (RFC 6902, via the ``jsonpatch`` library) and JSON merge patch (RFC 7386)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from ..errors import BadRequest, Unprocessable

__all__ = ["PATCH_KINDS", "apply_patch", "merge_patch"]

PATCH_KINDS = {
    "application/json-patch+json": "json-patch",
    "application/merge-patch+json": "merge-patch",
}


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
        out = merge_patch(resource, patch)
    elif kind == "json-patch":
        if not isinstance(patch, list):
            raise BadRequest("A JSON Patch body must be an array of operations (RFC 6902).")
        try:
            out = jsonpatch.JsonPatch(patch).apply(resource)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise Unprocessable(f"JSON Patch test operation failed: {exc}.") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
            raise BadRequest(f"JSON Patch cannot be applied: {exc}.") from None
    else:
        raise BadRequest(f"Unknown patch format {kind!r}; use application/json-patch+json or application/merge-patch+json.")
    if not isinstance(out, dict):
        raise Unprocessable("The patch did not leave a JSON object.")
    return out

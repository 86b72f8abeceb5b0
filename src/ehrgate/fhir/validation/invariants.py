"""The few R4 invariants and type-specific rules checked after an object's elements are walked.

Each hook takes the JSON object, its FHIRPath expression and a ``report(code, expression,
message)`` callback. They are keyed by the type name of ``r4_definitions.json``:

* ``Reference``: the literal forms of ``reference`` (references.html#literal; see references.py).
* ``Extension``: ext-1, "Must have either extensions or value[x], not both" (extensibility.html).
* ``Bundle``: bdl-1 to bdl-5 (bundle.html#invariants): ``total`` only in search and history bundles,
  ``entry.search`` only in search sets, ``entry.request`` exactly in batch/transaction/history,
  ``entry.response`` exactly in the responses and history, and an entry has a resource unless it has
  a request or a response.
* ``Quantity`` and its profiles: qty-3, "If a code for the unit is present, the system SHALL also
  be present" (datatypes.html#Quantity).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .definitions import RESOURCE_TYPES, TYPES
from .references import reference_problem

__all__ = ["HOOKS", "Report", "check_contained"]

Report = Callable[[str, str, str], None]
Hook = Callable[[dict[str, Any], str, Report, bool], None]

_EXTENSION_VALUES = frozenset(
    prefix + name for name in TYPES["Extension"].choices["value"] for prefix in ("", "_")
)
_SEARCH_OR_HISTORY = frozenset({"searchset", "history"})
_NEEDS_REQUEST = frozenset({"batch", "transaction", "history"})
_NEEDS_RESPONSE = frozenset({"batch-response", "transaction-response", "history"})


def _reference(obj: dict[str, Any], path: str, report: Report, conditional: bool) -> None:
    value = obj.get("reference")
    if type(value) is str and value:
        problem = reference_problem(value, RESOURCE_TYPES, conditional)
        if problem is not None:
            report("value", f"{path}.reference", f"{value!r} is not a valid reference; expected {problem}")


def _extension(obj: dict[str, Any], path: str, report: Report, conditional: bool) -> None:
    has_value = not _EXTENSION_VALUES.isdisjoint(obj)
    if has_value == ("extension" in obj):
        which = "both 'extension' and a value[x]" if has_value else "neither 'extension' nor a value[x]"
        report("invariant", path, f"Extension {obj.get('url')!r} has {which}; ext-1 requires exactly one of them")


def _quantity(obj: dict[str, Any], path: str, report: Report, conditional: bool) -> None:
    if "code" in obj and "system" not in obj:
        report("invariant", path, f"has unit code {obj['code']!r} but no 'system'; qty-3 requires a system with a code")


def _bundle(obj: dict[str, Any], path: str, report: Report, conditional: bool) -> None:
    kind = obj.get("type")
    if type(kind) is not str:
        return
    if "total" in obj and kind not in _SEARCH_OR_HISTORY:
        report("invariant", f"{path}.total", f"'total' is only allowed in searchset and history bundles, not {kind} (bdl-1)")
    entries = obj.get("entry")
    if type(entries) is not list:
        return
    for i, entry in enumerate(entries):
        if type(entry) is not dict:
            continue
        where = f"{path}.entry[{i}]"
        if "search" in entry and kind != "searchset":
            report("invariant", f"{where}.search", f"'search' is only allowed in searchset bundles, not {kind} (bdl-2)")
        if ("request" in entry) != (kind in _NEEDS_REQUEST):
            need = "requires" if kind in _NEEDS_REQUEST else "does not allow"
            report("invariant", f"{where}.request", f"a {kind} bundle {need} 'request' in every entry (bdl-3)")
        if ("response" in entry) != (kind in _NEEDS_RESPONSE):
            need = "requires" if kind in _NEEDS_RESPONSE else "does not allow"
            report("invariant", f"{where}.response", f"a {kind} bundle {need} 'response' in every entry (bdl-4)")
        if not ("resource" in entry or "request" in entry or "response" in entry):
            report("invariant", where, "an entry needs a 'resource' unless it has a 'request' or 'response' (bdl-5)")


def check_contained(obj: dict[str, Any], path: str, report: Report) -> None:
    """dom-2 and dom-4 (domainresource.html#invariants) for a resource inside ``contained``."""
    if "contained" in obj:
        report("invariant", f"{path}.contained", "a contained resource SHALL NOT contain resources (dom-2)")
    meta = obj.get("meta")
    if type(meta) is dict and ("versionId" in meta or "lastUpdated" in meta):
        report(
            "invariant", f"{path}.meta",
            "a contained resource SHALL NOT have meta.versionId or meta.lastUpdated (dom-4)",
        )


HOOKS: dict[str, Hook] = {
    "Reference": _reference,
    "Extension": _extension,
    "Bundle": _bundle,
    "Quantity": _quantity,
    "Age": _quantity,
    "Count": _quantity,
    "Distance": _quantity,
    "Duration": _quantity,
}

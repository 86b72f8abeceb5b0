"""The literal forms ``Reference.reference`` may take (http://hl7.org/fhir/R4/references.html#literal).

* relative ``Type/id`` or ``Type/id/_history/vid`` to a known resource type (references.html#regex);
* an absolute URL ``scheme://...`` (``https://server/fhir/Patient/1``);
* ``urn:uuid:`` / ``urn:oid:`` (bundle-internal identities, bundle.html#references);
* ``#id`` for a contained resource, or ``#`` for the containing resource (references.html#contained);
* in a transaction or batch Bundle only, a conditional reference ``Type?search`` (http.html#trules).
"""

from __future__ import annotations

import re

from .primitives import OID_RE, UUID_RE

__all__ = ["reference_problem"]

_RELATIVE_RE = re.compile(r"(?P<type>[A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_ABSOLUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_FRAGMENT_RE = re.compile(r"#[A-Za-z0-9\-.]{0,64}")
_CONDITIONAL_RE = re.compile(r"(?P<type>[A-Z][A-Za-z]+)\?\S+")

EXPECTED = "Type/id[/_history/vid] with a known resource type, an absolute URL, urn:uuid:, urn:oid: or #fragment"


def reference_problem(value: str, resource_types: frozenset[str], conditional: bool = False) -> str | None:
    """Return what was expected when ``value`` is no valid literal reference, else ``None``."""
    first = value[:1]
    if first == "#":
        return None if _FRAGMENT_RE.fullmatch(value) else "a #fragment naming a contained resource id"
    if value.startswith("urn:"):
        if value.startswith("urn:uuid:"):
            return None if UUID_RE.fullmatch(value) else "urn:uuid: followed by a lower-case RFC 4122 UUID"
        if value.startswith("urn:oid:"):
            return None if OID_RE.fullmatch(value) else "urn:oid: followed by a dotted OID"
    match = _RELATIVE_RE.fullmatch(value)
    if match is not None:
        if match["type"] in resource_types:
            return None
        return f"a known R4 resource type before '/', not {match['type']!r}"
    if conditional:
        cond = _CONDITIONAL_RE.fullmatch(value)
        if cond is not None and cond["type"] in resource_types:
            return None
    return None if _ABSOLUTE_RE.fullmatch(value) else EXPECTED

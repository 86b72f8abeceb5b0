"""Re-point references after a patient merge: what follows an ADT^A40 (HL7 v2.5 section 3.3.40) or
a FHIR R5 ``Patient/$merge``, "all resources that reference the source patient … reference the
target patient", as one step of a write session.

The merge itself - the merged Patient inactive with ``link: replaced-by`` the survivor, the
survivor ``link: replaces`` the merged one - is written by whoever asked for it (the A40's Bundle,
convert/adt.py). This module then writes a new version of every current resource that references
``Patient/<merged>``, with each such reference, anywhere in the resource, replaced by
``Patient/<survivor>``: an update through the session's one write path, so it is validated,
re-indexed (searches find it under the survivor) and in the outbox, and the old version stays in
the history. A resource with nothing to change gets no version, so running it twice writes nothing.

Candidates come from the reference index (``idx_reference`` by target), not a scan: a resource
that mentions the merged Patient only in an element no search parameter covers is not found.

Left alone, on purpose:

* ``Patient`` (and ``Person``, ``Linkage``): their references to a Patient are identity links -
  the two ``link`` elements of the merge itself, or an earlier merge's ``replaced-by`` that the
  survivor's ``replaces`` now continues.
* ``Provenance`` and ``AuditEvent``: they record what happened to the merged Patient; rewriting
  them would rewrite history.
* Version-specific references (``Patient/<merged>/_history/2``) name that version on purpose, and
  absolute URLs may name another server: only ``Patient/<merged>`` exactly is replaced.
"""

from __future__ import annotations

from typing import Any

from ..errors import FhirError
from ..jsonio import loads
from .model import WriteResult
from .service import WriteSession
from .sql import Q

__all__ = ["KEPT_TYPES", "repoint_references"]

KEPT_TYPES = frozenset({"Patient", "Person", "Linkage", "Provenance", "AuditEvent"})
"""Resource types whose references to the merged Patient are never rewritten (see above)."""

_REFERRERS = Q(
    "SELECT DISTINCT r.res_type, r.res_id FROM idx_reference x JOIN resource r ON r.pk = x.res_pk "
    "WHERE x.target_type = 'Patient' AND x.target_id = ? AND r.deleted = ? "
    f"AND r.res_type NOT IN ({', '.join(repr(t) for t in sorted(KEPT_TYPES))}) ORDER BY r.res_type, r.res_id"
)


def repoint_references(w: WriteSession, merged: str, survivor: str) -> list[WriteResult]:
    """Write a new version of every current resource referencing ``Patient/<merged>`` with those
    references made ``Patient/<survivor>``; returns the writes, in (type, id) order.

    Runs inside ``w``'s transaction: a failure (a resource the store refuses, or one changed by
    another transaction meanwhile: 412) raises the store's FhirError and, in a savepoint, rolls back
    the merge that called it too.
    """
    if merged == survivor:
        return []
    w.flush()  # this session's own writes must be in the index
    w.cur.execute(_REFERRERS(w.store.dialect == "postgresql"), (merged, False))
    old, new = f"Patient/{merged}", f"Patient/{survivor}"
    written = []
    for res_type, res_id in w.cur.fetchall():
        current = w.store.read(res_type, res_id, w.conn)
        assert current.raw is not None
        resource = loads(current.raw)
        if not _replace(resource, old, new):
            continue
        try:
            # If-Match: a version another transaction wrote since the read fails (412, retried),
            # rather than being overwritten by this rewrite of the one before it (PostgreSQL)
            written.append(w.update(res_type, res_id, resource, if_match=current.etag))
        except FhirError as exc:
            raise type(exc)(f"Re-pointing {res_type}/{res_id} from {old} to {new}: {exc.diagnostics}",
                            issues=exc.issues) from None
    return written


def _replace(value: Any, old: str, new: str) -> bool:
    """Set every ``reference`` equal to ``old`` to ``new``, in place; True when one was."""
    changed = False
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("reference") == old:
                node["reference"] = new
                changed = True
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return changed

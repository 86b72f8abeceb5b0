"""Bulk loading of Bundles and single resources through the store's one write path.

transaction Bundles load atomically (one database transaction each), batch Bundles entry by entry,
collection/searchset Bundles and NDJSON resources as upserts (PUT when the resource has an id,
POST otherwise) grouped into database transactions of ``group`` resources for speed. A resource
that fails validation is reported and skipped; the rest of its group still loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .bundles import process_batch, process_transaction
from .errors import FhirError
from .store.service import Store, WriteSession

__all__ = ["LoadSummary", "load_items"]


@dataclass
class LoadSummary:
    bundles: int = 0
    resources: int = 0
    errors: list[str] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)

    def count(self, res_type: str, n: int = 1) -> None:
        self.resources += n
        self.by_type[res_type] = self.by_type.get(res_type, 0) + n


def _upsert(w: WriteSession, resource: dict[str, Any]) -> None:
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str):
        from .errors import BadRequest

        raise BadRequest("Not a FHIR resource: no resourceType.")
    res_id = resource.get("id")
    if isinstance(res_id, str) and res_id:
        w.update(res_type, res_id, resource)
    else:
        w.create(res_type, resource)


def load_items(
    store: Store,
    items: Iterable[Any],
    known_types: frozenset[str],
    *,
    group: int = 500,
    progress: Callable[[int], None] | None = None,
) -> LoadSummary:
    """Load ``LoadItem``s (see ``loadfiles``); ``progress(n)`` is called as units complete."""
    summary = LoadSummary()
    pending: list[tuple[dict[str, Any], str]] = []

    def flush() -> None:
        if not pending:
            return
        with store.writer() as w:
            for resource, source in pending:
                try:
                    _upsert(w, resource)
                    summary.count(str(resource.get("resourceType")))
                except FhirError as exc:
                    summary.errors.append(f"{source}: {exc.diagnostics}")
        if progress:
            progress(len(pending))
        pending.clear()

    for item in items:
        if item.kind == "skipped":
            if progress:
                progress(1)
            continue
        if item.kind == "error":
            summary.errors.append(item.message)
            if progress:
                progress(1)
            continue
        if item.kind == "resource":
            pending.append((item.resource, item.source))
            if len(pending) >= group:
                flush()
            continue
        flush()
        bundle = item.resource
        kind = bundle.get("type")
        try:
            if kind == "transaction":
                results = process_transaction(store, bundle, known_types)
                for entry in bundle.get("entry") or []:
                    rt = (entry.get("resource") or {}).get("resourceType")
                    if rt and entry.get("request", {}).get("method", "").upper() in ("POST", "PUT"):
                        summary.count(rt)
                del results
            elif kind == "batch":
                for entry, result in zip(bundle.get("entry") or [], process_batch(store, bundle, known_types), strict=False):
                    if result.outcome:
                        summary.errors.append(f"{item.source}: entry {entry.get('request', {}).get('url')}: "
                                              f"{result.outcome['issue'][0]['diagnostics']}")
                    elif (entry.get("resource") or {}).get("resourceType"):
                        summary.count(entry["resource"]["resourceType"])
            else:
                with store.writer() as w:
                    for i, entry in enumerate(bundle.get("entry") or []):
                        resource = entry.get("resource") if isinstance(entry, dict) else None
                        if not isinstance(resource, dict):
                            continue
                        try:
                            _upsert(w, resource)
                            summary.count(str(resource.get("resourceType")))
                        except FhirError as exc:
                            summary.errors.append(f"{item.source}: entry {i}: {exc.diagnostics}")
            summary.bundles += 1
        except FhirError as exc:
            summary.errors.append(f"{item.source}: {exc.diagnostics}")
        if progress:
            progress(1)
    flush()
    return summary

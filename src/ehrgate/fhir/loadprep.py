"""The CPU half of ``ehrgate load``: parse, validate, index, rewrite — no database, any process.

``prepare_unit`` turns one unit of input (``loadfiles.iter_load_units``) into ``Step``s that the
loader applies in order through the store (``loader.py``). It runs in worker processes when the
machine has cores to spare, else inline; the result is the same. Each step is one of:

- ``("error", message)``: an item that cannot be loaded (reported, never dropped silently);
- ``("upsert", batch, sources)``: single resources (NDJSON lines, collection entries, one-resource
  files) as create-or-update by id, each one on its own;
- ``("conditional", deferred)``: single resources holding conditional references
  (``"reference": "Practitioner?identifier=…"``, as in Synthea's bulk output), which only the
  database can resolve. They are validated and indexed here all the same, with a placeholder id in
  each such reference (``Deferred``); the writer resolves the references and swaps the ids in;
- ``("transaction", batch, source, by_type)``: a transaction Bundle planned as the store would run
  it (http://hl7.org/fhir/R4/http.html#trules: POSTs before PUTs, ``urn:uuid:`` fullUrls given
  server ids and every reference to them rewritten), to be written all or nothing;
- ``("collection", batch, sources, source, errors, deferred)``: the entries of a collection (or
  searchset, history) Bundle, loaded like single resources; ``errors`` are its entries that cannot
  be, ``deferred`` those holding conditional references (written after the others);
- ``("bundle", bundle, source)``: a Bundle the loader runs through ``bundles.py`` as it is (a
  ``batch``, or a transaction with conditional entries or conditional references, or DELETE, PATCH
  or GET entries: those need the database to plan).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .bundles import (
    _CONDITIONAL_REFERENCE,
    _ORDER,
    _entries,
    _entry_expression,
    _serialised,
    check_full_urls,
    entry_target,
    plain_serialised,
    resolve_placeholders,
    rewrite_references,
    write_once,
)
from .errors import BadRequest, FhirError, Issue
from .loadfiles import LoadItem, LoadUnit, read_unit
from .search.extract import extract_index
from .search.types import IndexRows
from .store.prepare import PreparedBatch
from .store.service import ID_PATTERN, _default_extract, _default_validate, new_uuid
from .validation import validate as _validate

__all__ = ["Deferred", "Preparer", "Step", "init_worker", "prepare_in_worker"]

Step = tuple[Any, ...]
PLACEHOLDER = "ehrgate-cond-"
"""Prefix of the id that stands in for a conditional reference's match until the writer knows it."""


@dataclass(slots=True)
class Deferred:
    """Single resources holding conditional references, prepared (validated, indexed, serialised)
    with ``Type/<placeholder>`` in place of each ``Type?criteria``. ``refs[n]``: entry ``n``'s
    placeholder references and the conditional references they stand for."""

    batch: PreparedBatch = field(default_factory=PreparedBatch)
    sources: list[str] = field(default_factory=list)
    refs: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.refs)

    def only(self, ns: list[int]) -> Deferred:
        """The entries ``ns`` as a Deferred of their own (those still waiting for their targets)."""
        return Deferred(self.batch.select(ns), [self.sources[n] for n in ns], [self.refs[n] for n in ns])


class Preparer:
    """The store's pure steps (its validate, extract and new_id) applied to load input."""

    def __init__(
        self,
        known_types: frozenset[str],
        validate: Callable[[dict[str, Any]], list[Any]] = _default_validate,
        extract: Callable[[dict[str, Any]], IndexRows] = _default_extract,
        new_id: Callable[[], str] = new_uuid,
    ) -> None:
        self.known_types = known_types
        # The store's defaults are wrappers that import the function on first use (service.py):
        # this runs once per resource, so call the function itself.
        self.validate = _validate if validate is _default_validate else validate
        self.extract = extract_index if extract is _default_extract else extract
        self.new_id = new_id

    def unit(self, unit: LoadUnit) -> list[Step]:
        steps: list[Step] = []
        singles = PreparedBatch()
        sources: list[str] = []
        for item in read_unit(unit):
            if item.kind == "resource":
                assert item.resource is not None
                if _has_conditional_reference(item.resource):
                    if singles:  # in input order: what came before may be what it refers to
                        steps.append(("upsert", singles, sources))
                        singles, sources = PreparedBatch(), []
                    if not (steps and steps[-1][0] == "conditional"):
                        steps.append(("conditional", Deferred()))
                    self._defer(item.resource, str(item.source), steps[-1][1], steps)
                else:
                    self._single(item.resource, str(item.source), singles, sources, steps)
                continue
            if singles:  # keep input order: single resources before a following bundle
                steps.append(("upsert", singles, sources))
                singles, sources = PreparedBatch(), []
            if item.kind == "bundle":
                steps.append(self.bundle(item))
            elif item.kind == "error":
                steps.append(("error", item.message))
            elif item.kind == "skipped":  # said in the summary (it was dropped without a word)
                steps.append(("skipped", item.message))
        if singles:
            steps.append(("upsert", singles, sources))
        return steps

    def _single(self, resource: dict[str, Any], source: str, batch: PreparedBatch, sources: list[str],
                steps: list[Step]) -> None:
        """A resource loaded on its own: PUT when it has an id (create or update), else POST; what
        cannot be loaded becomes an error step of ``source``. (One holding conditional references
        goes through ``_defer``.)"""
        try:
            res_id = resource.get("id")
            if not isinstance(resource.get("resourceType"), str):
                raise BadRequest("Not a FHIR resource: no resourceType.")
            if isinstance(res_id, str) and res_id:
                if not ID_PATTERN.match(res_id):
                    raise BadRequest(f"Id {res_id!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .).")
                batch.add("PUT", resource, res_id, self.validate, self.extract)
            else:
                new = self.new_id()
                batch.add("POST", {**resource, "id": new}, new, self.validate, self.extract)
            sources.append(source)
        except FhirError as exc:
            steps.append(("error", f"{source}: {exc.diagnostics}"))

    def _defer(self, resource: dict[str, Any], source: str, deferred: Deferred, steps: list[Step]) -> None:
        """Prepare a resource holding conditional references into ``deferred``: each reference
        ``Type?criteria`` becomes ``Type/<placeholder>`` (one placeholder per distinct reference),
        so validation and indexing - the CPU work - happen here, in a worker, not in the writer.
        What fails for any other reason is reported now, as an error of ``source``."""
        data = _serialised(resource)
        stand_in: dict[str, str] = {}
        for match in _CONDITIONAL_REFERENCE.finditer(data):
            reference = match.group(1).decode()
            digest = hashlib.sha1(reference.encode(), usedforsecurity=False).hexdigest()[:24]
            stand_in.setdefault(reference, f"{reference.partition('?')[0]}/{PLACEHOLDER}{digest}")
        before = len(deferred.batch)
        self._single(rewrite_references(resource, stand_in), source, deferred.batch, deferred.sources, steps)
        if len(deferred.batch) > before:
            deferred.refs.append({placeholder: reference for reference, placeholder in stand_in.items()})

    def bundle(self, item: LoadItem) -> Step:
        bundle = item.resource
        assert bundle is not None
        source = str(item.source)
        kind = bundle.get("type")
        if kind == "batch":
            return ("bundle", bundle, source)
        if kind == "transaction":
            try:
                planned = self.transaction(bundle)
            except FhirError as exc:
                return ("error", f"{source}: {exc.diagnostics}")
            if planned is None:
                return ("bundle", bundle, source)
            return ("transaction", planned[0], source, planned[1])
        batch = PreparedBatch()
        sources: list[str] = []
        errors: list[Step] = []
        deferred = Deferred()
        for i, entry in enumerate(bundle.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            if _has_conditional_reference(resource):
                self._defer(resource, f"{source}: entry {i}", deferred, errors)
            else:
                self._single(resource, f"{source}: entry {i}", batch, sources, errors)
        return ("collection", batch, sources, source, errors, deferred)

    def transaction(self, bundle: dict[str, Any]) -> tuple[PreparedBatch, dict[str, int]] | None:
        """Plan a transaction whose entries are all POST (unconditional) or PUT ``Type/id``, as
        ``bundles._transaction_in`` runs it; None for any other transaction. Raises FhirError with
        the messages ``_transaction_in`` gives."""
        entries = _entries(bundle, "transaction")
        check_full_urls(entries)
        targets = []
        seen: set[tuple[str, str]] = set()
        for i, entry in enumerate(entries):
            request = entry["request"]
            method = str(request["method"]).upper()
            if method not in ("POST", "PUT") or request.get("ifNoneExist") or request.get("ifMatch"):
                return None
            target = entry_target(i, request["url"], self.known_types)
            if (method == "POST") != (target.res_id is None) or target.criteria or target.operation or target.rest:
                return None  # conditional, or an error whose message bundles.py owns
            if target.res_id:
                write_once(i, target, seen)
            targets.append(target)
        # Each resource serialised once, for this test and for the placeholder rewrite below.
        datas = [plain_serialised(entry.get("resource")) if isinstance(entry.get("resource"), dict) else None
                 for entry in entries]
        for entry, data in zip(entries, datas, strict=True):
            if _has_conditional_reference(entry.get("resource"), data):
                return None  # resolved against the stored data (bundles._resolve_conditional_references)
        mapping: dict[str, str] = {}
        ids: list[str] = []
        for entry, target in zip(entries, targets, strict=True):
            res_id = target.res_id or self.new_id()
            ids.append(res_id)
            full = entry.get("fullUrl")
            if full:
                mapping[full] = f"{target.res_type}/{res_id}"
        batch = PreparedBatch()
        by_type: dict[str, int] = {}
        for i in sorted(range(len(entries)), key=lambda i: _ORDER[entries[i]["request"]["method"].upper()]):
            entry, target, res_id = entries[i], targets[i], ids[i]
            method = entry["request"]["method"].upper()
            try:
                resource = entry.get("resource")
                if not isinstance(resource, dict):
                    raise BadRequest(f"Bundle.entry[{i}] ({method}) has no resource.")
                resource = resolve_placeholders(resource, mapping, datas[i])
                if method == "POST":
                    resource = {**resource, "id": res_id}
                else:
                    body_id = resource.get("id")
                    if body_id is None:
                        raise BadRequest(f"The {target.res_type} in the body has no id; an update must carry id {res_id!r}.",
                                         expression="id")
                    if body_id != res_id:
                        raise BadRequest(f"The body's id {body_id!r} does not match the URL's id {res_id!r}.", expression="id")
                if resource.get("resourceType") != target.res_type:
                    raise BadRequest(
                        f"The body's resourceType {resource.get('resourceType')!r} does not match the URL's "
                        f"{target.res_type!r}.", expression="resourceType")
                batch.add(method, resource, res_id, self.validate, self.extract)
            except FhirError as exc:
                issues = [
                    Issue(x.severity, x.code, f"Bundle.entry[{i}]: {x.diagnostics}", _entry_expression(i, x.expression))
                    for x in exc.issues
                ]
                raise type(exc)(f"Bundle.entry[{i}] ({method} {entry['request']['url']}): {exc.diagnostics}",
                                issues=issues) from None
            by_type[target.res_type] = by_type.get(target.res_type, 0) + 1
        return batch, by_type


def _has_conditional_reference(resource: Any, data: bytes | None = None) -> bool:
    """Whether ``resource`` holds a ``Type?criteria`` reference; ``data``: its JSON, when at hand."""
    if not isinstance(resource, dict):
        return False
    if data is None:
        data = _serialised(resource)
    return b"?" in data and _CONDITIONAL_REFERENCE.search(data) is not None


_WORKER: Preparer | None = None


def init_worker(preparer: Preparer) -> None:
    """Process-pool initializer: keep the loader's ``Preparer`` for this worker's lifetime."""
    global _WORKER
    _WORKER = preparer


def prepare_in_worker(unit: LoadUnit) -> list[Step]:
    assert _WORKER is not None, "init_worker was not called"
    return _WORKER.unit(unit)

"""Bulk loading of Bundles and single resources through the store's one write path.

A pipeline of two named steps: **prepare** (``loadprep.py``: parse, validate, extract index rows,
plan transactions — pure CPU work, in worker processes when there are cores to spare) and
**write** (here: the store's ``WriteSession.write_prepared``, SQL only, in this process, in input
order). Semantics, whichever way it runs:

- a transaction Bundle loads all or nothing (a SAVEPOINT inside the group's database
  transaction); ``urn:uuid:`` references are rewritten; transactions with conditional, DELETE,
  PATCH or GET entries run through ``bundles.process_transaction`` unchanged;
- a batch Bundle runs entry by entry (``bundles.process_batch``);
- collection/searchset/history entries and NDJSON lines are create-or-update by id (PUT when the
  resource has an id, POST otherwise); their conditional references (``Practitioner?identifier=…``)
  are resolved against the stored data, as in a transaction, by the writer (which swaps the match's
  id into what the workers prepared);
- anything that cannot be loaded is reported in ``LoadSummary.errors`` and the rest still loads.

Many units share one database transaction (``group`` resources) so commits do not dominate; a
failed unit is rolled back to its savepoint alone. If the load stops on an unexpected error
(interrupt, database failure) the group in progress is rolled back: every group committed before
it stays, no unit is ever half written.
"""

from __future__ import annotations

import os
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gctuning import fewer_collections
from .bundles import process_batch, process_transaction
from .errors import BadRequest, FhirError, PreconditionFailed
from .loadfiles import LoadItem, LoadUnit, iter_load_units
from .loadprep import Deferred, Preparer, Step, init_worker, prepare_in_worker
from .store.prepare import PreparedBatch
from .store.service import Store, WriteSession

__all__ = ["LoadSummary", "load_items", "load_paths"]

# Below this much input a worker pool costs more to start than it saves.
POOL_MIN_BYTES = 4 << 20


@dataclass
class LoadSummary:
    bundles: int = 0
    resources: int = 0
    errors: list[str] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Inputs left out on purpose, each with why (e.g. a Bulk Data export's log): not errors."""

    def count(self, res_type: str, n: int = 1) -> None:
        self.resources += n
        self.by_type[res_type] = self.by_type.get(res_type, 0) + n


def load_paths(
    store: Store,
    paths: Sequence[str | Path],
    known_types: frozenset[str],
    *,
    workers: int | None = None,
    group: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> LoadSummary:
    """Load files and directories (see ``loadfiles``). ``workers``: processes that prepare input
    (None: one per CPU when the input is large enough to pay for them; 0: all in this process)."""
    if workers is None:
        workers = (os.cpu_count() or 1) if _input_bytes(paths) >= POOL_MIN_BYTES else 0
    return _load(store, iter_load_units(list(paths)), known_types, workers, group, progress)


def load_items(
    store: Store,
    items: Iterable[LoadItem],
    known_types: frozenset[str],
    *,
    group: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> LoadSummary:
    """Load already parsed ``LoadItem``s (``loadfiles.iter_load_items``) in this process."""
    return _load(store, items, known_types, 0, group, progress)


def _input_bytes(paths: Sequence[str | Path]) -> int:
    from .loadfiles import _expand

    total = 0
    for path in _expand(list(paths)):
        try:
            total += path.stat().st_size
        except OSError:
            pass
        if total >= POOL_MIN_BYTES:
            break
    return total


def _weight(unit: LoadUnit) -> int:
    """Progress units: one per file or item, one per NDJSON line (as ``count_load_units``)."""
    return len(unit[2]) if isinstance(unit, tuple) and unit[0] == "lines" else 1


def _load(
    store: Store,
    units: Iterable[LoadUnit],
    known_types: frozenset[str],
    workers: int,
    group: int,
    progress: Callable[[int], None] | None,
) -> LoadSummary:
    preparer = Preparer(known_types, store.validate, store.extract, store.new_id)
    if workers > 0 and (not _picklable(preparer) or store.holds_connection()):
        workers = 0  # a store built with lambdas (tests), or one this thread reads through: prepare here
    if workers > 0:
        store.engine.dispose()  # before forking: see _prepared
    writer = _Writer(store, known_types, group)
    with fewer_collections():  # ~11% less CPU a resource: see gctuning.py
        try:
            for unit, steps in _prepared(units, preparer, workers):
                for step in steps:
                    writer.apply(step)
                if progress:
                    progress(_weight(unit))
            writer.finish()
        except BaseException as exc:
            writer.abort(exc)
            raise
    return writer.summary


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return True


def _prepared(units: Iterable[LoadUnit], preparer: Preparer, workers: int) -> Iterator[tuple[LoadUnit, list[Step]]]:
    """Each unit with its steps, in input order; ``workers`` processes keep a few units ahead."""
    if workers <= 0:
        for unit in units:
            yield unit, preparer.unit(unit)
        return
    import multiprocessing

    # fork: workers start at once with everything imported (a fresh interpreter per worker cost
    # more than the load of a few files). The caller has closed its database connections
    # (``store.engine.dispose()``), so no child inherits an open SQLite or PostgreSQL handle; the
    # pool forks all its workers on the first submit, before the writer opens a connection.
    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(preparer,))
    ahead: deque[tuple[LoadUnit, Future[list[Step]]]] = deque()
    try:
        for unit in units:
            ahead.append((unit, pool.submit(prepare_in_worker, unit)))
            if len(ahead) > 4 * workers:
                done, future = ahead.popleft()
                yield done, future.result()
        while ahead:
            done, future = ahead.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Writer:
    """Applies steps through one write session, committed every ``group`` resources."""

    def __init__(self, store: Store, known_types: frozenset[str], group: int) -> None:
        self.store = store
        self.preparer = Preparer(known_types, store.validate, store.extract, store.new_id)
        self.known_types = known_types
        self.group = group
        self.summary = LoadSummary()
        self._cm: AbstractContextManager[WriteSession] | None = None
        self._w: WriteSession | None = None
        self._written = 0
        self._resolved: dict[str, str] = {}
        """Conditional reference -> ``Type/id`` of its match, for the whole load."""
        self._waiting: list[Deferred] = []

    def session(self) -> WriteSession:
        if self._w is None:
            self._cm = self.store.writer(bulk=True)
            self._w = self._cm.__enter__()
        return self._w

    def commit(self) -> None:
        cm, self._cm, self._w, self._written = self._cm, None, None, 0
        if cm is not None:
            cm.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        cm, self._cm, self._w = self._cm, None, None
        if cm is not None:
            cm.__exit__(type(exc), exc, exc.__traceback__)

    def _wrote(self, n: int) -> None:
        self._written += n
        if self._written >= self.group:
            self.commit()

    def apply(self, step: Step) -> None:
        kind = step[0]
        summary = self.summary
        if kind == "error":
            summary.errors.append(step[1])
        elif kind == "skipped":
            summary.skipped.append(step[1])
        elif kind == "upsert":
            self._singles(step[1], step[2])
        elif kind == "conditional":
            self._conditional(step[1])
        elif kind == "collection":
            _kind, batch, sources, _source, errors, conditional = step
            summary.errors.extend(e[1] for e in errors)
            self._singles(batch, sources)
            self._conditional(conditional)
            summary.bundles += 1
        elif kind == "transaction":
            _kind, batch, source, by_type = step
            w = self.session()
            try:
                with w.savepoint():
                    w.write_prepared(batch)
            except FhirError as exc:
                summary.errors.append(f"{source}: {exc.diagnostics}")
                return
            for res_type, n in by_type.items():
                summary.count(res_type, n)
            summary.bundles += 1
            self._wrote(len(batch))
        else:
            self._bundle(step[1], step[2])

    def _conditional(self, deferred: Deferred, *, last: bool = False) -> None:
        """Single resources with conditional references (``Practitioner?identifier=…``), prepared
        with placeholders (``loadprep.Deferred``): each reference becomes the ``Type/id`` of its one
        match among the resources stored so far (as in a transaction,
        http://hl7.org/fhir/R4/http.html#trules), swapped into the prepared JSON and index rows,
        and the resource is written like the others. One with a reference that matches nothing yet
        waits for the end of the load (its target may come later in the input); no match then, or
        several matches, is an error naming the reference. A reference resolves once per load."""
        if not len(deferred):
            return
        w = self.session()
        ready: list[int] = []
        swaps: list[dict[str, str]] = []
        waiting: list[int] = []
        for n, refs in enumerate(deferred.refs):
            try:
                swap: dict[str, str] = {}
                for placeholder, reference in refs.items():
                    target = self._resolved.get(reference)
                    if target is None:
                        target = self._resolve(w, reference, final=last)
                        if target is None:
                            break
                    swap[placeholder] = target
                    swap[placeholder.partition("/")[2]] = target.partition("/")[2]
                else:
                    ready.append(n)
                    swaps.append(swap)
                    continue
                waiting.append(n)
            except FhirError as exc:
                self.summary.errors.append(f"{deferred.sources[n]}: {exc.diagnostics}")
        if ready:
            self._singles(deferred.batch.select(ready, swaps), [deferred.sources[n] for n in ready])
        if waiting:
            self._waiting.append(deferred.only(waiting))

    def _resolve(self, w: WriteSession, reference: str, *, final: bool) -> str | None:
        """``Type/id`` of the one match of ``reference``; None when nothing matches yet (and this is
        not the final attempt); raises the transaction's errors otherwise."""
        res_type, _, criteria = reference.partition("?")
        if res_type not in self.known_types:
            raise BadRequest(f"The conditional reference {reference!r} names an unknown resource type.")
        if not criteria:
            raise BadRequest(f"The conditional reference {reference!r} has no search criteria.")
        found = w.find(res_type, criteria)
        if not found and not final:
            return None
        if len(found) != 1:
            how = "no" if not found else f"{len(found)}"
            raise PreconditionFailed(f"The conditional reference {reference!r} matches {how} resources; it must "
                                     "match exactly one. Make the criteria more specific, or load the target too.")
        target = self._resolved[reference] = f"{res_type}/{found[0][1]}"
        return target

    def finish(self) -> None:
        """The resources that waited for their conditional references' targets, then commit."""
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            self._conditional(deferred, last=True)
        self.commit()

    def _singles(self, batch: PreparedBatch, sources: list[str]) -> None:
        """Single resources: all in one savepoint; if one fails, each on its own to name it."""
        if not batch:
            return
        w = self.session()
        try:
            with w.savepoint():
                w.write_prepared(batch)
        except FhirError:
            for n in range(len(batch)):
                try:
                    with w.savepoint():
                        w.write_prepared(batch.only(n))
                    self.summary.count(batch.entries[n].res_type)
                except FhirError as exc:
                    self.summary.errors.append(f"{sources[n]}: {exc.diagnostics}")
        else:
            for entry in batch.entries:
                self.summary.count(entry.res_type)
        self._wrote(len(batch))

    def _bundle(self, bundle: dict[str, Any], source: str) -> None:
        """A Bundle that needs the database to plan: through bundles.py as the REST API runs it."""
        summary = self.summary
        try:
            if bundle.get("type") == "transaction":
                w = self.session()
                with w.savepoint():
                    process_transaction(self.store, bundle, self.known_types, session=w)
                for entry in bundle.get("entry") or []:
                    rt = (entry.get("resource") or {}).get("resourceType")
                    if rt and entry.get("request", {}).get("method", "").upper() in ("POST", "PUT"):
                        summary.count(rt)
                self._wrote(len(bundle.get("entry") or []))
            else:  # batch: each entry in its own transaction, after the group so far is committed
                self.commit()
                for entry, result in zip(bundle.get("entry") or [], process_batch(self.store, bundle, self.known_types),
                                         strict=False):
                    if result.outcome:
                        summary.errors.append(f"{source}: entry {entry.get('request', {}).get('url')}: "
                                              f"{result.outcome['issue'][0]['diagnostics']}")
                    elif (entry.get("resource") or {}).get("resourceType"):
                        summary.count(entry["resource"]["resourceType"])
            summary.bundles += 1
        except FhirError as exc:
            summary.errors.append(f"{source}: {exc.diagnostics}")

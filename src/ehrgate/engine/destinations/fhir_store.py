"""Destination ``fhir_store``: the message's FHIR Bundle, as one transaction through the store's
write path (``ehrgate.fhir.bundles.process_transaction``), committed together with the queue's
bookkeeping - so a message is never written twice, even around a crash.

Several queued messages share one database transaction (``batch``, ``batch_ms``): one commit and
one fsync for all of them instead of one per message, which is most of what a message costs on
SQLite. Each message's Bundle and its bookkeeping run inside a savepoint of their own, so a Bundle
the store refuses rolls back only itself and is recorded as that message's failure; the others
commit. A message is SENT only in the transaction that wrote its Bundle; a crash before the commit
leaves every message of the batch queued, to be delivered again (the Bundles' conditional
identifiers make that idempotent). The time budget keeps the write lock short, so the engine's
ACK writer (the same SQLite file) is never held up long: on SQLite it ends a batch only when another
writer of this process waits for the lock (``writers_waiting``); while none does (a backlog drains
after a burst), the batch runs to ``batch`` messages, and the one commit serves all of them.

After an ADT^A40's Bundle (``repoint_on_merge``, on by default) the references to each merged
Patient are re-pointed to its survivor in the same savepoint (``fhir/store/merge.py``): the merge
and the re-pointing commit or roll back together. The pair is read from the store after the
transaction: the Patients the Bundle wrote that are now ``replaced-by`` another.

A message that arrives after the merge with the merged identifier (a late A08 or lab result from a
system that has not caught up; ``follow_merges``, on by default) is attached to the survivor: each
Patient entry of its Bundle whose conditional criteria find a Patient that is ``replaced-by``
another (followed to the last one) becomes a conditional create of that survivor (``ifNoneExist:
_id=<survivor>``), which writes nothing, so the message's resources reference the survivor and the
merged Patient keeps its ``active: false`` and link. The demographics that message carried are not
applied to either Patient; the delivery's response lists ``{"followed_merge": {"merged": ...,
"survivor": ...}}``. Whether or not it follows, a full update of a Patient (an A08's ``PUT
Patient?identifier=``) keeps the Patient's stored ``link`` elements - and ``active: false`` on a
merged one - since the message's PID cannot carry them: before, a later A08 for either Patient
dropped its link, undoing the merge on that side.

Without a Bundle (the channel has no conversion step yet) there is nothing to write: the delivery
is recorded as SENT with a response saying so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ...fhir import jsonio
from ...fhir.bundles import EntryResult, process_transaction, transaction_locks
from ...fhir.errors import FhirError
from ...fhir.store.engine import writers_waiting
from ...fhir.store.merge import repoint_references
from ...fhir.store.model import WriteResult, iso_instant
from ...fhir.store.service import WriteSession
from ..config import DestinationConfig
from ..errors import ChannelConfigError
from ..queue import Delivered
from .base import Context, Destination, Payload

NO_BUNDLE = b"No FHIR resources: the channel produced no Bundle (add the hl7_to_fhir step to convert HL7 v2 messages)."
NO_STORE = "The FHIR store is not available in this process"
BATCH = 50
"""Default ``batch``: messages per store transaction."""
BATCH_MS = 20
"""Default ``batch_ms``: no further message starts in a transaction open this long (on SQLite: while
another writer of this process waits for the write lock; see ``_budget_spent``). The receipts
(ACKs) of every channel wait for the SQLite write lock meanwhile: 2026-12-07, bench/convert_e2e.py,
alternating, 50 ms gave ACK p50/p99 57-68 / 164-212 ms, 20 ms 33-43 / 102-121 ms and 10 ms 32-39 /
77-79 ms, at 49-59, 37-53 and 38-46 messages/s end to end (within the run-to-run noise of each
other, the shorter budgets a little lower)."""
MERGE = "ADT^A40"
"""The message type after whose Bundle references follow the survivor (``repoint_on_merge``)."""


class FhirStoreDestination(Destination):
    transactional = True

    def __init__(self, cfg: DestinationConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.batch_size = int(cfg.options.get("batch", BATCH))
        self.batch_seconds = float(cfg.options.get("batch_ms", BATCH_MS)) / 1000
        self.repoint = bool(cfg.options.get("repoint_on_merge", True))
        self.follow = bool(cfg.options.get("follow_merges", True))

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        batch = options.get("batch", BATCH)
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 1000:
            raise ChannelConfigError(f"option 'batch' has value {batch!r}. Expected a whole number of messages "
                                     "per store transaction, 1-1000.")
        budget = options.get("batch_ms", BATCH_MS)
        if not isinstance(budget, (int, float)) or isinstance(budget, bool) or not 0 <= budget <= 10_000:
            raise ChannelConfigError(f"option 'batch_ms' has value {budget!r}. Expected milliseconds, 0-10000.")
        for flag in ("follow_merges", "repoint_on_merge"):
            value = options.get(flag, True)
            if not isinstance(value, bool):
                raise ChannelConfigError(f"option {flag!r} has value {value!r}. Expected true or false.")
        unknown = sorted(set(options) - {"batch", "batch_ms", "follow_merges", "repoint_on_merge"})
        if unknown:
            raise ChannelConfigError(f"option {unknown[0]!r} is not known to the fhir_store destination. "
                                     "Expected batch, batch_ms, follow_merges or repoint_on_merge.")

    def deliver_in(self, payload: Payload, finish: Callable[[Any, Delivered], Any]) -> Delivered:
        store = self.ctx.fhir_store
        if store is None:
            return Delivered(False, error=NO_STORE, retry=True)
        try:
            with store.writer(bulk=True) as w:
                bundles = self._lock_all(w, [payload])
                result = self._write(w, payload, bundles[0])
                if result.ok:
                    w.flush()
                    finish(w.conn, result)
            return result
        except (FhirError, _RepointRefused) as exc:
            return _refused(exc)
        except sa.exc.OperationalError as exc:
            return _busy(exc)

    def deliver_many_in(self, payloads: Sequence[Payload],
                        finish: Callable[[Any, int, Delivered], Any]) -> list[Delivered | Exception]:
        store = self.ctx.fhir_store
        if store is None:
            return [Delivered(False, error=NO_STORE, retry=True) for _ in payloads]
        outcomes: list[Delivered | Exception] = []
        with store.writer(bulk=True) as w:  # a savepoint per message: statement journal in memory
            deadline = time.perf_counter() + self.batch_seconds
            bundles = self._lock_all(w, payloads)
            for n, payload in enumerate(payloads):
                if n and self._budget_spent(w, deadline):
                    break
                started = time.perf_counter()
                try:
                    with w.savepoint():
                        result = self._write(w, payload, bundles[n])
                        if result.ok:
                            w.flush()  # whatever can fail fails before the message is finished
                            result.duration_ms = int((time.perf_counter() - started) * 1000)
                            finish(w.conn, n, result)
                except (FhirError, _RepointRefused) as exc:
                    result = _refused(exc)
                except sa.exc.OperationalError as exc:
                    result = _busy(exc)
                except Exception as exc:  # noqa: BLE001 - this message rolled back; the caller reports it
                    outcomes.append(exc)
                    continue
                if not result.ok:
                    result.duration_ms = int((time.perf_counter() - started) * 1000)
                    try:
                        with w.savepoint():
                            finish(w.conn, n, result)
                    except Exception as exc:  # noqa: BLE001 - e.g. LeaseLost: recorded by its new owner
                        outcomes.append(exc)
                        continue
                outcomes.append(result)
        return outcomes

    @staticmethod
    def _budget_spent(w: WriteSession, deadline: float) -> bool:
        """Whether the batch stops before its next message: the transaction has been open
        ``batch_ms`` and - on SQLite - another writer of this process (the engine's receipts, a
        channel's pipeline, a REST write) waits for the write lock. With nobody waiting, stopping
        would only make more commits: each costs an fsync and a WAL write of every page the batch
        touched (~270 pages for one converted ADT/ORU message alone, ~80 each for ten together),
        which was most of what a message cost the destination when its batches averaged two."""
        if time.perf_counter() < deadline:
            return False
        return w.store.dialect != "sqlite" or writers_waiting() > 0

    def _lock_all(self, w: WriteSession, payloads: Sequence[Payload]) -> list[Any]:
        """PostgreSQL: take the criteria locks of every message's Bundle at once, in the store's one
        global order, before any is written (``WriteSession.lock_criteria_all``). Messages in one
        batch, and batches of several workers, otherwise took them message by message and could
        deadlock each other (PostgreSQL then failed one, to be retried). Returns the parsed Bundles
        (None: not parsed here; ``_write`` parses it and reports what is wrong)."""
        bundles: list[Any] = [None] * len(payloads)
        if w.store.dialect != "postgresql":
            return bundles
        locks: list[tuple[str, str]] = []
        for n, payload in enumerate(payloads):
            if payload.bundle is None:
                continue
            try:
                bundles[n] = jsonio.loads(payload.bundle)
            except ValueError:
                continue
            locks.extend(transaction_locks(bundles[n], self.ctx.known_types))
        w.lock_criteria_all(locks)
        return bundles

    def _write(self, w: WriteSession, payload: Payload, bundle: Any = None) -> Delivered:
        """Write one message's Bundle in ``w`` (raises the store's FhirError when it refuses it);
        ``bundle``: the payload's Bundle when already parsed."""
        if payload.bundle is None:
            return Delivered(True, response=NO_BUNDLE)
        if bundle is None:
            try:
                bundle = jsonio.loads(payload.bundle)  # keeps decimal digits ("13.20")
            except ValueError:
                return Delivered(False, error="The message's FHIR Bundle is not valid JSON", retry=False)
        followed = _patients(w, bundle, self.follow) if payload.msg_type != MERGE else []
        results = process_transaction(w.store, bundle, self.ctx.known_types, session=w)
        summary: list[dict[str, Any]] = [{"status": r.status, "location": r.location} for r in results]
        summary.extend({"followed_merge": {"merged": f"Patient/{merged}", "survivor": f"Patient/{survivor}"}}
                       for merged, survivor in followed)
        if self.repoint and payload.msg_type == MERGE:
            for merged, survivor in _merges(w, results):
                try:
                    moved = repoint_references(w, merged, survivor)
                    if moved:
                        record = w.create("Provenance", merge_provenance(payload, merged, survivor, moved, w.now))
                except FhirError as exc:
                    raise _RepointRefused(exc) from None
                summary.extend({"status": r.status, "location": r.stored.location, "repointed": f"Patient/{merged}"}
                               for r in moved)
                if moved:
                    summary.append({"status": record.status, "location": record.stored.location})
        return Delivered(True, response=json.dumps(summary).encode())


_MERGE_WHY = "Patient merge (ADT^A40): references to the merged Patient re-pointed to the survivor"


def merge_provenance(payload: Payload, merged: str, survivor: str, moved: Sequence[WriteResult],
                     now_ms: int) -> dict[str, Any]:
    """The Provenance of a re-pointing: its targets are the new versions it wrote, the merged
    Patient is the entity ``removal`` and the survivor ``revision`` (the roles of the merge example
    in the FHIR build's Provenance examples), and the A40 is the ``source`` by its message-store
    entry, as in the Provenance the conversion writes for every message."""
    return {
        "resourceType": "Provenance",
        "target": [{"reference": r.stored.location} for r in moved],
        "recorded": iso_instant(now_ms),
        "reason": [{"text": _MERGE_WHY}],
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}],
                     "text": "re-point references after a patient merge"},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "assembler"}]},
                   "who": {"display": f"EHRGate channel {payload.channel} (fhir_store destination)"}}],
        "entity": [
            {"role": "removal", "what": {"reference": f"Patient/{merged}"}},
            {"role": "revision", "what": {"reference": f"Patient/{survivor}"}},
            {"role": "source", "what": {"identifier": {"system": "urn:ehrgate:message-store",
                                                       "value": str(payload.message_id)},
                                        "display": f"HL7 v2 {payload.msg_type} message {payload.control_id}".strip()}},
        ],
    }


_LOCK_KEY_SHARE = "SELECT pk FROM resource WHERE res_type = 'Patient' AND res_id = %s FOR KEY SHARE"
_LOCK_FOR_UPDATE = "SELECT pk FROM resource WHERE res_type = 'Patient' AND res_id = %s FOR UPDATE"
FOLLOW_HOPS = 10
"""Most ``replaced-by`` links followed from a merged Patient to its survivor (a chain of merges)."""


def _links(w: WriteSession, pid: str) -> list[Any]:
    """The ``link`` elements of ``Patient/pid`` (which exists; NotFound/Gone otherwise)."""
    links = jsonio.loads(w.store.read("Patient", pid, w.conn).raw or b"{}").get("link")
    return links if isinstance(links, list) else []


def _replaced_by(links: list[Any]) -> str | None:
    """The id of the Patient that these links say their Patient is ``replaced-by``, if any."""
    for link in links:
        if not isinstance(link, dict):
            continue
        other = str((link.get("other") or {}).get("reference", ""))
        if link.get("type") == "replaced-by" and other.startswith("Patient/"):
            return other.removeprefix("Patient/")
    return None


def _survivor(w: WriteSession, merged: str, links: list[Any]) -> str:
    """The last Patient of ``merged``'s ``replaced-by`` chain that exists (``merged`` itself when
    it is not replaced, or when its survivor is unknown or deleted: attaching to a Patient that is
    not there would create a new one). ``links``: ``merged``'s."""
    survivor, seen = merged, {merged}
    following = _replaced_by(links)
    for _ in range(FOLLOW_HOPS):
        if following is None or following in seen:
            break
        try:
            after = _replaced_by(_links(w, following))
        except FhirError:  # unknown or deleted
            break
        survivor = following
        seen.add(following)
        following = after
    return survivor


def _patients(w: WriteSession, bundle: dict[str, Any], follow: bool) -> list[tuple[str, str]]:
    """Before a (non-A40) message's Bundle is written: each Patient entry whose conditional criteria
    find one Patient that has merge links keeps them. Merged (``replaced-by``) with ``follow``: the
    entry becomes a conditional create of the survivor. Otherwise a full update (``PUT
    Patient?identifier=``, an A08) that carries no ``link`` gets the stored one - and ``active:
    false`` on a merged Patient - since the message's PID cannot know them and a PUT would drop
    them, undoing the merge on either side. Returns the (merged, survivor) ids it followed."""
    followed = []
    for entry in bundle.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        resource, request = entry.get("resource"), entry.get("request")
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient" or not isinstance(request, dict):
            continue
        url = str(request.get("url") or "")
        put = request.get("method") == "PUT" and url.startswith("Patient?")
        if put:
            criteria = url.partition("?")[2]
        elif request.get("method") == "POST" and request.get("ifNoneExist"):
            criteria = str(request["ifNoneExist"])
        else:
            continue
        try:
            # PostgreSQL (SQLite has one writer): the criteria's lock first, as the entry's own
            # conditional write and an A40's take it, so that an A40 in flight on this Patient and
            # this message wait for each other in one order (the other order deadlocked).
            w.lock_criteria("Patient", criteria)
            matches = w.find("Patient", criteria)
        except FhirError:
            continue  # criteria the search refuses: the transaction reports them
        if len(matches) != 1:
            continue
        found = matches[0][1]
        if w.store.dialect == "postgresql":
            # Then the Patient's row: wait for an A40 in flight on it (its patch holds the row FOR
            # UPDATE), and make an A40 that comes later wait for this message - the merge then
            # re-points this message's resources, or this message sees the merge and follows it.
            # A full update locks the row as its write will; a conditional create needs KEY SHARE,
            # which does not stop other messages updating the Patient.
            w.cur.execute(_LOCK_FOR_UPDATE if put else _LOCK_KEY_SHARE, (found,))
        try:
            links = _links(w, found)
        except FhirError:  # deleted by another transaction since the search: the Bundle's own write decides
            continue
        if not links:
            continue
        survivor = _survivor(w, found, links) if follow else found
        if survivor != found:
            entry["request"] = {"method": "POST", "url": "Patient", "ifNoneExist": f"_id={survivor}"}
            followed.append((found, survivor))
        elif put and "link" not in resource:
            resource["link"] = links
            if _replaced_by(links) is not None and "active" not in resource:
                resource["active"] = False
    return followed


def _merges(w: WriteSession, results: list[EntryResult]) -> list[tuple[str, str]]:
    """(merged, survivor) ids: each Patient the transaction wrote that is now ``replaced-by``
    another (convert/adt.py patches the merged Patient so). Read back from the store, since one
    Patient may appear in several entries (the A40's conditional create, then its patch)."""
    ids = dict.fromkeys(r.location.split("/")[1] for r in results if r.location and r.location.startswith("Patient/"))
    pairs = []
    for pid in ids:
        survivor = _replaced_by(_links(w, pid))
        if survivor is not None:
            pairs.append((pid, survivor))
    return pairs


class _RepointRefused(Exception):
    """The store refused a re-pointing write after an A40 (raised inside the message's savepoint,
    so the merge rolls back with it)."""

    def __init__(self, error: FhirError) -> None:
        super().__init__(error.diagnostics)
        self.error = error


def _refused(exc: FhirError | _RepointRefused) -> Delivered:
    what = "the Bundle"
    if isinstance(exc, _RepointRefused):
        exc, what = exc.error, "the re-pointing after the merge"
    retry = exc.status >= 500 or exc.status in (409, 412)
    return Delivered(False, error=f"FHIR store refused {what} ({exc.status}): {exc.diagnostics}", retry=retry)


def _busy(exc: sa.exc.OperationalError) -> Delivered:
    return Delivered(False, error=f"Database busy or unavailable: {str(exc.orig).splitlines()[0]}")

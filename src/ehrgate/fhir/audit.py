"""AuditEvents for FHIR API access (who, which app, which patient, what, outcome).

Every call made with a token is recorded (http://hl7.org/fhir/R4/auditevent.html; type ``rest``,
subtype from the restful-interaction code system). Writing an event per call in the request's own
transaction would cost more than the read it records (issue 3: a bearer read may cost at most 15 %
more than an open one), so the request only appends a tuple to a queue; a background thread, about
once a second, groups the queued calls by token holder, interaction and outcome into AuditEvents
(one entity per resource, a line per request in its ``calls`` detail) and writes them in one transaction
through the store's one write path. The price: calls of the last ``interval`` before a crash can
be lost (docs/fhir.md); ``ehrgate serve`` flushes when it stops.

The events are built here from fixed parts, so the writer skips what a client's resource needs
(it hands them to ``WriteSession.write_prepared`` as one ``PreparedBatch``, inserted in batched
statements): validation (``access_event`` output is valid R4, pinned by a test that runs the real validator on
samples) and the generic index walk (``access_index`` derives the rows of
``search.extract.extract_index`` directly from the known shape, pinned by a test that compares
them). Ids are time-ordered (UUIDv7, RFC 9562 §5.7) so the index pages of a growing AuditEvent
table are appended to rather than rewritten at random.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from .access import Access
from .search.compartment import patient_compartments
from .search.extract import extract_index
from .search.normalize import normalize_string
from .search.types import DateRow, IndexRows, ReferenceRow, StringRow, TokenRow
from .store.model import iso_instant
from .store.prepare import PreparedBatch
from .store.service import ID_PATTERN, Store
from .validation import known_resource_types

__all__ = ["AuditSink", "Call", "access_event", "access_index", "interaction_of"]

log = logging.getLogger("ehrgate.audit")

BATCH = 20000
"""Most calls per transaction (a flush writes what was queued when it started, about a second of
calls). Each commit costs ~10 ms of CPU whatever its size (WAL pages, fsync), so one commit per
flush: at 2,000 calls per transaction the commits alone were ~5 us per call, at one per flush
~0.5 us. The events are built before the transaction opens, so the SQLite write lock (which the
token endpoint and FHIR writes wait for) is held only for the inserts: ~10-20 ms a second at
5,000 reads/s."""

_ACTION = {"create": "C", "read": "R", "vread": "R", "search-type": "E", "history-instance": "R",
           "history-type": "R", "history-system": "R", "update": "U", "patch": "U", "delete": "D",
           "transaction": "E", "batch": "E", "operation": "E"}

# The fixed parts of every access event. Shared between events (never mutated: the store copies
# only the top level when it adds ``meta``).
_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_TYPE = {"system": _TYPE_SYSTEM, "code": "rest", "display": "RESTful Operation"}
_SUBTYPE_SYSTEM = "http://hl7.org/fhir/restful-interaction"
_SUBTYPES = {code: [{"system": _SUBTYPE_SYSTEM, "code": code}] for code in _ACTION}
_APP_TYPE = {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150",
                         "display": "Application"}]}
_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"
_PATIENT_ROLE = {"system": _ROLE_SYSTEM, "code": "1", "display": "Patient"}
_SOURCE = {"observer": {"display": "EHRGate FHIR API"},
           "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "3",
                     "display": "Web Server"}]}
RESOURCE_TYPES = known_resource_types()
# Search parameters of AuditEvent (search/param_table.py) and what they index in these events.
_WHO = frozenset("Practitioner PractitionerRole Organization Patient RelatedPerson Device".split())
_TYPE_ROW = TokenRow("type", _TYPE_SYSTEM, "rest", normalize_string("RESTful Operation"))
_ROLE_ROW = TokenRow("entity-role", _ROLE_SYSTEM, "1", normalize_string("Patient"))


@lru_cache(maxsize=8192)
def _split_ref(reference: str) -> tuple[str, str] | None:
    """(type, id) of a valid relative ``Type/id`` reference (known type, valid id), else None."""
    rtype, sep, rid = reference.partition("/")
    if sep and rtype in RESOURCE_TYPES and ID_PATTERN.match(rid):
        return rtype, rid
    return None


def _ref(text: str) -> dict[str, str]:
    """A Reference: ``reference`` when ``text`` is a valid one (the event must stay valid R4 — a
    call to ``/fhir/Nonsense/x`` is audited too), else ``display``."""
    return {"reference": text} if _split_ref(text) else {"display": text}


@lru_cache(maxsize=8192)
def _ref_row(param: str, target: tuple[str, str]) -> ReferenceRow:
    return ReferenceRow(param, *target)


_second: tuple[int, str] = (-1, "")


def _instant(ms: int) -> str:
    """``iso_instant(ms)``, formatting the date and time once per second (many calls share one)."""
    global _second
    sec, frac = divmod(ms, 1000)
    cached = _second  # one read: another sink's thread may replace it meanwhile
    if cached[0] != sec:
        cached = _second = (sec, iso_instant(sec * 1000)[:-10])
    return f"{cached[1]}.{frac:03d}+00:00"


class Call(NamedTuple):
    """One API call as the request path records it (everything else comes from the Access)."""

    res_type: str | None
    res_id: str | None
    request_id: str
    query: str
    now: int
    """Milliseconds since the epoch."""


def _target_order(target: str | None) -> str:
    return target or ""


DETAIL_CHARS = 500_000
"""Most characters in one ``calls`` detail: FHIR caps a string at 1 MB (R4 datatypes, ``string``),
and a group of searches can list up to ``max_calls`` queries of up to 2,000 characters each."""


def _joined(lines: list[str]) -> list[str]:
    """``lines`` joined by line breaks, in as many texts of at most DETAIL_CHARS as needed."""
    if sum(map(len, lines)) + len(lines) <= DETAIL_CHARS:  # nearly always
        return ["\n".join(lines)]
    texts: list[str] = []
    part: list[str] = []
    size = 0
    for line in lines:
        if part and size + len(line) + 1 > DETAIL_CHARS:
            texts.append("\n".join(part))
            part, size = [], 0
        part.append(line)
        size += len(line) + 1
    texts.append("\n".join(part))
    return texts


def _call_line(call: Call) -> str:
    """``<time> <request id>[ <query>]`` (the query is URL-encoded, so it holds no space or line break)."""
    if call.query:
        return f"{_instant(call.now)} {call.request_id} {call.query[:2000]}"
    return f"{_instant(call.now)} {call.request_id}"


def access_event(access: Access, interaction: str, status: int, calls: Sequence[Call]) -> dict[str, Any]:
    """One AuditEvent for ``calls`` (at least one; each resource's calls in time order), all made
    with the same token's rights, the same interaction and the same HTTP status.

    The caller (user, else client) and the app are agents; the token's patient is an entity with
    role Patient; the grant id is the ``name`` of an entity of its own (``entity-name`` search).
    Each resource the calls named is one entity (``what``) with one ``detail`` of type ``calls``
    (more when its text would pass DETAIL_CHARS) whose text has a line per call, ``<time> <request
    id>[ <query>]``, in time order; calls that
    named no resource (searches, system-level interactions) share an entity without ``what``.
    ``period`` spans the calls; ``recorded`` is the last one's time. (A detail object per call cost
    more to build, store and write than the lines: ~80 bytes of JSON framing per call.)
    """
    by_target: dict[str | None, list[str]] = {}
    for call in calls:
        target = f"{call.res_type}/{call.res_id}" if call.res_type and call.res_id else None
        lines = by_target.get(target)
        if lines is None:
            lines = by_target[target] = []
        lines.append(_call_line(call))
    times = [c.now for c in calls]
    return _event(access, interaction, status, by_target.items(), min(times), max(times))


def _event(access: Access, interaction: str, status: int, targets: Iterable[tuple[str | None, list[str]]],
           first_ms: int, last_ms: int) -> dict[str, Any]:
    """The AuditEvent ``access_event`` describes, from each target's detail lines (None: calls that
    named no resource) and the first and last call's times."""
    agents: list[dict[str, Any]] = [{"who": _ref(access.subject or access.client_id), "requestor": True}]
    if access.client_id and access.client_id != access.subject:
        agents.append({"type": _APP_TYPE, "who": {"display": access.client_id}, "requestor": False})
    entities: list[dict[str, Any]] = []
    if access.patient and access.patient != "-":
        entities.append({"what": _ref(f"Patient/{access.patient}"), "role": _PATIENT_ROLE})
    if access.grant_id:
        entities.append({"name": access.grant_id, "description": "SMART grant (authorization) id"})
    for target, lines in targets:
        detail = [{"type": "calls", "valueString": text} for text in _joined(lines)]
        entities.append({"what": _ref(target), "detail": detail} if target else {"detail": detail})
    first, last = _instant(first_ms), _instant(last_ms)
    return {
        "resourceType": "AuditEvent",
        "type": _TYPE,
        "subtype": _SUBTYPES.get(interaction) or [{"system": _SUBTYPE_SYSTEM, "code": interaction}],
        "action": _ACTION.get(interaction, "E"),
        "period": {"start": first, "end": last},
        "recorded": last,
        "outcome": "0" if status < 400 else ("4" if status < 500 else "8"),
        "outcomeDesc": f"HTTP {status}",
        "agent": agents,
        "source": _SOURCE,
        "entity": entities,
    }


def access_index(event: dict[str, Any], recorded_ms: int) -> IndexRows:
    """The search-index rows of an event built by ``access_event`` (``recorded_ms``: its last
    call's ``now``): the rows ``extract_index`` finds, without duplicates, read straight from the
    known shape (the generic walk costs more than the insert). Other shapes go to ``extract_index``."""
    if event.get("type") is not _TYPE:
        return extract_index(event)
    subtype = event["subtype"][0]
    tokens = [_TYPE_ROW, TokenRow("subtype", subtype["system"], subtype["code"]),
              TokenRow("action", None, event["action"]), TokenRow("outcome", None, event["outcome"])]
    refs: dict[ReferenceRow, None] = {}
    for agent in event["agent"]:
        target = _split_ref(agent["who"].get("reference") or "")
        if target is not None and target[0] in _WHO:
            refs[_ref_row("agent", target)] = None
            if target[0] == "Patient":
                refs[_ref_row("patient", target)] = None
    strings = []
    for entity in event["entity"]:
        what = entity.get("what")
        if what is not None and "reference" in what:
            target = _split_ref(what["reference"])
            if target is not None:
                refs[_ref_row("entity", target)] = None
                if target[0] == "Patient":
                    refs[_ref_row("patient", target)] = None
        if "role" in entity and _ROLE_ROW not in tokens:
            tokens.append(_ROLE_ROW)
        name = entity.get("name")
        if name:
            strings.append(StringRow("entity-name", normalize_string(name), name))
    rows = IndexRows(strings=strings, tokens=tokens, references=list(refs),
                     dates=[DateRow("date", recorded_ms, recorded_ms)])
    rows.compartments = patient_compartments("AuditEvent", None, rows.references)
    return rows


def _uuid7(ms: int) -> str:
    """A time-ordered UUID (RFC 9562 §5.7: 48-bit Unix milliseconds, version 7, random rest)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64 | 0b10 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


class _AuditStore(Store):
    """The FHIR store's write path for events built here: no validation, ``access_index`` rows,
    time-ordered ids. ``recorded_ms`` is the ``now`` of the event being written."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine, clock=store.clock)
        self.validate = lambda _resource: []
        self.extract = lambda resource: access_index(resource, self.recorded_ms)
        self.new_id = lambda: _uuid7(self.recorded_ms)
        self.recorded_ms = 0


class AuditSink:
    """Queues access records; a daemon thread writes them in batches (``flush`` writes now)."""

    def __init__(self, store: Store, *, interval: float = 1.0, enabled: bool = True, max_calls: int = 1000) -> None:
        self.store = store
        self.interval = interval
        self.enabled = enabled
        self.max_calls = max(1, max_calls)
        """Most calls one AuditEvent lists (setting ``audit_access_max_calls``; 1: an event per call)."""
        # Two aligned queues: the calls as tuples of strings and numbers only, and their Accesses.
        # Such a tuple is no work for the garbage collector (CPython stops tracking it at its first
        # collection), while one holding the Access stayed tracked for its second in the queue, was
        # promoted to the oldest generation and, at thousands of calls a second, kept triggering
        # full collections of the whole process (measured: a bearer read cost ~36 us more with the
        # audit on than off, and p99 went from 7 to 43 ms).
        self._queue: deque[tuple[str, int, str | None, str | None, str, str, int]] = deque()
        self._owners: deque[Access] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._atexit = False
        self._writer = _AuditStore(store)

    def access(
        self, access: Access, interaction: str, status: int, res_type: str | None, res_id: str | None,
        request_id: str, query: str, now: int,
    ) -> None:
        """Record one API call (the hot path: a tuple on a deque; the writer builds the event)."""
        if not self.enabled:
            return
        self._queue.append((interaction, status, res_type, res_id, request_id, query, now))
        self._owners.append(access)  # after the call: a flush takes as many of each as both hold
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        import atexit

        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="ehrgate-audit", daemon=True)
            self._thread.start()
        if not self._atexit:
            self._atexit = True
            atexit.register(self._flush_at_exit)

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the database may be gone at exit
            log.warning("audit events could not be written at exit")

    def _run(self) -> None:
        failures = 0
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - keep the writer alive for a while
                failures += 1
                if failures < 3:
                    log.warning("writing audit events failed (%s); retrying", type(exc).__name__)
                    continue
                with self._lock:
                    dropped = min(len(self._queue), len(self._owners))
                    for _ in range(dropped):
                        self._queue.popleft()
                        self._owners.popleft()
                log.error("writing audit events failed 3 times (%s: %s); %d events dropped",
                          type(exc).__name__, str(exc).splitlines()[0][:200], dropped)
                failures = 0
            if not self._queue:
                with self._lock:
                    if not self._queue:
                        self._thread = None  # idle: the next event starts a new writer
                        return

    def _events(self, batch: list[tuple[Any, ...]], owners: list[Access]) -> Iterator[tuple[dict[str, Any], int]]:
        """(event, its recorded ms): the batch's calls grouped by caller, interaction and status,
        at most ``max_calls`` per event.

        Each call becomes its detail line here, once, filed under its group and resource (no
        ``Call`` per call, and the date and time formatted once per second): this loop runs for
        every call recorded, about a second's worth per flush."""
        groups: dict[tuple[Any, ...], tuple[Access, str, int, dict[str | None, tuple[list[str], list[int]]]]] = {}
        second, prefix = -1, ""
        for access, (interaction, status, res_type, res_id, request_id, query, now) in zip(owners, batch, strict=True):
            sec, frac = divmod(now, 1000)
            if sec != second:
                second, prefix = sec, iso_instant(sec * 1000)[:-10]
            line = (f"{prefix}.{frac:03d}+00:00 {request_id} {query[:2000]}" if query
                    else f"{prefix}.{frac:03d}+00:00 {request_id}")
            key = (access.subject, access.client_id, access.grant_id, access.patient, interaction, status)
            group = groups.get(key)
            if group is None:
                group = groups[key] = (access, interaction, status, {})
            target = f"{res_type}/{res_id}" if res_type and res_id else None
            calls = group[3].get(target)
            if calls is None:
                calls = group[3][target] = ([], [])
            calls[0].append(line)
            calls[1].append(now)
        step = self.max_calls
        for access, interaction, status, targets in groups.values():
            total = sum(len(nows) for _lines, nows in targets.values())
            if total <= step:
                yield (_event(access, interaction, status, ((t, c[0]) for t, c in targets.items()),
                              min(min(c[1]) for c in targets.values()), max(max(c[1]) for c in targets.values())),
                       max(max(c[1]) for c in targets.values()))
                continue
            # Split by resource, not by arrival: a chunk of arrivals names nearly as many resources
            # as it has calls (a client reading across patients), and every resource an event names
            # is an entity with its index rows (entity, patient, compartment). Resources in order,
            # each one's calls in time order, cut every ``step`` calls.
            chunk: list[tuple[str | None, list[str]]] = []
            size, first, last = 0, 0, 0
            for target in sorted(targets, key=_target_order):
                lines, nows = targets[target]
                if nows != sorted(nows):  # calls recorded out of time order (rare): put them in order
                    pairs = sorted(zip(nows, lines, strict=True), key=lambda p: p[0])
                    nows, lines = [p[0] for p in pairs], [p[1] for p in pairs]
                i = 0
                while i < len(lines):
                    take = min(step - size, len(lines) - i)
                    part = nows[i : i + take]
                    first = min(part) if not size else min(first, min(part))
                    last = max(part) if not size else max(last, max(part))
                    chunk.append((target, lines[i : i + take]))
                    size += take
                    i += take
                    if size == step:
                        yield _event(access, interaction, status, chunk, first, last), last
                        chunk, size = [], 0
            if size:
                yield _event(access, interaction, status, chunk, first, last), last

    def flush(self) -> int:
        """Write the calls queued when it is called; returns how many calls were written.

        Calls queued meanwhile wait for the next flush: a flush that chased the queue under load
        wrote a transaction for every few calls that arrived during the last commit — each with its
        own fsync and index pages — and never slept."""
        # No cyclic garbage collection while the events are built and written: the thousands of
        # dicts and lists of a second's events live only for the flush, but collections that other
        # allocations trigger meanwhile promoted them to older generations, whose collections walk
        # the whole heap (measured: 8 full collections of ~60 ms in 23 s of bearer reads instead
        # of 2; each stalls the event loop). Reference counting frees them when the flush ends.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            return self._flush()
        finally:
            if collecting:
                gc.enable()

    def _flush(self) -> int:
        written = 0
        writer = self._writer
        with self._lock:
            queue, owners = self._queue, self._owners
            left = min(len(queue), len(owners))
            while left > 0:
                n = min(BATCH, left)
                batch = [queue.popleft() for _ in range(n)]
                who = [owners.popleft() for _ in range(n)]
                left -= n
                try:
                    prepared = PreparedBatch()
                    for event, recorded_ms in self._events(batch, who):
                        writer.recorded_ms = recorded_ms
                        prepared.add("POST", event, writer.new_id(), writer.validate, writer.extract)
                    with writer.writer() as w:
                        w.write_prepared(prepared)
                except Exception:
                    queue.extendleft(reversed(batch))
                    owners.extendleft(reversed(who))
                    raise
                written += len(batch)
        return written


def interaction_of(handler_name: str, method: str, params: dict[str, str], body_kind: str | None = None) -> str | None:
    """The restful-interaction code of a handled request (None: not audited, e.g. metadata)."""
    if handler_name == "read":
        return "read"
    if handler_name == "vread":
        return "vread"
    if handler_name in ("search_get", "search_post", "compartment_search"):
        return "search-type"
    if handler_name == "history":
        if "id" in params:
            return "history-instance"
        return "history-type" if "type" in params else "history-system"
    if handler_name == "create":
        return "create"
    if handler_name in ("update", "conditional_update"):
        return "update"
    if handler_name == "patch":
        return "patch"
    if handler_name == "delete":
        return "delete"
    if handler_name == "system_post":
        return body_kind or "transaction"
    if handler_name == "operation":
        return "operation"
    return None

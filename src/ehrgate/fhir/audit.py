"""AuditEvents for FHIR API access (who, which app, which patient, what, outcome).

An event per call made with a token (http://hl7.org/fhir/R4/auditevent.html; type ``rest``,
subtype from the restful-interaction code system). Writing each event in the request's own
transaction would double the cost of a read, so events are queued and a background thread writes
them in batches through the store's one write path, about once a second. The price: events of the
last second before a crash can be lost (documented in docs/fhir.md).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from .access import Access
from .store.model import iso_instant
from .store.service import Store

__all__ = ["AuditSink", "access_event"]

log = logging.getLogger("ehrgate.audit")

_ACTION = {"create": "C", "read": "R", "vread": "R", "search-type": "E", "history-instance": "R",
           "history-type": "R", "history-system": "R", "update": "U", "patch": "U", "delete": "D",
           "transaction": "E", "batch": "E", "operation": "E"}


def _who(subject: str) -> dict[str, Any]:
    head, _, tail = subject.partition("/")
    if tail and head[:1].isupper() and "/" not in tail:
        return {"reference": subject}
    return {"display": subject}


def access_event(
    access: Access,
    interaction: str,
    *,
    status: int,
    res_type: str | None,
    res_id: str | None,
    request_id: str,
    query: str,
    now: int,
) -> dict[str, Any]:
    agents: list[dict[str, Any]] = [{"who": _who(access.subject or access.client_id), "requestor": True}]
    if access.client_id and access.client_id != access.subject:
        agents.append({
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150",
                                 "display": "Application"}]},
            "who": {"display": access.client_id},
            "requestor": False,
        })
    entities: list[dict[str, Any]] = []
    if res_type and res_id:
        entities.append({"what": {"reference": f"{res_type}/{res_id}"}})
    if access.patient and access.patient != "-":
        entities.append({
            "what": {"reference": f"Patient/{access.patient}"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        })
    details = [{"type": "request-id", "valueString": request_id}]
    if query:
        details.append({"type": "query", "valueString": query[:2000]})
    context: dict[str, Any] = {"detail": details}
    if access.grant_id:
        context["name"] = access.grant_id
    entities.append(context)
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": _ACTION.get(interaction, "E"),
        "recorded": iso_instant(now),
        "outcome": "0" if status < 400 else ("4" if status < 500 else "8"),
        "outcomeDesc": f"HTTP {status}",
        "agent": agents,
        "source": {"observer": {"display": "EHRGate FHIR API"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "3",
                             "display": "Web Server"}]},
        "entity": entities,
    }


class AuditSink:
    """Queues events; a daemon thread writes them in batches (``flush`` writes now)."""

    def __init__(self, store: Store, *, interval: float = 1.0, enabled: bool = True) -> None:
        self.store = store
        self.interval = interval
        self.enabled = enabled
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._atexit = False

    def record(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._queue.append(event)
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
                dropped = len(self._queue)
                self._queue.clear()
                log.error("writing audit events failed 3 times (%s: %s); %d events dropped",
                          type(exc).__name__, str(exc).splitlines()[0][:200], dropped)
                failures = 0
            if not self._queue:
                with self._lock:
                    if not self._queue:
                        self._thread = None  # idle: the next event starts a new writer
                        return

    def flush(self) -> int:
        """Write every queued event now; returns how many were written."""
        written = 0
        with self._lock:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(1000, len(self._queue)))]
                try:
                    with self.store.writer() as w:
                        for event in batch:
                            w.create("AuditEvent", event)
                except Exception:
                    self._queue.extendleft(reversed(batch))
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

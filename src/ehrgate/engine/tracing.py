"""OpenTelemetry traces per message (docs/engine.md, "Tracing").

One trace per message. Its root is ``receive {channel}``: from the moment a source hands the message
over, through the durable store, to the ACK. The work that follows - seconds, minutes or a restart
later - joins that trace as children of the root: ``process {channel}`` (the pipeline, with a span
per filter and transform step), ``split {channel}`` per message a split step made (its deliveries
nest under it) and ``deliver {destination}`` per delivery attempt. The trace context travels with the
message, not with a thread or a task: the root span's W3C ``traceparent`` is stored in the message
row (``eng_message.traceparent``, migration e0007) and read back by the pipeline and by every
delivery attempt, in this process or another one. A ``traceparent`` also keeps the sampling
decision, so a message that was not sampled stays unsampled throughout.

Spans carry ids and header facts only (channel, store id, MSH-10, type, sender, destination, attempt,
outcome), never message content: error texts keep one line and have quoted values, URL paths and
every word that also occurs in the message replaced by ``…`` (``redact``).

The OpenTelemetry packages are an optional extra (``pip install 'ehrgate[otel]'``) imported only when
the ``tracing`` setting is not ``off``. Off, the engine holds ``None`` instead of a ``Tracing``, every
hook sits behind ``if tracing is not None``, and no span is made; ``traceparent`` stays NULL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import EngineError

if TYPE_CHECKING:
    from .destinations import Destination, Payload
    from .queue import Delivered, Item
    from .store import Incoming, Receipt

__all__ = ["MODES", "StepRun", "Tracing", "TracingError", "configure", "parse_traceparent", "redact"]

MODES = ("off", "otlp", "console")
SCOPE = "ehrgate.engine"

# what a source string starts with (``Engine.handle``'s ``source``) → ehrgate.source.type
_SOURCE_TYPES = {"mllp": "mllp", "http": "http", "file": "directory"}
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ACCEPTED = frozenset({"AA", "CA"})
_OUTCOMES = {"SENT": "SENT", "ERROR": "ERROR", "QUEUED": "RETRY"}


class TracingError(EngineError):
    """The ``tracing`` setting asks for something this installation cannot do."""


@dataclass(frozen=True, slots=True)
class StepRun:
    """One pipeline step applied to one message (``Pipeline.run``'s ``on_step``): what a step span shows."""

    kind: str  # filter | transform
    index: int  # 1-based, within its kind
    label: str  # the step's name or import path
    start_ns: int
    end_ns: int
    outputs: int  # messages after the step: 0 filtered out, more than 1 split
    problem: str | None = None


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s?#]+)[/?#]\S*?(?=[.,:;)\]]*(?:\s|$))")
_WORD = re.compile(r"[^\W_]{2,}")
_SEGMENT_ID = re.compile(rb"(?:^|[\r\n])([A-Z][A-Z0-9]{2})(?=[^A-Za-z0-9\r\n]|$)")


def redact(text: str | None, *contents: bytes | None, limit: int = 300) -> str:
    """``text`` (an error) fit for a trace: its first line, at most ``limit`` characters, with quoted
    values, URL paths and queries (templates may put identifiers there), and every word of two or
    more letters or digits that is also a word of ``contents`` (the message, its Bundle) - whatever
    its case: a name, an MRN, an e-mail address's parts, a street - replaced by ``…``; the message's
    own segment ids (``PID``) stay, they say where, not what. Errors quote values from the message
    (``PID-7: '19800101' is not a valid date``, a remote system's ERR text); a trace backend is no
    place for them. A word of the error's own that the message happens to hold (free text) is
    dropped too: a less readable span, never a leak."""
    if not text:
        return ""
    line = text.splitlines()[0][:limit]
    hosts: list[str] = []  # a URL's scheme and host are configuration, kept whole: set aside meanwhile

    def host(m: re.Match[str]) -> str:
        hosts.append(m.group(1))
        return "\x00" + "\x01" * len(hosts) + "\x00/…"

    line = _URL.sub(host, line)
    line = _QUOTED.sub("'…'", line)
    present = [c for c in contents if c]
    if present:
        line = _redact_words(line, present)
    for n, kept in enumerate(hosts, start=1):
        line = line.replace("\x00" + "\x01" * n + "\x00", kept, 1)
    return line


def _redact_words(line: str, present: list[bytes]) -> str:
    """``line`` with each word that is also a word of ``present`` replaced by ``…`` (see ``redact``)."""
    words = {w.lower() for c in present for w in _WORD.findall(c.decode("utf-8", "replace"))}
    segments = {m.decode("ascii") for c in present for m in _SEGMENT_ID.findall(c)}

    def word(m: re.Match[str]) -> str:
        w = m.group()
        if w in segments or w.lower() not in words:
            return w
        return "…"

    return _WORD.sub(word, line)


def parse_traceparent(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a W3C ``traceparent`` (version 00), None when it is not one."""
    m = _TRACEPARENT.match(value or "")
    if m is None:
        return None
    trace_id, span_id = int(m.group(1), 16), int(m.group(2), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(m.group(3), 16)


def configure(mode: str) -> Tracing | None:
    """The engine's tracing for the ``tracing`` setting: None for ``off``; else a TracerProvider of its
    own (not the global one) exporting in batches - over OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``
    and the other OTEL_* variables, read by the exporter) or to standard output (``console``).
    Raises TracingError when the OpenTelemetry packages are missing."""
    mode = (mode or "off").strip().lower()
    if mode == "off":
        return None
    if mode not in MODES:
        raise TracingError(f"Setting 'tracing' has value {mode!r}. Expected one of {', '.join(MODES)}.")
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

        exporter: SpanExporter
        if mode == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
    except ImportError as exc:
        raise TracingError(
            f"Setting 'tracing' is '{mode}', but the OpenTelemetry packages are not installed ({exc.name} is "
            "missing). Install them with pip install 'ehrgate[otel]', or set tracing: off.") from None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):  # no OTEL_SERVICE_NAME
        resource = resource.merge(Resource({SERVICE_NAME: "ehrgate"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, owned=True)


class Tracing:
    """The engine's spans. Built on a TracerProvider (``configure``, or a test's with an in-memory
    exporter); ``owned``: the engine shuts the provider down (flushing what is left) when it stops."""

    def __init__(self, provider: Any, *, owned: bool = False) -> None:
        from opentelemetry import trace as api
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            SpanKind,
            Status,
            StatusCode,
            TraceFlags,
        )

        self.provider = provider
        self.owned = owned
        self.tracer = provider.get_tracer(SCOPE)
        self._api = api
        self._NonRecordingSpan = NonRecordingSpan
        self._SpanContext = SpanContext
        self._TraceFlags = TraceFlags
        self._kind = SpanKind
        self._error = StatusCode.ERROR
        self._Status = Status
        self._receive_names: dict[str, str] = {}

    def shutdown(self) -> None:
        if self.owned:
            self.provider.shutdown()

    # -- context ---------------------------------------------------------------------------

    @staticmethod
    def traceparent(span: Any) -> str | None:
        sc = span.get_span_context()
        if not sc.is_valid:
            return None
        return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"

    def context(self, traceparent: str | None) -> Any:
        """The OpenTelemetry context whose parent is the stored span (None: the message has no trace)."""
        ids = parse_traceparent(traceparent)
        if ids is None:
            return None
        sc = self._SpanContext(ids[0], ids[1], is_remote=True, trace_flags=self._TraceFlags(ids[2]))
        return self._api.set_span_in_context(self._NonRecordingSpan(sc))

    def _fail(self, span: Any, text: str) -> None:
        span.set_status(self._Status(self._error, text))

    # -- receipt (on the event loop: one span, a few attributes) ----------------------------

    def receiving(self, item: Incoming) -> None:
        """Start the message's root span and keep its context on ``item`` (stored with the message)."""
        channel = item.channel
        name = self._receive_names.get(channel)
        if name is None:
            name = self._receive_names[channel] = f"receive {channel}"
        kind, _, peer = item.source.partition(" ")
        attrs: dict[str, Any] = {"ehrgate.channel": channel, "ehrgate.source.type": _SOURCE_TYPES.get(kind, kind)}
        if kind in ("mllp", "http") and peer:
            host, _, port = peer.rpartition(":")
            attrs["client.address"] = host or peer
            if port.isdigit():
                attrs["client.port"] = int(port)
        if item.msg_type:
            attrs["hl7.message_type"] = item.msg_type
        if item.control_id:
            attrs["hl7.control_id"] = item.control_id
        if item.sender:
            attrs["hl7.sender"] = item.sender
        span = self.tracer.start_span(name, kind=self._kind.SERVER, attributes=attrs)
        item.span = span
        item.trace = self.traceparent(span)

    def stored(self, item: Incoming, receipt: Receipt | None, *, event: bool) -> None:
        """The commit returned (``receipt``), or storing failed (None). ``event``: mark the moment with a
        ``stored`` event (when the ACK does not follow at once: on_processed, enhanced mode)."""
        span = item.span
        if receipt is None:
            self._fail(span, "The message could not be stored")
            return
        attrs: dict[str, Any] = {"ehrgate.message.id": receipt.id, "ehrgate.message.status": receipt.status}
        if receipt.duplicate_of:
            attrs["ehrgate.message.duplicate_of"] = receipt.duplicate_of
        span.set_attributes(attrs)  # one lock, not one per attribute
        if item.error is not None:
            self._fail(span, "The message cannot be parsed")
        if event:
            span.add_event("stored")

    def acked(self, item: Incoming, code: str, *, final: bool = True) -> None:
        """An ACK left (MSA-1 ``code``); ``final``: the last one, which ends the span."""
        span = item.span
        if not final:
            span.add_event("accept ack", {"hl7.ack_code": code})
            return
        span.set_attribute("hl7.ack_code", code)
        if code not in _ACCEPTED:
            self._fail(span, f"Answered {code}")
        span.end()

    def unanswered(self, item: Incoming) -> None:
        """The exchange ended without a (further) ACK: MSH-15/16 asked for none, or the sender left."""
        item.span.end()

    # -- pipeline (worker thread) -----------------------------------------------------------

    def processing(self, channel: str, message_id: int, traceparent: str | None, facts: Sequence[Any],
                   start_ns: int) -> Any:
        """The ``process`` span of one message (None when it has no trace); ``facts``: type, MSH-10, sender."""
        ctx = self.context(traceparent)
        if ctx is None:
            return None
        attrs: dict[str, Any] = {"ehrgate.channel": channel, "ehrgate.message.id": message_id}
        for key, value in zip(("hl7.message_type", "hl7.control_id", "hl7.sender"), facts, strict=False):
            if value:
                attrs[key] = value
        return self.tracer.start_span(f"process {channel}", context=ctx, attributes=attrs, start_time=start_ns)

    def steps(self, span: Any, runs: Sequence[StepRun], raw: bytes) -> None:
        ctx = self._api.set_span_in_context(span)
        for run in runs:
            step = self.tracer.start_span(f"{run.kind} {run.label}", context=ctx, start_time=run.start_ns, attributes={
                "ehrgate.step.kind": run.kind, "ehrgate.step.index": run.index, "ehrgate.step.name": run.label,
                "ehrgate.step.outputs": run.outputs})
            if run.problem is not None:
                self._fail(step, redact(run.problem, raw))
            step.end(end_time=run.end_ns)

    def split(self, span: Any, channel: str, parent_id: int, index: int, facts: Sequence[Any]) -> Any:
        """A span for one message a split made, under the parent's ``process`` span; its deliveries
        nest under it. Its message id is set once the child is stored (``split_stored``)."""
        attrs: dict[str, Any] = {"ehrgate.channel": channel, "ehrgate.message.parent_id": parent_id,
                                 "ehrgate.split.index": index}
        for key, value in zip(("hl7.message_type", "hl7.control_id", "hl7.sender"), facts, strict=False):
            if value:
                attrs[key] = value
        return self.tracer.start_span(f"split {channel}", context=self._api.set_span_in_context(span),
                                      attributes=attrs)

    @staticmethod
    def split_stored(span: Any, message_id: int | None) -> None:
        if message_id is not None:
            span.set_attribute("ehrgate.message.id", message_id)
        span.end()

    def abandoned(self, span: Any, why: str) -> None:
        """The run's outcome was not recorded (another worker took the message over, or the write
        failed and the message will run again): the span ends, saying so."""
        span.add_event("not recorded", {"ehrgate.reason": why})
        span.end()

    def processed(self, span: Any, status: str, error: str | None, destinations: Sequence[str], raw: bytes) -> None:
        span.set_attribute("ehrgate.message.status", status)
        if destinations:
            span.set_attribute("ehrgate.destinations", list(destinations))
        if status == "ERROR":
            self._fail(span, redact(error, raw))
        elif error:  # why it was filtered
            span.set_attribute("ehrgate.filtered_by", redact(error, raw))
        span.end()

    # -- delivery (event loop, after the outcome is recorded) -------------------------------

    def delivered(self, channel: str, dest: Destination, item: Item, payload: Payload, result: Delivered,
                  status: str, start_ns: int, batch: int = 1) -> None:
        """One ``deliver`` span per attempt, under the message's stored context: the attempt that
        follows a failure (minutes later, or after a restart) lands in the same trace."""
        ctx = self.context(payload.trace)
        if ctx is None:
            return
        outcome = _OUTCOMES.get(status, status)
        attrs: dict[str, Any] = {
            "ehrgate.channel": channel, "ehrgate.message.id": item.message_id,
            "ehrgate.destination.name": dest.name, "ehrgate.destination.type": dest.cfg.type,
            "ehrgate.delivery.attempt": item.attempts + 1, "ehrgate.delivery.outcome": outcome,
            "ehrgate.delivery.duration_ms": int(result.duration_ms or 0),
        }
        if payload.msg_type:
            attrs["hl7.message_type"] = payload.msg_type
        if payload.control_id:
            attrs["hl7.control_id"] = payload.control_id
        if batch > 1:
            attrs["ehrgate.delivery.batch_size"] = batch
        kind = self._kind.INTERNAL if dest.transactional or dest.cfg.type == "file" else self._kind.CLIENT
        span = self.tracer.start_span(f"deliver {dest.name}", context=ctx, kind=kind, attributes=attrs,
                                      start_time=start_ns)
        if outcome != "SENT":
            error = redact(result.error, payload.body, payload.bundle)
            span.set_attribute("ehrgate.delivery.error", error)
            self._fail(span, error)
        span.end(end_time=max(start_ns, time.time_ns()))

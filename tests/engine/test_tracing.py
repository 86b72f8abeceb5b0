"""OpenTelemetry traces per message: a real channel (MLLP in, real destinations) on SQLite and
PostgreSQL, spans caught by the SDK's in-memory exporter; one test exports over OTLP/HTTP to a
listener on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.engine import schema as t
from ehrgate.engine.tracing import Tracing, TracingError, configure, parse_traceparent, redact
from ehrgate.hl7 import Message

from .conftest import hl7, run
from .helpers import FAST, Receiver, port_of, running, send, until

MRN, FAMILY, DOB = "MRN7731", "Everywoman", "19800101"


def leaky(message: Message) -> None:
    """A transformer whose error quotes the patient (as user code does)."""
    raise ValueError(f"no ward for {message.get('PID-5.1')} born {message.get('PID-7')} ({message.get('PID-3.1')})")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider)
    provider.shutdown()


def mllp_in(**extra: Any) -> dict[str, Any]:
    return {"source": {"type": "mllp", "port": 0}, **extra}


def spans(exporter: InMemorySpanExporter, prefix: str = "") -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def stored_traceparent(messages: MessageStore, message_id: int) -> str | None:
    with messages.read() as conn:
        return conn.execute(sa.select(t.message.c.traceparent).where(t.message.c.id == message_id)).scalar()


def everything_said(exporter: InMemorySpanExporter) -> str:
    """Every name, attribute value, event and status text of every span, as one string."""
    out = []
    for s in exporter.get_finished_spans():
        out.append(s.name)
        out.extend(str(v) for v in (s.attributes or {}).values())
        for e in s.events:
            out.append(e.name)
            out.extend(str(v) for v in (e.attributes or {}).values())
        out.append(s.status.description or "")
    return "\n".join(out)


def test_one_trace_per_message_receive_process_steps_deliver(messages: MessageStore, tracing: Tracing,
                                                             exporter: InMemorySpanExporter, tmp_path: Path) -> None:
    async def body() -> None:
        chan = mllp_in(filter=[{"step": "match", "path": "MSH-9.1", "equals": "ADT"}],
                       transform=[{"step": "set_field", "path": "MSH-5", "value": "HUB"}],
                       destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
        async with running(messages, {"adt": chan}, tracing=tracing) as eng:
            assert await send(port_of(eng, "adt"), [hl7("T1", patient=MRN)]) == ["AA"]
            await until(lambda: spans(exporter, "deliver"), what="the delivery span")
        (row,) = messages.search(SearchQuery(channel="adt"))
        mid = row["id"]

        (receive,) = spans(exporter, "receive")
        assert receive.name == "receive adt" and receive.parent is None
        assert attrs(receive) == {
            "ehrgate.channel": "adt", "ehrgate.source.type": "mllp", "client.address": "127.0.0.1",
            "client.port": attrs(receive)["client.port"], "hl7.message_type": "ADT^A01", "hl7.control_id": "T1",
            "hl7.sender": "LAB^FAC", "ehrgate.message.id": mid, "ehrgate.message.status": "RECEIVED",
            "hl7.ack_code": "AA"}
        trace_id, root = receive.context.trace_id, receive.context.span_id
        ids = parse_traceparent(stored_traceparent(messages, mid))
        assert ids is not None and ids[:2] == (trace_id, root) and ids[2] & 1  # sampled

        (process,) = spans(exporter, "process")
        assert process.name == "process adt" and process.context.trace_id == trace_id and parent_of(process) == root
        assert attrs(process)["ehrgate.message.id"] == mid and attrs(process)["hl7.control_id"] == "T1"
        assert attrs(process)["ehrgate.message.status"] == "QUEUED" and attrs(process)["ehrgate.destinations"] == ("out",)
        steps = sorted((s for s in exporter.get_finished_spans() if parent_of(s) == process.context.span_id),
                       key=lambda s: s.start_time or 0)
        assert [(s.name, attrs(s)["ehrgate.step.kind"], attrs(s)["ehrgate.step.index"], attrs(s)["ehrgate.step.outputs"])
                for s in steps] == [("filter match", "filter", 1, 1), ("transform set_field", "transform", 1, 1)]

        (deliver,) = spans(exporter, "deliver")
        assert deliver.name == "deliver out" and deliver.context.trace_id == trace_id and parent_of(deliver) == root
        a = attrs(deliver)
        assert (a["ehrgate.destination.name"], a["ehrgate.destination.type"], a["ehrgate.delivery.attempt"],
                a["ehrgate.delivery.outcome"], a["ehrgate.message.id"]) == ("out", "file", 1, "SENT", mid)
        assert deliver.status.status_code is StatusCode.UNSET
        assert {s.context.trace_id for s in exporter.get_finished_spans()} == {trace_id}
    run(body())


def test_spans_carry_no_message_content(messages: MessageStore, tracing: Tracing, exporter: InMemorySpanExporter,
                                        tmp_path: Path) -> None:
    """A step error and a delivery error that quote the patient (name, birth date, MRN), a file name
    made of them: none of it reaches a span."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    async def body() -> None:
        channels = {
            "adt": mllp_in(destinations={"out": {
                "type": "file", "directory": str(blocker / "out"), "filename": "{PID-3.1}-{PID-5.1}.hl7",
                "retry": {"max_attempts": 1}}}),
            "bad": mllp_in(transform=["tests.engine.test_tracing:leaky"],
                           destinations={"out": {"type": "file", "directory": str(tmp_path / "unused")}}),
        }
        raw = hl7("P1", patient=MRN, name=f"{FAMILY}^Eve")
        async with running(messages, channels, tracing=tracing) as eng:
            assert await send(port_of(eng, "adt"), [raw]) == ["AA"]
            assert await send(port_of(eng, "bad"), [raw]) == ["AA"]
            await until(lambda: spans(exporter, "deliver") and len(spans(exporter, "process")) == 2,
                        what="delivery and pipeline spans")
        (deliver,) = spans(exporter, "deliver")
        assert attrs(deliver)["ehrgate.delivery.outcome"] == "ERROR" and deliver.status.status_code is StatusCode.ERROR
        assert attrs(deliver)["ehrgate.delivery.error"].startswith("Cannot write ")
        assert "…-….hl7: Not a directory" in attrs(deliver)["ehrgate.delivery.error"]
        (failed,) = [s for s in spans(exporter, "transform") if s.status.status_code is StatusCode.ERROR]
        assert failed.status.description == "ValueError: no ward for … born … (…)"
        said = everything_said(exporter)
        for secret in (MRN, FAMILY, DOB, "Eve", "PID|", "EVN|"):
            assert secret not in said, secret
    run(body())


def test_a_retry_after_a_restart_lands_in_the_same_trace(messages: MessageStore, tracing: Tracing,
                                                          exporter: InMemorySpanExporter) -> None:
    """The receiver is down: attempt 1 fails (RETRY). The engine stops; a new one starts, with the
    receiver up: attempt 2 (SENT) joins the message's trace, under its receive span."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def body() -> None:
        chan = mllp_in(destinations={"peer": {"type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 1,
                                              "retry": {"max_attempts": 50, "base_delay": 0.2, "max_delay": 0.2}}})
        async with running(messages, {"adt": chan}, tracing=tracing) as eng:
            assert await send(port_of(eng, "adt"), [hl7("R1")]) == ["AA"]
            await until(lambda: spans(exporter, "deliver"), what="the failed attempt")
        receiver = Receiver()
        await receiver.start(port)
        try:
            async with running(messages, {"adt": chan}, tracing=tracing):
                await until(lambda: receiver.control_ids() == ["R1"], what="delivery after the restart")
                await until(lambda: any(attrs(s)["ehrgate.delivery.outcome"] == "SENT" for s in spans(exporter, "deliver")))
        finally:
            await receiver.stop()
        (receive,) = spans(exporter, "receive")
        attempts = sorted(spans(exporter, "deliver"), key=lambda s: attrs(s)["ehrgate.delivery.attempt"])
        assert [attrs(s)["ehrgate.delivery.outcome"] for s in attempts][0] == "RETRY"
        assert [attrs(s)["ehrgate.delivery.outcome"] for s in attempts][-1] == "SENT"
        assert [attrs(s)["ehrgate.delivery.attempt"] for s in attempts] == list(range(1, len(attempts) + 1))
        assert f"127.0.0.1:{port}" in attrs(attempts[0])["ehrgate.delivery.error"]
        for s in attempts:
            assert s.context.trace_id == receive.context.trace_id and parent_of(s) == receive.context.span_id
    run(body())


def test_split_children_nest_under_the_parents_trace(messages: MessageStore, tracing: Tracing,
                                                      exporter: InMemorySpanExporter, tmp_path: Path) -> None:
    oru = (b"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401||ORU^R01|L1|P|2.5.1\rPID|1||P9^^^FAC^MR||Doe^Jane\r"
           b"OBR|1||A1|GLU\rOBX|1|NM|GLU||5.1\rOBR|2||A2|K\rOBX|1|NM|K||4.0\r")

    async def body() -> None:
        chan = mllp_in(transform=[{"step": "split", "segment": "OBR"}],
                       destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
        async with running(messages, {"lab": chan}, tracing=tracing) as eng:
            assert await send(port_of(eng, "lab"), [oru]) == ["AA"]
            await until(lambda: len(spans(exporter, "deliver")) == 2, what="two deliveries")
        rows = messages.search(SearchQuery(channel="lab"))
        parent = [r["id"] for r in rows if r["status"] == "TRANSFORMED"][0]
        children = sorted(r["id"] for r in rows if r["status"] == "SENT")
        (receive,) = spans(exporter, "receive")
        (process,) = spans(exporter, "process")
        assert attrs(process)["ehrgate.message.status"] == "TRANSFORMED"
        splits = sorted(spans(exporter, "split"), key=lambda s: attrs(s)["ehrgate.split.index"])
        assert [(attrs(s)["ehrgate.message.id"], attrs(s)["ehrgate.message.parent_id"], attrs(s)["hl7.control_id"])
                for s in splits] == [(children[0], parent, "L1-1"), (children[1], parent, "L1-2")]
        assert {parent_of(s) for s in splits} == {process.context.span_id}
        by_child = {attrs(s)["ehrgate.message.id"]: s for s in splits}
        for d in spans(exporter, "deliver"):
            assert parent_of(d) == by_child[attrs(d)["ehrgate.message.id"]].context.span_id
        assert {s.context.trace_id for s in exporter.get_finished_spans()} == {receive.context.trace_id}
    run(body())


def test_on_processed_marks_the_commit_and_an_error_ack(messages: MessageStore, tracing: Tracing,
                                                        exporter: InMemorySpanExporter) -> None:
    async def body() -> None:
        chan = mllp_in(ack="on_processed", transform=["tests.engine.channels.sample:boom"],
                       destinations={"out": {"type": "file", "directory": "unused"}})
        async with running(messages, {"adt": chan}, tracing=tracing) as eng:
            assert await send(port_of(eng, "adt"), [hl7("E1")]) == ["AE"]
        (receive,) = spans(exporter, "receive")
        assert [e.name for e in receive.events] == ["stored"]
        assert attrs(receive)["hl7.ack_code"] == "AE" and receive.status.status_code is StatusCode.ERROR
        (process,) = spans(exporter, "process")
        assert attrs(process)["ehrgate.message.status"] == "ERROR" and process.status.status_code is StatusCode.ERROR
    run(body())


def test_spans_end_when_the_sender_leaves_or_a_worker_loses_the_message(
        messages: MessageStore, tracing: Tracing, exporter: InMemorySpanExporter,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ack: on_processed and the caller cancelled while waiting (the sender left): the receive span
    ends; a pipeline run whose outcome could not be recorded ends its process span, saying why."""
    from ehrgate.engine.queue import LeaseLost, Queue

    async def body() -> None:
        chan = mllp_in(ack="on_processed", destinations={"out": {"type": "file", "directory": "unused"}})
        async with running(messages, {"adt": chan}, tracing=tracing) as eng:
            await eng.pause("adt")
            task = asyncio.create_task(eng.handle("adt", hl7("C1"), "test"))
            await until(lambda: messages.search(SearchQuery(control_id="C1")) != [], what="C1 stored")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            (receive,) = spans(exporter, "receive")
            assert receive.end_time is not None and "hl7.ack_code" not in attrs(receive)

            real = Queue.finish_pipeline
            calls = {"n": 0}

            def lose_once(self: Any, *a: Any, **k: Any) -> Any:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise LeaseLost("taken over")
                return real(self, *a, **k)

            monkeypatch.setattr(Queue, "finish_pipeline", lose_once)
            await eng.resume("adt")
            await until(lambda: calls["n"] >= 1, what="the pipeline ran")
        (process, *_rest) = spans(exporter, "process")
        assert [(e.name, dict(e.attributes or {})) for e in process.events] == [
            ("not recorded", {"ehrgate.reason": "another worker took the message over"})]
    run(body())


def test_tracing_off_makes_no_span_and_stores_no_context(messages: MessageStore, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    real = Tracer.start_span

    def counting(self: Tracer, name: str, *args: Any, **kwargs: Any) -> Any:
        started.append(name)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(Tracer, "start_span", counting)

    async def body() -> None:
        chan = mllp_in(transform=[{"step": "set_field", "path": "MSH-5", "value": "HUB"}],
                       destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
        settings = SimpleNamespace(**vars(FAST), tracing="off")
        async with running(messages, {"adt": chan}, settings=settings) as eng:
            assert eng.tracing is None
            assert await send(port_of(eng, "adt"), [hl7("O1")]) == ["AA"]
            await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="adt"))] == ["SENT"])
        (row,) = messages.search(SearchQuery(channel="adt"))
        assert stored_traceparent(messages, row["id"]) is None
    run(body())
    assert started == []


def test_tracing_settings_name_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    assert configure("off") is None
    console = configure("console")
    assert console is not None and console.owned
    console.shutdown()
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(TracingError, match=r"Setting 'tracing' is 'otlp', but the OpenTelemetry packages are not "
                                           r"installed .* pip install 'ehrgate\[otel\]', or set tracing: off"):
        configure("otlp")


@pytest.mark.parametrize(("text", "expected"), [
    ("HTTP 500 from the destination", "HTTP 500 from the destination"),
    ("Cannot reach https://fhir.example.org/Patient?identifier=MRN7731: ConnectError",
     "Cannot reach https://fhir.example.org/…: ConnectError"),
    ("PID-7: '19800101' is not a valid HL7 date\nsecond line", "PID-7: '…' is not a valid HL7 date"),
    ("AE from receiver: unknown patient Everywoman MRN7731", "AE from receiver: unknown patient … …"),
    ("No answer within 30.0s", "No answer within 30.0s"),
    ("Mailbox unavailable: eve.everywoman@example.org", "Mailbox unavailable: ….…@….…"),
    ("address 12 main st springfield rejected", "address … … … … rejected"),
    ("bad SSN 123-45-6789 in PID segment", "bad SSN …-…-… in PID segment"),
    ("EVE has no visit", "… has no visit"),  # a three-letter name is not a segment id
    (None, ""),
])
def test_redact_keeps_the_error_and_drops_the_content(text: str | None, expected: str) -> None:
    message = hl7("X1", patient=MRN, name=f"{FAMILY}^Eve") + (
        b"PID|1||123-45-6789^^^SSA^SS||||||||12 Main St^^Springfield||eve.everywoman@example.org\r")
    assert redact(text, message, None) == expected


class Collector(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        size = int(self.headers.get("Content-Length") or 0)
        Collector.bodies.append((self.path, self.rfile.read(size)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_otlp_exports_to_a_collector(messages: MessageStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``tracing: otlp`` with OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME: the spans reach an
    OTLP/HTTP listener (protobuf on /v1/traces) by the time the engine has stopped."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    Collector.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "hub-under-test")
    try:
        async def body() -> None:
            chan = mllp_in(destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
            settings = SimpleNamespace(**vars(FAST), tracing="otlp")
            async with running(messages, {"adt": chan}, settings=settings) as eng:
                assert eng.tracing is not None and eng.tracing.owned
                assert await send(port_of(eng, "adt"), [hl7("X1", patient=MRN)]) == ["AA"]
                await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="adt"))] == ["SENT"])
                await asyncio.sleep(0.1)  # the delivery span follows the status by a moment
        run(body())
    finally:
        server.shutdown()
        server.server_close()
    sent = b"".join(b for path, b in Collector.bodies if path == "/v1/traces")
    for name in (b"receive adt", b"process adt", b"deliver out", b"hub-under-test", b"ehrgate.engine"):
        assert name in sent, name
    assert MRN.encode() not in sent and b"Everywoman" not in sent


def test_enhanced_mode_marks_the_accept_ack_and_ends_with_the_application_ack(
        messages: MessageStore, tracing: Tracing, exporter: InMemorySpanExporter, tmp_path: Path) -> None:
    from .test_enhanced import Conn, enhanced

    async def body() -> None:
        chan = mllp_in(destinations={"out": {"type": "file", "directory": str(tmp_path / "out")}})
        async with running(messages, {"adt": chan}, tracing=tracing) as eng:
            async with Conn.open(port_of(eng, "adt")) as conn:
                await conn.send(enhanced("N1", "AL", "AL"))
                assert (await conn.next())[0] == "CA"
                assert (await conn.next())[0] == "AA"
            await until(lambda: spans(exporter, "receive"), what="the receive span")
        (receive,) = spans(exporter, "receive")
        assert [e.name for e in receive.events] == ["stored", "accept ack"]
        assert attrs(receive)["hl7.ack_code"] == "AA"
        (deliver,) = spans(exporter, "deliver")
        assert parent_of(deliver) == receive.context.span_id
    run(body())

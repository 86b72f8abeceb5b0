"""HTTP edges: the HTTP source, the admin API (OpenAPI, access rules), /metrics; alerts; directory source."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.engine.http import engine_routes
from ehrgate.hl7 import parse

from .conftest import hl7, run
from .helpers import running, until


def client_for(engine: Any, token: str = "sekret", host: str = "127.0.0.1") -> httpx.AsyncClient:
    app = Starlette(routes=engine_routes(engine, token))
    transport = httpx.ASGITransport(app=app, client=(host, 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver",
                             headers={"authorization": f"Bearer {token}"} if token else {})


def test_http_source_answers_with_the_ack(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            r = await http.post("/channels/web/messages", content=hl7("H1"))
            assert r.status_code == 200 and r.headers["x-hl7-ack-code"] == "AA"
            assert parse(r.content).get("MSA-2") == "H1"
            r = await http.post("/channels/web/messages", content=b"hello")
            assert r.status_code == 200 and r.headers["x-hl7-ack-code"] == "AR"
            assert "ERR" in r.text and "Traceback" not in r.text
            r = await http.post("/channels/nope/messages", content=hl7("H2"))
            assert r.status_code == 404 and "Expected one of: web" in r.json()["error"]
            r = await http.post("/channels/web/messages", content=b"  ")
            assert r.status_code == 400
    run(body())


def test_admin_api_control_search_show_reprocess(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            assert (await http.post("/channels/web/messages", content=hl7("A1", name="Quill^Ada"))).status_code == 200
            await until(lambda: messages.search(SearchQuery(status="SENT")) != [])
            listing = (await http.get("/admin/channels")).json()["channels"]
            assert listing[0]["name"] == "web" and listing[0]["deployed"] and listing[0]["destinations"] == ["out"]
            # the delivery counter moves just after the SENT status is committed (in another thread)
            await until(lambda: eng.channel_stats("web")["destinations"]["out"]["sent"] == 1, what="sent counted")
            stats = (await http.get("/admin/channels/web")).json()
            assert stats["received"] == 1 and stats["destinations"]["out"]["sent"] == 1
            assert stats["ack_latency"]["count"] == 1 and stats["ack_latency"]["p99_ms"] is not None
            assert (await http.post("/admin/channels/web/pause")).json()["state"]["paused"] is True
            assert eng.runtimes["web"].paused
            assert (await http.post("/admin/channels/web/resume")).json()["state"]["paused"] is False
            assert (await http.post("/admin/channels/web/explode")).status_code == 404
            assert (await http.get("/admin/channels/ghost")).status_code == 404
            found = (await http.get("/admin/messages", params={"text": "quill", "status": "SENT"})).json()["messages"]
            assert [m["control_id"] for m in found] == ["A1"]
            assert (await http.get("/admin/messages", params={"since": "yesterday"})).status_code == 400
            detail = (await http.get(f"/admin/messages/{found[0]['id']}")).json()
            assert detail["raw"].startswith("MSH|") and detail["deliveries"][0]["status"] == "SENT"
            assert (await http.get("/admin/messages/999999")).status_code == 404
            again = (await http.post("/admin/messages/reprocess", json={"ids": [found[0]["id"]]})).json()
            assert again["reprocessed"] == [found[0]["id"]]
            await until(lambda: len((messages.get(found[0]["id"]) or {})["attempts"]) == 2, what="second delivery")
            await until(lambda: (messages.get(found[0]["id"]) or {})["status"] == "SENT", what="sent again")
            detail = (await http.get(f"/admin/messages/{found[0]['id']}")).json()
            # attempt numbers restart in each run: the detail says which run each belongs to
            assert [(a["run"], a["number"]) for a in detail["attempts"]] == [(1, 1), (2, 1)]
            assert [(r["run"], r["by"]) for r in detail["runs"]] == [(1, None), (2, "admin_token")]
            assert detail["deliveries"][0]["run"] == 2
            spec = (await http.get("/admin/openapi.json")).json()
            assert spec["openapi"].startswith("3.") and "/admin/messages/{id}" in spec["paths"]
    run(body())


def test_admin_api_refuses_what_is_not_a_message_id(messages: MessageStore, tmp_path: Path) -> None:
    """A string, an object, booleans or fractions as ids are refused (a string was read character by
    character: "12" reprocessed messages 1 and 2); duplicates count once; numbers beyond what the
    database holds are a 400, not a 500."""
    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            for n in range(1, 4):
                assert (await http.post("/channels/web/messages", content=hl7(f"N{n}"))).status_code == 200
            await until(lambda: len(messages.search(SearchQuery(status="SENT"))) == 3, what="all sent")
            for bad in ({"ids": "12"}, {"ids": {"1": 2}}, {"ids": [True]}, {"ids": [1.7]}, {"ids": []}, [1, 2],
                        {"ids": [10**30]}, {"ids": [-1]}):
                r = await http.post("/admin/messages/reprocess", json=bad)
                assert r.status_code == 400 and "a list of whole numbers" in r.json()["error"], bad
            assert len(messages.search(SearchQuery(status="SENT"))) == 3  # nothing was reprocessed
            r = await http.post("/admin/messages/reprocess", json={"ids": [2, 2]})
            assert r.json() == {"reprocessed": [2], "skipped": []}
            for path in ("/admin/messages?before_id=99999999999999999999999", "/admin/audit?before_id=1e3",
                         "/admin/messages?limit=%C2%B2", "/admin/messages/%C2%B2", "/admin/messages/99999999999999999999"):
                r = await http.get(path)
                assert r.status_code == 400 and ("whole number" in r.text or "is not a number" in r.text), (path, r.text)
            r = await http.post("/admin/messages/prune", json={"older_than": "99999999999999999d"})
            assert r.status_code == 200 and r.json()["pruned"] == 0
    run(body())


def test_admin_api_access(messages: MessageStore) -> None:
    async def body() -> None:
        async with running(messages, {"web": {"source": "http", "destinations": {"o": {"type": "file", "directory": "x"}}}}) as eng:
            async with client_for(eng, token="sekret") as http:
                bad = await http.get("/admin/channels", headers={"authorization": "Bearer wrong"})
                assert bad.status_code == 401 and "admin_token" in bad.json()["error"]
            async with client_for(eng, token="", host="10.1.2.3") as http:
                # was 403; now 401 with a challenge: credentials (a user's Basic sign-in) would do
                refused = await http.get("/admin/channels")
                assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic ")
            async with client_for(eng, token="", host="127.0.0.1") as http:
                assert (await http.get("/admin/channels")).status_code == 200
    run(body())


def test_metrics_in_prometheus_text(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            await eng.pause("web")
            await http.post("/channels/web/messages", content=hl7("M1"))
            await asyncio.sleep(1.1)  # the queue gauge is cached for a second
            text = (await http.get("/metrics")).text
            assert 'ehrgate_messages_received_total{channel="web"} 1.0' in text
            assert 'ehrgate_queue_depth{channel="web",step="pipeline"} 1.0' in text
            assert "ehrgate_queue_oldest_age_seconds" in text
            assert 'ehrgate_ack_latency_seconds_bucket{channel="web",le="0.5"} 1.0' in text
    run(body())


def test_alerts_fire_once_then_resolve_with_a_webhook(messages: MessageStore, tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response(status_code=204)

    async def body() -> None:
        import socket

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
                                               log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        chan = {"source": "http", "alerts": {"queue_depth": 1, "webhook": url},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        try:
            async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
                await eng.pause("web")
                for i in range(3):
                    await http.post("/channels/web/messages", content=hl7(f"Q{i}"))
                first = await eng.alerts.evaluate()
                second = await eng.alerts.evaluate()  # still over the threshold: no second notice
                assert [n["state"] for n in first] == ["firing"] and second == []
                await eng.resume("web")
                await until(lambda: eng.stats._queue_stats() == {}, what="queue drained")
                third = await eng.alerts.evaluate()
                assert [n["state"] for n in third] == ["resolved"]
            await until(lambda: len(received) == 2, what="two webhook calls")
            assert received[0]["alert"] == "queue_depth" and received[0]["value"] == 3.0
        finally:
            server.should_exit = True
            await task
    run(body())


def test_directory_source_moves_files(messages: MessageStore, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "two.hl7").write_bytes(hl7("F1") + b"\r" + hl7("F2"))
    (inbox / "bad.hl7").write_bytes(b"MSH|^~\\&|A|B\rnot hl7 at all\r")
    (inbox / "ignored.txt").write_text("not matched by the pattern")

    async def body() -> None:
        chan = {"source": {"type": "directory", "path": str(inbox), "interval": 0.1},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"files": chan}):
            await until(lambda: (inbox / "processed" / "two.hl7").exists() and (inbox / "error" / "bad.hl7").exists(),
                        what="files moved")
            await until(lambda: sorted(r["status"] for r in messages.search(SearchQuery(channel="files")))
                        == ["ERROR", "SENT", "SENT"], what="messages stored and delivered")
        assert (inbox / "ignored.txt").exists()
    run(body())


def test_admin_api_answers_odd_criteria_with_400_or_results_never_500(messages: MessageStore, tmp_path: Path) -> None:
    """A NUL in a text criterion (PostgreSQL refuses it in text) and a duration too long for a float
    or a database integer ('since=9...9d') were 500s."""
    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            assert (await http.post("/channels/web/messages", content=hl7("O1"))).status_code == 200
            for name in ("channel", "type", "control_id", "patient", "text"):
                r = await http.get("/admin/messages", params={name: "a\x00b"})
                assert r.status_code == 400 and f"{name} contains a NUL character" in r.json()["error"], name
            for name in ("actor", "target"):
                r = await http.get("/admin/audit", params={name: "\x00"})
                assert r.status_code == 400 and "NUL" in r.json()["error"]
            r = await http.post("/admin/messages/prune", json={"older_than": "1d", "channel": "a\x00"})
            assert r.status_code == 400
            for since in ("9" * 400 + "d", "99999999999999999999d"):  # beyond any message: all of them
                r = await http.get("/admin/messages", params={"since": since})
                assert r.status_code == 200 and [m["control_id"] for m in r.json()["messages"]] == ["O1"]
                assert (await http.get("/admin/audit", params={"since": since})).status_code == 200
    run(body())


def test_directory_source_keeps_the_bytes_of_each_message(messages: MessageStore, tmp_path: Path) -> None:
    """Each message of a file was re-encoded as UTF-8 whatever its MSH-18: a Latin-1 file (8859/1)
    was stored as UTF-8 bytes still labelled 8859/1, and every later reading showed 'MÃ¼ller'."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    latin = ("MSH|^~\\&|LAB|FAC|EHRGATE|HUB|20240401120000||ADT^A01|L1|P|2.5.1||||||8859/1\r"
             "PID|1||P1^^^FAC^MR||Müller^Zoë\r").encode("latin-1")
    (inbox / "latin.hl7").write_bytes(latin + b"\n" + latin.replace(b"|L1|", b"|L2|"))

    async def body() -> None:
        chan = {"source": {"type": "directory", "path": str(inbox), "interval": 0.1},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"files": chan}):
            await until(lambda: (inbox / "processed" / "latin.hl7").exists(), what="file moved")
    run(body())
    for cid in ("L1", "L2"):
        got = messages.get(messages.search(SearchQuery(control_id=cid))[0]["id"])
        assert got is not None and parse(bytes(got["raw"])).get("PID-5.2") == "Zoë"
        assert bytes(got["raw"]) == latin.replace(b"|L1|", f"|{cid}|".encode())


def test_http_source_refuses_a_body_over_its_limit_without_reading_it_all(messages: MessageStore,
                                                                         tmp_path: Path) -> None:
    """The HTTP source read any body whole into memory: one huge or endless POST could exhaust it."""
    async def body() -> None:
        chan = {"source": {"type": "http", "max_message_bytes": 1000},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            sent = 0

            async def endless() -> Any:
                nonlocal sent
                while sent < 10_000_000:
                    sent += 500
                    yield b"x" * 500

            r = await http.post("/channels/web/messages", content=endless())
            assert r.status_code == 413 and "limit of 1000 bytes" in r.json()["error"]
            assert sent < 100_000  # stopped reading
            r = await http.post("/channels/web/messages", content=hl7("S1") + b"NTE|1||" + b"y" * 2000 + b"\r")
            assert r.status_code == 413
            r = await http.post("/channels/web/messages", content=hl7("S2"))
            assert r.status_code == 200 and r.headers["x-hl7-ack-code"] == "AA"
    run(body())


def test_directory_source_waits_for_a_file_still_being_written(messages: MessageStore, tmp_path: Path) -> None:
    """A file was taken as soon as it appeared: one still being copied in was read half-written, its
    first messages stored, the file moved to processed/ - and what the writer added after that was
    never read (the rename keeps the writer's open file)."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    path = inbox / "slow.hl7"

    async def body() -> None:
        chan = {"source": {"type": "directory", "path": str(inbox), "interval": 0.05, "min_age": 1.0},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"files": chan}):
            with open(path, "wb") as fh:
                fh.write(hl7("W1") + b"\n")
                fh.flush()
                await asyncio.sleep(0.5)  # the writer is slow: ten polls go by
                fh.write(hl7("W2"))
            await until(lambda: (inbox / "processed" / "slow.hl7").exists(), what="file moved")
            await until(lambda: sorted(r["control_id"] for r in messages.search(SearchQuery(channel="files")))
                        == ["W1", "W2"], what="both messages stored")
        assert (inbox / "processed" / "slow.hl7").read_bytes() == hl7("W1") + b"\n" + hl7("W2")
    run(body())


def test_http_source_undeployed_while_a_body_is_read_answers_404_not_500(messages: MessageStore,
                                                                        tmp_path: Path) -> None:
    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            async def slow_body() -> Any:
                yield hl7("U1")[:20]
                await eng.undeploy("web")
                yield hl7("U1")[20:]

            r = await http.post("/channels/web/messages", content=slow_body())
            assert r.status_code == 404 and "not deployed" in r.json()["error"]
            assert messages.search(SearchQuery(control_id="U1")) == []
    run(body())


class _FailingReceipts(MessageStore):
    """The message store, except that receipt transactions fail (as a database that is down, or a
    full disk, would: nothing of them is stored) until ``failures`` messages have been refused.
    Counted in messages, not transactions: how the group committer batches the messages of one
    poll depends on timing, and a budget of transactions made the outcome depend on it too."""

    def __init__(self, store: MessageStore, failures: int) -> None:
        super().__init__(store.engine, clock=store.clock)
        self.failures = failures

    def receive(self, batch: Any, *, duplicate_window_ms: int = 0) -> Any:
        if self.failures > 0:
            self.failures = max(0, self.failures - len(batch))
            import sqlalchemy as sa

            raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error (test)"))
        return super().receive(batch, duplicate_window_ms=duplicate_window_ms)


def test_directory_source_keeps_a_file_it_could_not_store_for_the_next_poll(messages: MessageStore,
                                                                          tmp_path: Path) -> None:
    """A file read while the database was unavailable was moved to error/, as if its messages could
    not be parsed, and stayed there after the database came back."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.hl7").write_bytes(hl7("K1") + b"\n" + hl7("K2"))
    flaky = _FailingReceipts(messages, failures=2)

    async def body() -> None:
        chan = {"source": {"type": "directory", "path": str(inbox), "interval": 0.05, "min_age": 0},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(flaky, {"files": chan}):
            await until(lambda: (inbox / "processed" / "a.hl7").exists(), what="file moved to processed/")
    try:
        run(body())
    finally:
        flaky.fast.close()
    assert flaky.failures == 0 and not (inbox / "error" / "a.hl7").exists()
    assert sorted(r["control_id"] for r in messages.search(SearchQuery(channel="files"))) == ["K1", "K2"]


def test_directory_source_recreates_processed_and_never_reads_a_file_twice(messages: MessageStore,
                                                                         tmp_path: Path) -> None:
    """processed/ and error/ were made at start only: an inbox recreated without them (or a file that
    could not be moved) left the file in place, so it was read - and its messages stored again - at
    every poll, while the log said it had been moved."""
    inbox = tmp_path / "in"
    inbox.mkdir()

    async def body() -> None:
        chan = {"source": {"type": "directory", "path": str(inbox), "interval": 0.05, "min_age": 0},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"files": chan}) as eng:
            await until(lambda: (inbox / "processed").is_dir(), what="processed/ made")
            (inbox / "processed").rmdir()
            (inbox / "one.hl7").write_bytes(hl7("R1"))
            await until(lambda: (inbox / "processed" / "one.hl7").exists(), what="moved to a recreated processed/")
            (inbox / "error").rmdir()
            (inbox / "error").write_text("not a directory")  # error/ cannot be made: the move fails
            (inbox / "two.hl7").write_bytes(b"MSH|^~\\&|A\rnot a segment\r")
            await until(lambda: len(messages.search(SearchQuery(channel="files"))) == 2, what="two stored")
            await asyncio.sleep(0.5)  # ten polls
            assert len(messages.search(SearchQuery(channel="files"))) == 2
            assert (inbox / "two.hl7").exists() and eng.runtimes["files"]._unmovable
    run(body())


def test_http_source_labels_the_ack_with_its_character_set(messages: MessageStore, tmp_path: Path) -> None:
    """The ACK is encoded in the message's MSH-18 character set but was labelled charset=utf-8: a
    Latin-1 sender's facility copied into MSH-6 came back garbled to a client that read the label."""
    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(messages, {"web": chan}) as eng, client_for(eng) as http:
            latin = ("MSH|^~\\&|LAB|Hôpital|EHRGATE|HUB|20240401120000||ADT^A01|C1|P|2.5.1||||||8859/1\r"
                     "PID|1||P1^^^FAC^MR||Müller^Zoë\r").encode("latin-1")
            r = await http.post("/channels/web/messages", content=latin)
            assert r.headers["content-type"] == "application/hl7-v2; charset=iso-8859-1"
            assert "|Hôpital|" in r.text and parse(r.content).get("MSH-6") == "Hôpital"
            r = await http.post("/channels/web/messages", content=hl7("C2"))
            assert r.headers["content-type"] == "application/hl7-v2; charset=utf-8"
    run(body())


def test_http_source_answers_ce_when_an_enhanced_mode_message_could_not_be_stored(messages: MessageStore,
                                                                                 tmp_path: Path) -> None:
    """Enhanced mode (MSH-15/16 set) over HTTP: the one answer is the accept acknowledgment, so a
    message that could not be stored gets CE (commit error, HL7 v2.5 section 2.9.3), not an AR;
    an original-mode message keeps its AR (section 2.9.2: the system is down)."""
    flaky = _FailingReceipts(messages, failures=2)
    enhanced = hl7("EN1").replace(b"|P|2.5.1|", b"|P|2.5.1|||AL|NE|")

    async def body() -> None:
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(tmp_path)}}}
        async with running(flaky, {"web": chan}) as eng, client_for(eng) as http:
            r = await http.post("/channels/web/messages", content=enhanced)
            assert r.headers["x-hl7-ack-code"] == "CE" and parse(r.content).get("MSA-2") == "EN1"
            assert "could not be stored" in parse(r.content).get("ERR-8")
            r = await http.post("/channels/web/messages", content=hl7("OR1"))
            assert r.headers["x-hl7-ack-code"] == "AR" and "could not be stored" in r.text
            r = await http.post("/channels/web/messages", content=enhanced)
            assert r.headers["x-hl7-ack-code"] == "CA"
    try:
        run(body())
    finally:
        flaky.fast.close()


def test_directory_source_on_processed_sends_a_file_whose_message_failed_to_error_and_says_how_to_retry(
        messages: MessageStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With ack: on_processed, a stored message whose processing failed (AE) sends its file to error/;
    moving the file back would only find duplicates, so the log names the way to retry it: reprocess
    the stored message."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "bad.hl7").write_bytes(hl7("D1"))

    async def body() -> None:
        chan = {"source": {"type": "directory", "path": str(inbox), "interval": 0.05, "min_age": 0},
                "ack": "on_processed", "ack_timeout": 10, "transform": ["tests.engine.channels.sample:boom"],
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"files": chan}):
            await until(lambda: (inbox / "error" / "bad.hl7").exists(), what="file moved to error/")
    with caplog.at_level("WARNING", logger="ehrgate.engine"):
        run(body())
    [row] = messages.search(SearchQuery(channel="files"))
    assert row["status"] == "ERROR" and row["control_id"] == "D1"
    assert any("1 stored and failed processing" in r.getMessage() and "messages reprocess" in r.getMessage()
               for r in caplog.records)

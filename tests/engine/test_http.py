"""HTTP edges: the HTTP source, the admin API (OpenAPI, access rules), /metrics; alerts; directory source."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
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

"""MLLP source with mutual TLS; HTTP and FHIR-over-HTTP destinations against a real local server;
retention by the engine."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.hl7 import MLLPClient, parse, start_mllp_server

from .conftest import Certificates, hl7, run
from .helpers import Receiver, port_of, running, send, until


def test_mllp_source_with_mutual_tls(messages: MessageStore, certificates: Certificates, tmp_path: Path) -> None:
    async def body() -> None:
        chan = {"source": {"type": "mllp", "port": 0, "tls": {"cert": str(certificates.server_cert),
                                                              "key": str(certificates.server_key),
                                                              "ca": str(certificates.ca), "client_auth": True}},
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"secure": chan}) as eng:
            port = port_of(eng, "secure")
            ctx = ssl.create_default_context(cafile=str(certificates.ca))
            ctx.load_cert_chain(str(certificates.client_cert), str(certificates.client_key))
            async with await MLLPClient.connect("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1") as c:
                assert parse(await c.send(hl7("TLS1"))).get("MSA-1") == "AA"
            anonymous = ssl.create_default_context(cafile=str(certificates.ca))
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                async with await MLLPClient.connect("127.0.0.1", port, ssl=anonymous, server_hostname="127.0.0.1") as c:
                    await c.send(hl7("TLS2"))
            # the CLI sender with --tls and a client certificate
            file = tmp_path / "m.hl7"
            file.write_bytes(hl7("TLS3"))
            result = await asyncio.to_thread(CliRunner().invoke, __import__("ehrgate.cli", fromlist=["cli"]).cli, [
                "hl7", "send", str(file), "--to", f"127.0.0.1:{port}", "--tls", "--ca", str(certificates.ca),
                "--cert", str(certificates.client_cert), "--key", str(certificates.client_key)])
            assert result.exit_code == 0, result.output
        assert sorted(r["control_id"] for r in messages.search(SearchQuery(channel="secure"))) == ["TLS1", "TLS3"]
    run(body())


class Web:
    """A real HTTP server on 127.0.0.1 recording requests; answers by the path's last segment (a status)."""

    def __init__(self, tls: dict[str, Any] | None = None) -> None:
        """``tls``: uvicorn's ssl_* settings (HTTPS; with ssl_cert_reqs, client certificates)."""
        self.requests: list[dict[str, Any]] = []
        self.tls = tls or {}

        async def any_(request: Request) -> Response:
            self.requests.append({"path": request.url.path, "headers": dict(request.headers),
                                  "body": await request.body()})
            status = int(request.path_params["status"])
            return Response(b'{"ok": true}' if status < 300 else b"nope", status_code=status)

        self.app = Starlette(routes=[Route("/{kind}/{status:int}", any_, methods=["POST", "PUT"])])

    async def __aenter__(self) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="critical", lifespan="off", **self.tls))
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            await asyncio.sleep(0.02)
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task


def test_http_and_fhir_http_destinations(messages: MessageStore, tmp_path: Path) -> None:
    web = Web()

    async def body() -> None:
        async with web as base:
            (tmp_path / "token").write_text("t0ken\n")
            chan = {"source": "http", "transform": ["tests.engine.channels.sample:to_bundle"], "destinations": {
                "hook": {"type": "http", "url": base + "/hl7/200?patient={PID-3.1}", "method": "PUT",
                         "headers": {"X-Control": "{control_id}"}, "body": "{type} {body}"},
                "fhir": {"type": "fhir_http", "url": base + "/fhir/200", "token_file": str(tmp_path / "token")},
                "down": {"type": "http", "url": base + "/x/503", "retry": {"max_attempts": 2, "base_delay": 0.01}},
                "refused": {"type": "http", "url": base + "/x/400"},
            }}
            async with running(messages, {"web": chan}, base=tmp_path) as eng:
                ack, code = await eng.handle("web", hl7("W1", patient="MRN 1/2"), "test")
                assert code == "AA"
                await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="web"))] == ["ERROR"],
                            what="final status")
        hook = next(r for r in web.requests if r["path"] == "/hl7/200")
        assert hook["headers"]["x-control"] == "W1" and hook["body"].startswith(b"ADT^A01 MSH|")
        fhir = next(r for r in web.requests if r["path"] == "/fhir/200")
        assert fhir["headers"]["authorization"] == "Bearer t0ken"
        assert fhir["headers"]["content-type"] == "application/fhir+json" and b'"transaction"' in fhir["body"]
        assert sum(r["path"] == "/x/503" for r in web.requests) == 2  # retried up to max_attempts
        assert sum(r["path"] == "/x/400" for r in web.requests) == 1  # not retried
        got = messages.get(messages.search(SearchQuery(channel="web"))[0]["id"])
        assert got is not None
        by = {d["destination"]: d for d in got["deliveries"]}
        assert by["hook"]["status"] == "SENT" and by["fhir"]["status"] == "SENT"
        assert by["down"]["status"] == "ERROR" and by["down"]["attempts"] == 2
        assert by["refused"]["status"] == "ERROR" and by["refused"]["last_error"] == "HTTP 400 from the destination"
    run(body())


def test_http_destinations_present_a_client_certificate(messages: MessageStore, certificates: Certificates,
                                                        tmp_path: Path) -> None:
    """A partner endpoint that demands mutual TLS: fhir_http and http with tls.cert/key get through;
    the same destination without them is refused in the handshake and retried, then ERROR."""
    web = Web({"ssl_certfile": str(certificates.server_cert), "ssl_keyfile": str(certificates.server_key),
               "ssl_ca_certs": str(certificates.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED})

    async def body() -> None:
        async with web as base:
            mine = {"ca": str(certificates.ca), "cert": str(certificates.client_cert),
                    "key": str(certificates.client_key)}
            once = {"max_attempts": 1}
            chan = {"source": "http", "transform": ["tests.engine.channels.sample:to_bundle"], "destinations": {
                "fhir": {"type": "fhir_http", "url": base + "/fhir/200", "tls": mine},
                "hook": {"type": "http", "url": base + "/hl7/200", "tls": mine},
                "anonymous": {"type": "http", "url": base + "/anon/200", "tls": {"ca": str(certificates.ca)},
                              "retry": once},
                "rogue": {"type": "http", "url": base + "/rogue/200", "retry": once,
                          "tls": {**mine, "cert": str(certificates.rogue_cert), "key": str(certificates.rogue_key)}},
            }}
            async with running(messages, {"web": chan}, base=tmp_path) as eng:
                ack, code = await eng.handle("web", hl7("T1"), "test")
                assert code == "AA"
                await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="web"))] == ["ERROR"],
                            what="final status")
        assert sorted(r["path"] for r in web.requests) == ["/fhir/200", "/hl7/200"]
        got = messages.get(messages.search(SearchQuery(channel="web"))[0]["id"])
        assert got is not None
        by = {d["destination"]: d for d in got["deliveries"]}
        assert by["fhir"]["status"] == "SENT" and by["hook"]["status"] == "SENT"
        for refused in ("anonymous", "rogue"):
            assert by[refused]["status"] == "ERROR" and by[refused]["last_error"].startswith("Cannot reach https://")
    run(body())


def test_tls_and_token_files_are_checked_at_deploy(tmp_path: Path) -> None:
    from ehrgate.engine import ChannelConfigError, load_channels

    def problems(dest: dict[str, Any]) -> str:
        with pytest.raises(ChannelConfigError) as caught:
            load_channels({"channels": {"c": {"source": "http", "destinations": {"d": dest}}}}, tmp_path)
        return caught.value.message

    url = "https://partner.example/fhir"
    assert "token_file" in problems({"type": "fhir_http", "url": url, "token_file": "missing-token"})
    assert "tls.cert" in problems({"type": "http", "url": url, "tls": {"cert": "missing.pem", "key": "k.pem"}})
    assert "tls.client_auth" in problems({"type": "fhir_http", "url": url, "tls": {"client_auth": True}})


def test_hook_url_values_are_percent_encoded(messages: MessageStore) -> None:
    from ehrgate.engine.destinations.base import Payload, render

    p = Payload(1, "c", hl7("Q", patient="A B/C"), None, "ADT^A01", "Q")
    assert render("http://h/p?id={PID-3.1}&t={type}", p, url=True) == "http://h/p?id=A%20B%2FC&t=ADT%5EA01"


def test_retention_prunes_old_finished_messages(messages: MessageStore, tmp_path: Path) -> None:
    async def body() -> None:
        chan = {"source": "http", "retention_days": 1,
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        async with running(messages, {"keep": chan}) as eng:
            for cid in ("OLD", "NEW"):
                await eng.handle("keep", hl7(cid), "test")
            await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="keep"))] == ["SENT"] * 2)
            with messages.write() as conn:
                conn.execute(sa.text("UPDATE eng_message SET received_at = received_at - 2 * 86400000 "
                                     "WHERE control_id = 'OLD'"))
            assert await eng.prune_expired() == 1
        assert [r["control_id"] for r in messages.search(SearchQuery(channel="keep"))] == ["NEW"]
    run(body())


def test_mllp_destination_reconnects_when_the_receiver_closed_the_idle_connection(messages: MessageStore) -> None:
    """Receivers close idle connections. The kept connection was written to anyway: the attempt
    failed ("the receiver closed the connection"), counted as a retry and waited out a backoff."""
    async def body() -> None:
        receiver = Receiver()
        receiver.server = await start_mllp_server(receiver._handle, "127.0.0.1", 0, idle_timeout=0.2)
        chan = {"source": {"type": "mllp", "port": 0}, "destinations": {"peer": {
            "type": "mllp", "host": "127.0.0.1", "port": receiver.server.port, "timeout": 2,
            "retry": {"max_attempts": 5, "base_delay": 5}}}}
        try:
            async with running(messages, {"out": chan}) as eng:
                for cid in ("I1", "I2"):
                    await send(port_of(eng, "out"), [hl7(cid)])
                    await until(lambda c=cid: c in receiver.control_ids(), what=f"{cid} delivered", timeout=4)
                    await asyncio.sleep(0.5)  # the receiver closes the idle connection
            for cid in ("I1", "I2"):
                got = messages.get(messages.search(SearchQuery(control_id=cid))[0]["id"])
                assert got is not None and [a["outcome"] for a in got["attempts"]] == ["SENT"], got["attempts"]
        finally:
            await receiver.stop()
    run(body())


def test_mllp_destination_takes_acks_that_end_with_fs_alone(messages: MessageStore) -> None:
    """A receiver whose ACKs end with FS and no CR: each message is SENT after one attempt (before,
    every attempt waited out its timeout and was retried - the receiver got each message again)."""
    got: list[bytes] = []

    async def sloppy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while chunk := await reader.read(65536):
            buf += chunk
            while b"\x1c\r" in buf:
                raw, _, buf = buf.partition(b"\x1c\r")
                got.append(raw.lstrip(b"\x0b"))
                cid = raw.split(b"|")[9]
                writer.write(b"\x0bMSH|^~\\&|R|R|S|S|20240401||ACK|A" + cid + b"|P|2.5.1\rMSA|AA|" + cid + b"\r\x1c")
                await writer.drain()

    async def body() -> None:
        plain = await asyncio.start_server(sloppy, "127.0.0.1", 0)
        chan = {"source": {"type": "mllp", "port": 0}, "destinations": {"peer": {
            "type": "mllp", "host": "127.0.0.1", "port": plain.sockets[0].getsockname()[1], "timeout": 3,
            "retry": {"max_attempts": 3, "base_delay": 5}}}}
        try:
            async with running(messages, {"out": chan}) as eng:
                await send(port_of(eng, "out"), [hl7("F1"), hl7("F2")])
                await until(lambda: len(messages.search(SearchQuery(channel="out", status="SENT"))) == 2,
                            what="both SENT", timeout=8)
        finally:
            plain.close()
            await plain.wait_closed()
        for cid in ("F1", "F2"):
            done = messages.get(messages.search(SearchQuery(control_id=cid))[0]["id"])
            assert done is not None and [a["outcome"] for a in done["attempts"]] == ["SENT"], done["attempts"]
        assert len(got) == 2
    run(body())


def test_a_message_mllp_cannot_frame_is_an_error_at_once_not_retried(messages: MessageStore) -> None:
    """A message holding the MLLP start or end block (from an HTTP or directory source, or a
    transformer) can never be framed: it was retried until max_attempts, each attempt failing alike."""
    async def body() -> None:
        receiver = Receiver()
        port = await receiver.start()
        chan = {"source": "http", "destinations": {"peer": {
            "type": "mllp", "host": "127.0.0.1", "port": port, "timeout": 2,
            "retry": {"max_attempts": 5, "base_delay": 0.01}}}}
        try:
            async with running(messages, {"web": chan}) as eng:
                _, code = await eng.handle("web", hl7("V1", extra="NTE|1||a\x0bb\r"), "test")
                assert code == "AA"
                await until(lambda: [r["status"] for r in messages.search(SearchQuery(control_id="V1"))] == ["ERROR"],
                            what="V1 in ERROR")
            got = messages.get(messages.search(SearchQuery(control_id="V1"))[0]["id"])
            assert got is not None and [a["outcome"] for a in got["attempts"]] == ["ERROR"]
            assert "start block 0x0B" in got["error"] and receiver.received == []
        finally:
            await receiver.stop()
    run(body())


def test_file_destination_syncs_the_directory_after_the_rename(messages: MessageStore, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The file was fsynced under its temporary name, then renamed, and the delivery recorded SENT:
    until the directory is synced the rename is not durable, so a power cut could lose a SENT file."""
    import os

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:  # the real fsync, noting what it synced
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)

    async def body() -> None:
        out = tmp_path / "out"
        chan = {"source": "http", "destinations": {"out": {"type": "file", "directory": str(out),
                                                           "filename": "{control_id}.hl7"}}}
        async with running(messages, {"web": chan}) as eng:
            assert (await eng.handle("web", hl7("W1"), "test"))[1] == "AA"
            await until(lambda: (out / "W1.hl7").exists() and str(out) in synced, what="written and synced")
        assert synced.index(str(out / ".W1.hl7.tmp")) < synced.index(str(out))
    run(body())

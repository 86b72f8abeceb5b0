"""The engine console in a real browser: a live EHRGate whose engine runs an MLLP channel (HL7 v2 →
FHIR store) on 127.0.0.1; a message sent over a real MLLP connection is found, opened and
reprocessed by an admin who signs in as a person would. Also: the pages at a phone's 375 px."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import hl7
from tests.engine.helpers import FAST

from .conftest import sign_in

pytestmark = pytest.mark.browser

START, END = b"\x0b", b"\x1c\r"  # MLLP framing (HL7 v2.5.1 Appendix C)
EVIL = "<script>alert('x')</script>"


@pytest.fixture
def engine_server(store: Any, seeded: dict[str, Any], settings: Any, tmp_path: Path) -> Iterator[tuple[str, int, Any]]:
    """(origin, MLLP port, engine): uvicorn and the engine on one asyncio loop in a thread, as ``ehrgate serve``."""
    import uvicorn

    from ehrgate.app import create_app
    from ehrgate.engine import Engine, load_channels, open_messages

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    channels = load_channels({"channels": {"mllp-in": {
        "source": {"type": "mllp", "host": "127.0.0.1", "port": 0}, "transform": [{"step": "hl7_to_fhir"}],
        "destinations": {"fhir-store": {"type": "fhir_store"}}}}}, tmp_path)
    engine = Engine(open_messages(store), channels, fhir_store=store, settings=FAST, loader=lambda: channels,
                    owns_messages=True)
    app = create_app(settings.replace(base_url=origin, port=port), store, engine)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))

    async def main() -> None:
        await engine.start()
        try:
            await server.serve(sockets=[sock])
        finally:
            await engine.stop()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    rt = engine.runtimes["mllp-in"]
    try:
        yield origin, int(rt.port), engine
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        app.state.fhir.audit.flush()


def send_mllp(port: int, raw: bytes) -> bytes:
    """One message over a real MLLP connection; returns the ACK (without framing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(START + raw + END)
        answer = b""
        while not answer.endswith(END):
            chunk = conn.recv(65536)
            assert chunk, "connection closed before the ACK"
            answer += chunk
    return answer[1:-2]


def test_admin_finds_opens_and_reprocesses_a_message(context: Any, engine_server: Any, shots: Path) -> None:
    origin, mllp_port, engine = engine_server
    ack = send_mllp(mllp_port, hl7("CONSOLE-1", patient="MRN-4711", name=f"Quill^{EVIL}"))
    assert b"MSA|AA|CONSOLE-1" in ack
    dialogs: list[str] = []
    page = context.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    page.goto(origin + "/")
    page.get_by_role("link", name="Engine console").click()
    page.wait_for_url("**/auth/login?next=%2Fconsole")
    assert page.title() == "Sign in · EHRGate"
    sign_in(page, "admin")
    page.wait_for_url("**/console")
    assert page.get_by_role("heading", name="Channels", level=1).is_visible()
    assert page.get_by_role("heading", name="mllp-in deployed").is_visible()
    page.screenshot(path=str(shots / "console-channels.png"), full_page=True)

    page.get_by_role("link", name="Messages", exact=True).first.click()
    assert page.get_by_role("heading", name="Messages", level=1).is_visible()
    page.get_by_label("Control ID (MSH-10)").fill("CONSOLE-1")
    page.get_by_label("Patient identifier (PID-3)").fill("MRN-4711")
    page.get_by_label("Status").select_option("SENT")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**control_id=CONSOLE-1**")
    rows = page.locator("tbody tr")
    for _ in range(50):  # the destination may still be delivering: search again until it is SENT
        if rows.count() == 1:
            break
        time.sleep(0.1)
        page.reload()
    assert rows.count() == 1 and "CONSOLE-1" in rows.first.inner_text()
    page.screenshot(path=str(shots / "console-messages.png"), full_page=True)

    rows.first.get_by_role("link").click()
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text().startswith("Message ") and "SENT" in heading.inner_text()
    received = page.get_by_label("Message as received, one segment per line").inner_text()
    assert received.splitlines()[2] == f"PID|1||MRN-4711^^^FAC^MR||Quill^{EVIL}||19800101|F"
    assert '"resourceType": "Bundle"' in page.get_by_label("FHIR Bundle").inner_text()
    assert page.locator("section", has_text="fhir-store").locator("tbody tr").count() == 1
    page.screenshot(path=str(shots / "console-message.png"), full_page=True)

    page.get_by_role("button", name="Reprocess").click()
    assert "is queued to go through its channel again" in page.get_by_role("status").inner_text()
    attempts = page.locator("section", has_text="fhir-store").locator("tbody tr")
    for _ in range(100):
        if attempts.count() == 2:
            break
        time.sleep(0.1)
        page.reload()
    # a reprocessed message shows its runs; the attempts table gains a Run column (run, attempt, time, outcome)
    assert attempts.count() == 2
    second = [c.inner_text() for c in attempts.nth(1).locator("td").all()]
    assert second[0] == "2" and second[1] == "1" and second[3] == "SENT", second
    assert page.get_by_role("list", name="Runs").locator("li").count() == 2
    assert not dialogs, f"message content ran as script: {dialogs}"


def test_console_reads_at_375_px(chromium: Any, engine_server: Any, shots: Path) -> None:
    origin, mllp_port, _engine = engine_server
    send_mllp(mllp_port, hl7("NARROW-1", patient="MRN-1", name="Longname^" + "Wide" * 20))
    ctx = chromium.new_context(viewport={"width": 375, "height": 800}, locale="en-GB")
    try:
        page = ctx.new_page()
        page.goto(origin + "/console")
        sign_in(page, "admin")
        page.wait_for_url("**/console")
        page.get_by_role("link", name="Messages", exact=True).first.click()
        link = page.locator("tbody tr").first.get_by_role("link")
        link.wait_for()
        for url in ("/console", "/console/messages", link.get_attribute("href")):
            page.goto(origin + url)
            assert page.locator("h1").count() == 1
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 375, f"{url} is {width} px wide at a 375 px viewport"
            name = url.strip("/").replace("/", "-")
            page.screenshot(path=str(shots / f"{name if name.count('-') < 2 else 'console-message'}-375.png"))
    finally:
        ctx.close()


def test_clinician_is_refused_in_the_browser(context: Any, engine_server: Any) -> None:
    origin = engine_server[0]
    page = context.new_page()
    page.goto(origin + "/console")
    sign_in(page, "doctor")
    page.wait_for_url("**/console")
    assert page.get_by_role("heading", name="The engine console is for integration staff").is_visible()
    assert page.get_by_role("button", name="Pause mllp-in").count() == 0

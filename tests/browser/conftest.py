"""Real-browser tests: Debian's headless ``chromium`` driven by Playwright (python ``playwright``,
launched with ``executable_path`` — never ``playwright install``), against a live EHRGate on
127.0.0.1 with the API closed, seeded like tests/smart, and the SMART suite's log watch.

They skip, saying why, when chromium or playwright is missing; the npm ``fhirclient`` tests also
need ``npm ci`` in tests/browser (``.ci/run`` does both). ``EHRGATE_SCREENSHOTS=DIR`` keeps the
pages' screenshots there to look at (default: the test's tmp dir).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import seeded, settings  # noqa: F401 - fixtures
from tests.smart.conftest import PASSWORD, log_watch, quick_argon2, remember  # noqa: F401 - fixtures

HERE = Path(__file__).resolve().parent
FHIRCLIENT_JS = HERE / "node_modules" / "fhirclient" / "build" / "fhir-client.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 20_000


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian chromium is not installed (apt-get install -y chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per test module, not per session: Playwright's sync API keeps an asyncio loop
    running on this thread while it is open, and every later test that calls ``asyncio.run`` on the
    same worker would fail with "cannot be called from a running event loop"."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield browser
        browser.close()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1100, "height": 900}, locale="en-GB")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("EHRGATE_SCREENSHOTS") or tmp_path / "shots")
    where.mkdir(parents=True, exist_ok=True)
    return where


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@pytest.fixture
def js_app_origin() -> Iterator[str]:
    """tests/browser served on 127.0.0.1 (a free port): the JS test page and fhirclient's build."""
    if not FHIRCLIENT_JS.exists():
        pytest.skip(f"{FHIRCLIENT_JS.relative_to(HERE.parents[1])} is absent: run `npm ci` in tests/browser")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HERE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def origin(live_server: str) -> str:
    return live_server.rsplit("/fhir", 1)[0]


def register(store: Any, client_id: str, name: str, redirect: str, launch: str, description: str = "") -> None:
    from ehrgate.smart import apps as A

    with store.writer() as w:
        A.add_app(w.conn, A.App(client_id, name, "public", (redirect,), launch_url=launch, description=description),
                  now=int(time.time()))


def sign_in(page: Any, username: str) -> None:
    """On EHRGate's sign-in page: type the credentials and press Sign in, as a person would."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def remember_storage(page: Any) -> None:
    """Feed the tokens fhirclient keeps in sessionStorage to the log watch."""
    import json

    for raw in page.evaluate("() => Object.values(sessionStorage)"):
        try:
            state = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(state, dict):
            tokens = state.get("tokenResponse") or {}
            remember(*(tokens.get(k) for k in ("access_token", "refresh_token", "id_token")))

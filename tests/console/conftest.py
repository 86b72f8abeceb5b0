"""Console tests: the whole app (create_app) with a running Engine on the test's event loop, over
an in-process ASGI client; users seeded like tests/smart (doctor, ada, admin) plus an operator and a
viewer; SQLite and PostgreSQL (the ``store`` fixture); the SMART suite's log watch."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ehrgate.engine import Engine, MessageStore
from tests.engine.conftest import messages  # noqa: F401 - fixture
from tests.engine.helpers import running
from tests.smart.conftest import (  # noqa: F401 - fixtures
    PASSWORD,
    log_watch,
    quick_argon2,
    seed_clinical,
    seed_people_and_apps,
)

EXTRA_ROLES = ("operator", "viewer")


@pytest.fixture
def people(store: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """doctor (clinician), ada (patient), admin, olive (operator), vic (viewer). The operator and viewer
    roles are declared in ``smart.users.ROLES``; where they are not yet, this test declares them."""
    from ehrgate.smart import users as U

    missing = tuple(r for r in EXTRA_ROLES if r not in U.ROLES)
    if missing:
        monkeypatch.setattr(U, "ROLES", U.ROLES + missing)
    ids = seed_clinical(store)
    seed_people_and_apps(store, ids)
    with store.writer() as w:
        U.add_user(w.conn, username="olive", password=PASSWORD, role="operator", now=int(time.time()))
        U.add_user(w.conn, username="vic", password=PASSWORD, role="viewer", now=int(time.time()))
    return ids


@pytest.fixture
def console_settings(settings: Any) -> Any:
    return settings.replace(auth_required=True)


@contextlib.asynccontextmanager
async def console(store: Any, message_store: MessageStore, settings: Any, channels: dict[str, Any] | None,
                  base: Path | None = None) -> AsyncIterator[tuple[httpx.AsyncClient, Engine | None]]:
    """The app with ``channels`` running (None: an app without an engine) and a client for it."""
    from ehrgate.app import create_app

    async with contextlib.AsyncExitStack() as stack:
        engine = (await stack.enter_async_context(running(message_store, channels, fhir_store=store, base=base))
                  if channels is not None else None)
        app = create_app(settings, store, engine)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        http = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        yield http, engine


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


async def sign_in(http: httpx.AsyncClient, username: str, next_: str = "/console") -> httpx.Response:
    page = await http.get("/auth/login", params={"next": next_})
    r = await http.post("/auth/login", data={"csrf": csrf_of(page.text), "username": username, "password": PASSWORD,
                                             "req": "", "next": next_})
    assert r.status_code == 303, r.text[:300]
    return r

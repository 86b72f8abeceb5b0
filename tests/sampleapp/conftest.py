"""Sample-app tests: a live EHRGate (uvicorn on 127.0.0.1) with the API closed, seeded like
tests/smart, the sample app registered for the live origin, and the SMART suite's log watch."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.client.conftest import Browser, browser, seeded, settings  # noqa: F401 - fixtures
from tests.smart.conftest import log_watch, quick_argon2  # noqa: F401 - fixtures


@pytest.fixture
def origin(live_server: str) -> str:
    return live_server.rsplit("/fhir", 1)[0]


@pytest.fixture
def registered(store: Any, seeded: dict[str, Any], origin: str) -> dict[str, Any]:  # noqa: F811
    """Registers the sample app the way `ehrgate demo` does, for the live server's origin."""
    from ehrgate.smart import apps as A
    from ehrgate.smart.demo import SAMPLE_APP

    with store.writer() as w:
        A.add_app(w.conn, A.App(SAMPLE_APP, "EHRGate sample app", "public", (f"{origin}/sample-app/callback",),
                                launch_url=f"{origin}/sample-app/launch",
                                description="Patient summary: demographics, conditions, recent labs."), now=int(time.time()))
    return seeded

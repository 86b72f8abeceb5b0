"""Client tests run against a live EHRGate (uvicorn on 127.0.0.1) with the API closed, seeded like
tests/smart, and share its log watch: no issued value may reach a log line."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from ehrgate.app import MIGRATION_DIRS
from ehrgate.smart import MIGRATIONS
from tests.smart.conftest import (  # noqa: F401 - fixtures
    PASSWORD,
    log_watch,
    quick_argon2,
    remember,
    seed_clinical,
    seed_people_and_apps,
)

if MIGRATIONS not in MIGRATION_DIRS:
    MIGRATION_DIRS.append(MIGRATIONS)


@pytest.fixture
def settings(tmp_path: Any) -> Any:
    from ehrgate.settings import load_settings

    return load_settings(None, overrides={"data_dir": str(tmp_path / "data"), "auth_required": True}, environ={})


@pytest.fixture
def seeded(store: Any) -> dict[str, Any]:
    ids = seed_clinical(store)
    return {**ids, **seed_people_and_apps(store, ids)}


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} on the page"
    return m.group(1)


class Browser:
    """A person at a browser (cookies, forms), over real HTTP; stops at the app's redirect."""

    def __init__(self, origin: str) -> None:
        self.http = httpx.Client(follow_redirects=False, timeout=30)
        self.origin = origin

    def close(self) -> None:
        self.http.close()

    def authorize(self, url: str, *, user: str, patient: str | None = None, scopes: list[str] | None = None,
                  decision: str = "allow") -> str:
        """Follow the authorize URL through sign-in, picker and consent; returns the callback URL."""
        import html as h

        response = self.http.get(url)
        for _ in range(8):
            location = response.headers.get("location", "")
            if response.status_code in (302, 303) and not location.startswith("/"):
                return location
            if response.status_code in (302, 303):
                target = urljoin(self.origin, location)
                if location.startswith("/auth/login"):
                    page = self.http.get(target)
                    response = self.http.post(self.origin + "/auth/login", data={
                        "csrf": _field(page.text, "csrf"), "req": _field(page.text, "req"), "next": "",
                        "username": user, "password": PASSWORD})
                elif location.startswith("/auth/patient"):
                    page = self.http.get(target)
                    response = self.http.post(self.origin + "/auth/patient", data={
                        "csrf": _field(page.text, "csrf"), "req": _field(page.text, "req"), "patient": patient})
                else:
                    response = self.http.get(target)
                continue
            assert response.status_code == 200, response.text[:500]
            chosen = scopes if scopes is not None else re.findall(r'name="scope" value="([^"]+)" checked', response.text)
            response = self.http.post(self.origin + "/auth/consent", data={
                "csrf": _field(response.text, "csrf"), "req": _field(response.text, "req"), "decision": decision,
                "scope": [h.unescape(s) for s in chosen]})
        raise AssertionError("the authorization did not finish")

    def ehr_launch(self, patient: str, client_id: str = "public-app") -> str:
        """Sign in as the clinician, open the chart, press Launch; returns the app's launch URL."""
        page = self.http.get(self.origin + "/auth/login")
        self.http.post(self.origin + "/auth/login", data={"csrf": _field(page.text, "csrf"), "username": "doctor",
                                                          "password": PASSWORD, "next": "/ehr", "req": ""})
        chart = self.http.get(f"{self.origin}/ehr/patient/{patient}")
        response = self.http.post(self.origin + "/ehr/launch", data={"csrf": _field(chart.text, "csrf"),
                                                                      "client_id": client_id, "patient": patient})
        assert response.status_code == 303
        return response.headers["location"]


@pytest.fixture
def browser(live_server: str) -> Any:
    b = Browser(live_server.rsplit("/fhir", 1)[0])
    yield b
    b.close()

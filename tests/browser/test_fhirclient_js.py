"""The npm ``fhirclient`` package (SMART JS client 2.6.3, which EHRGate did not write) in headless
Chromium: an EHR launch started from EHRGate's chart page and a standalone launch, both with PKCE
(S256), render the patient's name; the page then refreshes its token as fhirclient does (no
client_id, cross-origin) and reads the patient again."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from .conftest import register, remember_storage, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def js_app(store: Any, seeded: dict[str, Any], js_app_origin: str) -> str:
    register(store, "js-app", "JS test app", f"{js_app_origin}/page/index.html", f"{js_app_origin}/page/launch.html",
             "The npm fhirclient package in a browser page.")
    return js_app_origin


def _watch_authorize(context: Any) -> list[dict[str, list[str]]]:
    seen: list[dict[str, list[str]]] = []
    context.on("request", lambda r: seen.append(parse_qs(urlsplit(r.url).query)) if "/auth/authorize" in r.url else None)
    return seen


def _finish(page: Any, shots: Any, name: str) -> None:
    page.get_by_role("button", name="Allow").click()
    page.wait_for_function("document.body.dataset.state === 'done' || document.body.dataset.state === 'error'")
    page.screenshot(path=str(shots / name))
    remember_storage(page)
    assert page.locator("#error").inner_text() == ""


def test_ehr_launch_from_the_chart(context: Any, js_app: str, origin: str, seeded: dict[str, Any], shots: Any) -> None:
    authorize = _watch_authorize(context)
    page = context.new_page()
    page.goto(origin + "/ehr")
    sign_in(page, "doctor")
    page.get_by_role("link", name="Ada Nunez").click()
    page.screenshot(path=str(shots / "chart.png"))
    card = page.locator("li", has_text="JS test app")
    with context.expect_page() as opened:
        card.get_by_role("button", name="Launch JS test app").click()
    app = opened.value
    app.wait_for_url("**/auth/**")  # fhirclient: discovery, then the authorize redirect → consent
    _finish(app, shots, "fhirclient-ehr.png")
    assert app.locator("#name").inner_text() == "Ada Nunez"
    assert app.locator("#patient-id").inner_text() == seeded["patient"]
    assert app.locator("#refreshed").inner_text() == "yes"
    query = authorize[0]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["launch"] and query["aud"] == [origin + "/fhir"] and query["client_id"] == ["js-app"]


def test_standalone_launch(context: Any, js_app: str, origin: str, seeded: dict[str, Any], shots: Any) -> None:
    authorize = _watch_authorize(context)
    page = context.new_page()
    page.goto(f"{js_app}/page/launch.html?iss={quote(origin + '/fhir', safe='')}")
    page.wait_for_url("**/auth/login**")
    sign_in(page, "ada")
    _finish(page, shots, "fhirclient-standalone.png")
    assert page.locator("#name").inner_text() == "Ada Nunez"
    assert page.locator("#refreshed").inner_text() == "yes"
    query = authorize[0]
    assert query["code_challenge_method"] == ["S256"] and "launch" not in query
    assert "launch/patient" in query["scope"][0].split()

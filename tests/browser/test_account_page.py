"""Connected apps in a real browser: after approving the sample app, the person finds it under
'Connected apps' (linked next to Sign out), ends its access, and the app's next FHIR call fails."""

from __future__ import annotations

from typing import Any

import pytest

from .test_pages import _launch_sample_app, sample_app  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


def test_ending_an_apps_access(context: Any, sample_app: str, shots: Any) -> None:  # noqa: F811 - fixture
    app = _launch_sample_app(context, sample_app, shots)
    app.get_by_role("button", name="Allow").click()
    app.wait_for_url("**/sample-app/patient/**")
    page = context.new_page()
    page.goto(sample_app + "/ehr")
    page.get_by_role("link", name="Connected apps").click()
    page.wait_for_url("**/auth/apps")
    assert page.get_by_role("heading", name="Connected apps").is_visible()
    card = page.locator("li", has_text="EHRGate sample app")
    assert "for Ada Nunez, born 1980-02-03" in card.inner_text()
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375  # no sideways scrolling on a phone
    page.screenshot(path=str(shots / "connected-apps.png"), full_page=True)
    card.get_by_role("button", name="End access of EHRGate sample app").click()
    assert "Access ended" in page.get_by_role("status").inner_text()
    assert page.get_by_text("No app has access to your data.").is_visible()
    # the app's token no longer works: reloading its page cannot read the record
    app.reload()
    assert app.locator(".patient-name").count() == 0
    assert "The app's access has ended" in app.locator(".unavailable").first.inner_text()

"""EHRGate's own pages in a real browser: sign-in, consent (with its scope choices), the sample app
after an EHR launch, and its degraded sections. Screenshots are kept (``shots``) for a person to
look at; the assertions check what a person relies on: labels, headings, wording."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import register, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def sample_app(store: Any, seeded: dict[str, Any], origin: str) -> str:
    from ehrgate.smart.demo import SAMPLE_APP

    register(store, SAMPLE_APP, "EHRGate sample app", f"{origin}/sample-app/callback", f"{origin}/sample-app/launch",
             "Patient summary: demographics, conditions, recent labs.")
    return origin


def _launch_sample_app(context: Any, origin: str, shots: Any) -> Any:
    page = context.new_page()
    page.goto(origin + "/ehr")
    assert page.title() == "Sign in · EHRGate"
    page.screenshot(path=str(shots / "sign-in.png"))
    sign_in(page, "doctor")
    assert page.get_by_role("heading", name="Patients").is_visible()
    page.get_by_role("link", name="Ada Nunez").click()
    card = page.locator("li", has_text="EHRGate sample app")
    with context.expect_page() as opened:
        card.get_by_role("button", name="Launch EHRGate sample app").click()
    app = opened.value
    app.wait_for_url("**/auth/**")
    app.get_by_role("button", name="Allow").wait_for()
    return app


def test_sign_in_page_reads_well(context: Any, sample_app: str, shots: Any) -> None:
    page = context.new_page()
    page.goto(sample_app + "/auth/login?next=/ehr")
    assert page.get_by_role("heading", name="Sign in to EHRGate").is_visible()
    page.get_by_label("Username").fill("doctor")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    assert "The username or password is not right" in alert.inner_text()
    assert page.get_by_label("Username").input_value() == "doctor"  # kept, so only the password is retyped
    page.screenshot(path=str(shots / "sign-in-error.png"))


def test_sample_app_after_ehr_launch(context: Any, sample_app: str, shots: Any) -> None:
    app = _launch_sample_app(context, sample_app, shots)
    assert app.get_by_role("heading", name="Allow EHRGate sample app to use your EHRGate access?").is_visible()
    assert "patient Ada Nunez, born 1980-02-03" in app.locator(".note").first.inner_text()  # a name, not an id
    boxes = app.get_by_role("checkbox")
    assert boxes.count() >= 6
    assert app.get_by_label("Read and search conditions (Condition) for the selected patient.").is_checked()
    app.screenshot(path=str(shots / "consent.png"), full_page=True)
    app.get_by_role("button", name="Allow").click()
    app.wait_for_url("**/sample-app/patient/**")
    app.screenshot(path=str(shots / "sample-app.png"), full_page=True)
    assert app.locator(".patient-name").inner_text() == "Ada Nunez"
    assert app.get_by_role("heading", name="Conditions").is_visible()
    assert app.locator("#conditions tbody tr").count() == 2  # encounter diagnosis and health concern
    assert app.locator("#recent-lab-results tbody tr").count() == 1  # the lab, not the social-history observation
    assert app.locator("#recent-lab-results tbody td").first.inner_text() == "laboratory"
    assert app.locator(".unavailable").count() == 0


def test_sample_app_without_conditions(context: Any, sample_app: str, shots: Any) -> None:
    app = _launch_sample_app(context, sample_app, shots)
    app.get_by_label("Read and search conditions (Condition) for the selected patient.").uncheck()
    app.get_by_role("button", name="Allow").click()
    app.wait_for_url("**/sample-app/patient/**")
    app.screenshot(path=str(shots / "sample-app-degraded.png"), full_page=True)
    note = app.locator("#conditions .unavailable").inner_text()
    assert note.startswith("Conditions unavailable.") and "consent page" in note
    assert app.locator(".patient-name").inner_text() == "Ada Nunez"


def test_sample_app_denied(context: Any, sample_app: str, shots: Any) -> None:
    app = _launch_sample_app(context, sample_app, shots)
    app.get_by_role("button", name="Deny").click()
    app.wait_for_url("**/sample-app/callback**")
    app.screenshot(path=str(shots / "sample-app-denied.png"), full_page=True)
    assert app.get_by_role("heading", name="The app was not given access").is_visible()
    assert not app.locator("details").evaluate("d => d.open")  # the technical code stays folded away


def test_remembered_approval_launches_straight_into_the_app(context: Any, sample_app: str, shots: Any) -> None:
    app = _launch_sample_app(context, sample_app, shots)
    remember = app.get_by_label("Do not ask me again when EHRGate sample app asks for no more than this", exact=False)
    assert not remember.is_checked()  # nothing is remembered unless the user says so
    remember.check()
    app.get_by_role("button", name="Allow").click()
    app.wait_for_url("**/sample-app/patient/**")
    app.close()

    chart = context.pages[0]  # the EHR tab: launch again
    card = chart.locator("li", has_text="EHRGate sample app")
    with context.expect_page() as opened:
        card.get_by_role("button", name="Launch EHRGate sample app").click()
    again = opened.value
    again.wait_for_url("**/sample-app/patient/**")  # no consent page this time
    assert again.locator(".patient-name").inner_text() == "Ada Nunez"

    again.goto(sample_app + "/auth/apps")
    assert again.get_by_role("heading", name="Apps that do not ask again").is_visible()
    again.get_by_role("button", name="Ask me again: EHRGate sample app").click()
    assert "will ask for your approval again" in again.get_by_role("status").inner_text()
    again.screenshot(path=str(shots / "connected-apps-forgotten.png"), full_page=True)


def test_app_registry_page_registers_and_removes_an_app(context: Any, sample_app: str, shots: Any) -> None:
    page = context.new_page()
    page.goto(sample_app + "/ehr/apps")
    sign_in(page, "admin")
    assert page.get_by_role("heading", name="App registry").is_visible()
    page.get_by_label("Client ID").fill("vendor-web")
    page.get_by_label("Name (shown to people on the consent page)").fill("Vendor Web App")
    page.get_by_label("Client type").select_option("confidential-symmetric")
    page.get_by_label("Redirect URIs (one per line; matched exactly)").fill("https://vendor.example/callback")
    page.get_by_label("Launch URL (for EHR launch; optional)").fill("https://vendor.example/launch")
    page.get_by_role("button", name="Register").click()
    status = page.get_by_role("status").first.inner_text()
    assert "Registered Vendor Web App (vendor-web)." in status
    secret = page.locator("#client-secret").inner_text()
    assert len(secret) >= 32
    page.screenshot(path=str(shots / "app-registry.png"), full_page=True)
    page.get_by_role("button", name="Remove Vendor Web App").click()
    assert "The app was removed" in page.get_by_role("status").first.inner_text()
    assert page.get_by_text("Vendor Web App").count() == 0

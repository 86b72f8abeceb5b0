"""The sample app over real HTTP: EHR launch from the chart, standalone launch, sections that
degrade when a scope is not granted, OAuth errors in clinician language, token refresh."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.client.conftest import Browser

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
SOCIAL = "http://terminology.hl7.org/CodeSystem/observation-category|social-history"
GRANTED = ["launch", "openid", "fhirUser", "offline_access", "patient/Patient.rs", "patient/Condition.rs",
           "patient/Observation.rs"]


def _text(page: str) -> str:
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _finish(browser: Browser, callback: str) -> Any:
    """The browser arrives at the app's callback; the app exchanges the code and shows the summary."""
    response = browser.http.get(callback)
    if response.status_code != 303:
        return response
    assert response.headers["location"].startswith("/sample-app/patient/")
    return browser.http.get(browser.origin + response.headers["location"])


def _start_standalone(browser: Browser) -> str:
    response = browser.http.get(browser.origin + "/sample-app/start")
    assert response.status_code == 303, response.text
    url = response.headers["location"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == ["ehrgate-sample"]
    assert "launch/patient" in query["scope"][0].split()
    return url


def test_ehr_launch_from_the_chart(registered: dict[str, Any], browser: Browser) -> None:
    launch_url = browser.ehr_launch(registered["patient"], client_id="ehrgate-sample")
    assert launch_url.startswith(browser.origin + "/sample-app/launch?")
    response = browser.http.get(launch_url)
    assert response.status_code == 303
    authorize = response.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["launch"] and query["code_challenge_method"] == ["S256"] and query["aud"] == [browser.origin + "/fhir"]
    summary = _finish(browser, browser.authorize(authorize, user="doctor"))
    assert summary.status_code == 200, summary.text
    text = _text(summary.text)
    assert "Ada Nunez" in text and "Started by EHR launch" in text
    assert "encounter-diagnosis" in text and "health-concern" in text  # both conditions
    assert "laboratory" in text and "social-history" not in text  # labs only
    assert "unavailable" not in text
    assert 'class="banner"' in summary.text  # the chart opens the app in its own tab: need_patient_banner is true
    assert summary.headers["cache-control"] == "no-store"


def test_standalone_launch_patient_user(registered: dict[str, Any], browser: Browser) -> None:
    summary = _finish(browser, browser.authorize(_start_standalone(browser), user="ada"))
    assert summary.status_code == 200
    text = _text(summary.text)
    assert "Ada Nunez" in text and "Started by standalone launch" in text and 'class="banner"' in summary.text
    home = browser.http.get(browser.origin + "/sample-app")
    listed = home.text.split("Open in this browser")[1]
    assert ">Ada Nunez</a>" in listed  # a name, not an id
    assert registered["patient"] not in listed


def test_standalone_launch_clinician_picks_patient(registered: dict[str, Any], browser: Browser) -> None:
    summary = _finish(browser, browser.authorize(_start_standalone(browser), user="doctor", patient=registered["other_patient"]))
    assert "Ben Okafor" in _text(summary.text)


def test_sections_say_why_they_are_unavailable(registered: dict[str, Any], browser: Browser) -> None:
    scopes = ["launch/patient", "openid", "fhirUser", "patient/Patient.rs", f"patient/Observation.rs?category={SOCIAL}"]
    summary = _finish(browser, browser.authorize(_start_standalone(browser), user="ada", scopes=scopes))
    assert summary.status_code == 200
    text = _text(summary.text)
    assert "Ada Nunez" in text
    assert "Conditions unavailable. Not shared: when the app was authorized, permission to read conditions was not granted" in text
    assert "Recent lab results unavailable. Only social history records were shared with the app, not laboratory results" in text
    assert "Renew access now" not in text  # no offline_access: nothing to renew with


def test_partial_category_grant_is_shown_with_a_note(registered: dict[str, Any], browser: Browser) -> None:
    scopes = ["launch/patient", "patient/Patient.rs", f"patient/Observation.rs?category={LAB}",
              "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis"]
    text = _text(_finish(browser, browser.authorize(_start_standalone(browser), user="ada", scopes=scopes)).text)
    assert "Only encounter diagnosis conditions were shared with the app" in text
    assert "encounter-diagnosis" in text.split("Recent lab results")[0] and "health-concern" not in text
    assert "laboratory" in text.split("Recent lab results")[1]


def test_no_demographics_scope(registered: dict[str, Any], browser: Browser) -> None:
    scopes = ["launch/patient", "patient/Condition.rs"]
    text = _text(_finish(browser, browser.authorize(_start_standalone(browser), user="ada", scopes=scopes)).text)
    assert "Demographics unavailable. Not shared" in text and "patient/Patient.rs" in text
    assert "health-concern" in text


def test_denied_consent_in_clinician_words(registered: dict[str, Any], browser: Browser) -> None:
    page = _finish(browser, browser.authorize(_start_standalone(browser), user="ada", decision="deny"))
    assert page.status_code == 400
    text = _text(page.text)
    assert "The app was not given access" in text and "choose Allow" in text
    assert "Error access_denied" in text  # kept for IT, under the details line


def test_forged_or_stale_callbacks(registered: dict[str, Any], browser: Browser) -> None:
    stale = browser.http.get(browser.origin + "/sample-app/callback?code=x&state=nope")
    assert stale.status_code == 400 and "Your session with the app has ended" in _text(stale.text)
    _start_standalone(browser)  # now the browser has a session with a pending launch
    forged = browser.http.get(browser.origin + "/sample-app/callback?code=x&state=forged")
    assert "This sign-in does not belong to this app window" in _text(forged.text)
    unknown = browser.http.get(browser.origin + "/sample-app/patient/nothing")
    assert unknown.status_code == 404 and "Start the app again" in _text(unknown.text)


def test_launch_from_another_ehr_and_reused_launch(registered: dict[str, Any], browser: Browser) -> None:
    other = browser.http.get(browser.origin + "/sample-app/launch?iss=http://127.0.0.1:9/fhir&launch=abc")
    assert other.status_code == 400 and "The app was launched from a different EHR" in _text(other.text)
    launch_url = browser.ehr_launch(registered["patient"], client_id="ehrgate-sample")
    first = browser.http.get(launch_url).headers["location"]
    _finish(browser, browser.authorize(first, user="doctor"))
    again = browser.http.get(browser.http.get(launch_url).headers["location"])  # the same launch link, reused
    assert again.status_code == 400 and "already been used" in _text(again.text)


def test_renew_access(registered: dict[str, Any], browser: Browser) -> None:
    summary = _finish(browser, browser.authorize(_start_standalone(browser), user="ada"))
    csrf = re.search(r'name="csrf" value="([^"]+)"', summary.text)
    assert csrf
    action = re.search(r'action="(/sample-app/patient/[^"]+/renew)"', summary.text)
    assert action
    bad = browser.http.post(browser.origin + action.group(1), data={"csrf": "wrong"})
    assert "The page was out of date" in _text(bad.text)
    renewed = browser.http.post(browser.origin + action.group(1), data={"csrf": csrf.group(1)})
    assert renewed.status_code == 303
    again = browser.http.get(browser.origin + renewed.headers["location"])
    assert "Access renewed." in _text(again.text) and "Ada Nunez" in _text(again.text)


@pytest.mark.parametrize("path", ["/sample-app", "/sample-app/"])
def test_home_page_explains_both_launches(registered: dict[str, Any], browser: Browser, path: str) -> None:
    home = browser.http.get(browser.origin + path)
    assert home.status_code == 200
    text = _text(home.text)
    assert "EHR launch" in text and "standalone launch" in text and "ehrgate-sample" in text
    assert browser.http.get(browser.origin + "/sample-app/launch").status_code == 303  # no iss/launch: to the home page


def test_ehr_launch_for_a_report_shows_what_it_was_opened_for(registered: dict[str, Any], browser: Browser,
                                                               store: Any) -> None:
    report = store.create("DiagnosticReport", {"resourceType": "DiagnosticReport", "status": "final",
                                               "code": {"text": "Lipid panel"},
                                               "subject": {"reference": f"Patient/{registered['patient']}"}}).stored.res_id
    browser.ehr_launch(registered["patient"], client_id="public-app")  # signs in; the launch itself is not used
    chart = browser.http.get(f"{browser.origin}/ehr/patient/{registered['patient']}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', chart.text)
    assert csrf and f"DiagnosticReport/{report}" in chart.text
    launched = browser.http.post(browser.origin + "/ehr/launch", data={
        "csrf": csrf.group(1), "client_id": "ehrgate-sample", "patient": registered["patient"],
        "context": f"DiagnosticReport/{report}"})
    authorize = browser.http.get(launched.headers["location"]).headers["location"]
    text = _text(_finish(browser, browser.authorize(authorize, user="doctor")).text)
    assert f"Opened for Lipid panel (DiagnosticReport/{report})" in text

"""The Python ``fhirclient`` package (which EHRGate did not write) completes a standalone launch and
an EHR launch against a live EHRGate and reads the patient. It discovers the endpoints from
/metadata (the oauth-uris extension) and parses the CapabilityStatement with strict R4 models."""

from __future__ import annotations

from typing import Any

from fhirclient import client

from .conftest import Browser, remember

CALLBACK = "http://127.0.0.1:9999/callback"


def _smart(base: str, **extra: Any) -> client.FHIRClient:
    settings = {"app_id": "public-app", "api_base": base, "redirect_uri": CALLBACK,
                "scope": "openid fhirUser offline_access patient/*.read", **extra}
    return client.FHIRClient(settings=settings)


def test_standalone_launch(live_server: str, seeded: dict[str, Any], browser: Browser) -> None:
    smart = _smart(live_server, launch_defaults=True)
    smart.prepare()
    url = smart.authorize_url
    assert url.startswith(live_server.rsplit("/fhir", 1)[0] + "/auth/authorize")
    callback = browser.authorize(url, user="doctor", patient=seeded["other_patient"])
    smart.handle_callback(callback)
    remember(smart.server.auth.access_token, smart.server.auth.refresh_token)
    assert smart.ready and smart.patient_id == seeded["other_patient"]
    patient = smart.patient
    assert patient.id == seeded["other_patient"] and smart.human_name(patient.name[0]) == "Ben Okafor"
    assert smart.reauthorize()  # refresh with fhirclient's own refresh request
    remember(smart.server.auth.access_token, smart.server.auth.refresh_token)


def test_ehr_launch(live_server: str, seeded: dict[str, Any], browser: Browser) -> None:
    from urllib.parse import parse_qs, urlsplit

    launch_url = browser.ehr_launch(seeded["patient"])
    query = parse_qs(urlsplit(launch_url).query)
    smart = _smart(query["iss"][0], launch_token=query["launch"][0])
    smart.prepare()
    callback = browser.authorize(smart.authorize_url, user="doctor")
    smart.handle_callback(callback)
    remember(smart.server.auth.access_token)
    assert smart.patient_id == seeded["patient"] and smart.patient.birthDate.isostring == "1980-02-03"

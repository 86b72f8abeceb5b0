"""SMART v2 granular scopes (Inferno's US Core granular-scope groups) and the patient compartment:
the FHIR API applies the Access the policy computes, everywhere."""

from __future__ import annotations

import pytest

from .conftest import ENC_DX, HEALTH_CONCERN, LAB, SOCIAL, World, bearer, standalone_tokens

GRANULAR = (f"launch/patient openid fhirUser patient/Patient.rs patient/Condition.rs?category={ENC_DX} "
            f"patient/Condition.rs?category={HEALTH_CONCERN} patient/Observation.rs?category={LAB} "
            f"patient/Observation.rs?category={SOCIAL}")


def _codes(bundle: dict) -> set[str]:
    out = set()
    for entry in bundle.get("entry", []):
        for cat in entry["resource"].get("category", []):
            for coding in cat.get("coding", []):
                out.add(coding["code"])
    return out


def test_granular_scopes_are_granted_exactly(world: World) -> None:
    body = standalone_tokens(world, user="ada", scope=GRANULAR)
    assert set(body["scope"].split()) == set(GRANULAR.split())


def test_granular_search_returns_only_matching(world: World) -> None:
    body = standalone_tokens(world, user="ada", scope=f"launch/patient patient/Observation.rs?category={LAB}")
    r = world.client.get(f"/fhir/Observation?patient={world.patient}", headers=bearer(body["access_token"]))
    assert r.status_code == 200, r.text
    assert _codes(r.json()) == {"laboratory"}


def test_consent_can_narrow_to_categories(world: World) -> None:
    from .conftest import authorize_params, callback_params, consent, exchange, follow_to_consent

    auth, verifier = authorize_params(scope="launch/patient openid fhirUser patient/Condition.rs patient/Observation.rs patient/Patient.rs")
    page = follow_to_consent(world.client, world.client.get("/auth/authorize", params=auth), user="ada")
    assert "laboratory results" in page.text and "health concerns" in page.text
    chosen = ["launch/patient", "openid", "fhirUser", "patient/Patient.rs",
              f"patient/Condition.rs?category={HEALTH_CONCERN}", f"patient/Observation.rs?category={LAB}"]
    got = callback_params(consent(world.client, page, scopes=chosen))
    body = exchange(world.client, got["code"], verifier).json()
    granted = body["scope"].split()
    assert "patient/Condition.rs" not in granted and "patient/Observation.rs" not in granted
    assert f"patient/Observation.rs?category={LAB}" in granted and "patient/Patient.rs" in granted


def test_patient_scope_confines_reads(world: World) -> None:
    body = standalone_tokens(world, user="ada")
    token = bearer(body["access_token"])
    assert world.client.get(f"/fhir/Patient/{world.patient}", headers=token).status_code == 200
    assert world.client.get(f"/fhir/Patient/{world.other_patient}", headers=token).status_code == 404


@pytest.mark.parametrize("query", [
    "Observation", "Observation?patient={other}", "Observation?subject=Patient/{other}",
    "Observation?_include=Observation:subject", "Patient?_revinclude=Observation:subject",
    "Observation?subject:Patient.name=Okafor", "Patient?_has:Observation:subject:status=final",
    "Patient/{other}/$everything", "Patient/{other}/_history", "Observation/_history", "_history",
])
def test_compartment_escape(world: World, query: str) -> None:
    body = standalone_tokens(world, user="ada")
    r = world.client.get("/fhir/" + query.format(other=world.other_patient), headers=bearer(body["access_token"]))
    assert r.status_code in (200, 403, 404), r.text
    body = r.json()
    if body["resourceType"] == "Bundle":
        for entry in body.get("entry", []):
            text = str(entry["resource"])
            assert world.other_patient not in text, f"{query} leaked {entry['resource']['resourceType']}"


def test_transaction_cannot_write_outside_the_compartment(world: World) -> None:
    body = standalone_tokens(world, user="ada", scope="launch/patient patient/*.cruds")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": f"Patient/{world.other_patient}"}},
        "request": {"method": "POST", "url": "Observation"}}]}
    r = world.client.post("/fhir", json=bundle, headers=bearer(body["access_token"]))
    assert r.status_code in (400, 403, 404, 422), r.text

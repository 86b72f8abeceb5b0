"""The demo generator: deterministic, valid R4 (fhirclient's strict models as the oracle), US Core
shaped, self-consistent references, canonical code systems, and values that follow the story."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date
from typing import Any

import orjson
import pytest

from ehrgate.demo import vocab
from ehrgate.demo.practice import luhn_check_digit
from ehrgate.demo.synthetic import generate_demo_bundles

ANCHOR = date(2026, 1, 1)
JSON = dict[str, Any]


@pytest.fixture(scope="module")
def bundles() -> list[JSON]:
    return list(generate_demo_bundles())


def resources(bundle: JSON) -> list[JSON]:
    return [e["resource"] for e in bundle["entry"]]


def all_resources(bundles: list[JSON]) -> list[JSON]:
    return [r for b in bundles for r in resources(b)]


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def values(node: Any, path: str) -> list[Any]:
    """Every value at a dotted path, descending through lists (FHIRPath-like, no functions)."""
    current = [node]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            for v in item if isinstance(item, list) else [item]:
                if isinstance(v, dict) and part in v:
                    got = v[part]
                    nxt.extend(got if isinstance(got, list) else [got])
        current = nxt
    return current


def codes(resource: JSON, path: str) -> set[str]:
    return {c["code"] for c in values(resource, path + ".coding")}


# --- determinism --------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes() -> None:
    first = orjson.dumps(list(generate_demo_bundles(5, seed=7)))
    assert orjson.dumps(list(generate_demo_bundles(5, seed=7))) == first


def test_output_does_not_depend_on_hash_randomisation() -> None:
    """Set iteration order varies with PYTHONHASHSEED; the generator must never depend on it."""
    script = ("import hashlib, orjson; from ehrgate.demo.synthetic import generate_demo_bundles; "
              "print(hashlib.sha256(orjson.dumps(list(generate_demo_bundles(8)))).hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=True, text=True)
        digests.add(done.stdout.strip())
    assert len(digests) == 1


def test_different_seed_gives_different_output() -> None:
    a, b = list(generate_demo_bundles(3, seed=7)), list(generate_demo_bundles(3, seed=8))
    assert orjson.dumps(a) != orjson.dumps(b)
    ids_a = {r["id"] for r in all_resources(a)}
    assert not ids_a & {r["id"] for r in all_resources(b)}


def test_more_patients_leaves_earlier_ones_unchanged() -> None:
    small, large = list(generate_demo_bundles(3, seed=7)), list(generate_demo_bundles(6, seed=7))
    assert small == large[:4]


def test_anchor_moves_every_date() -> None:
    later = list(generate_demo_bundles(2, seed=7, anchor=date(2031, 6, 1)))
    starts = [e["period"]["start"] for e in all_resources(later) if e["resourceType"] == "Encounter"]
    assert starts and all("2028" <= s[:4] <= "2031" for s in starts)


def test_negative_patient_count_is_refused() -> None:
    with pytest.raises(ValueError, match="patients: -1"):
        list(generate_demo_bundles(-1))


def test_zero_patients_yields_only_the_shared_bundle() -> None:
    assert len(list(generate_demo_bundles(0))) == 1


def test_forty_patients_generate_well_under_a_second() -> None:
    """A guard against a blow-up (something quadratic in the patients), not a benchmark: the CPU
    time of this thread, which other processes on a shared machine do not stretch (wall time did:
    1.37 s once under a loaded CI, against 0.13-0.23 s usually), with ~5x headroom."""
    started = time.thread_time()
    list(generate_demo_bundles(40, seed=11))
    assert time.thread_time() - started < 1.0


# --- shape and counts ---------------------------------------------------------------------------
def test_shared_bundle_comes_first(bundles: list[JSON]) -> None:
    shared = Counter(r["resourceType"] for r in resources(bundles[0]))
    assert shared["Organization"] >= 2 and shared["Location"] >= 2
    assert shared["Practitioner"] >= 10 and shared["PractitionerRole"] == shared["Practitioner"]
    assert set(shared) == {"Organization", "Location", "Practitioner", "PractitionerRole"}
    names = {r["name"] for r in resources(bundles[0]) if r["resourceType"] == "Organization"}
    assert any("Hospital" in n for n in names) and any("Family Medicine" in n for n in names)


def test_npis_are_luhn_valid(bundles: list[JSON]) -> None:
    assert luhn_check_digit("80840" + "123456789") == "3"  # CMS's worked example, NPI 1234567893
    npis = [i["value"] for r in resources(bundles[0]) for i in r.get("identifier", []) if i["system"] == vocab.NPI]
    assert len(npis) == 15 and len(set(npis)) == 15
    assert all(len(n) == 10 and luhn_check_digit("80840" + n[:9]) == n[9] for n in npis)


def test_one_bundle_per_patient_with_the_expected_resources(bundles: list[JSON]) -> None:
    assert len(bundles) == 41
    totals: Counter[str] = Counter()
    for bundle in bundles[1:]:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        kinds = Counter(r["resourceType"] for r in resources(bundle))
        assert resources(bundle)[0]["resourceType"] == "Patient" and kinds["Patient"] == 1
        assert 2 <= kinds["Encounter"] <= 6
        assert kinds["Observation"] >= 8 * kinds["Encounter"]  # the vital-signs set at every visit
        assert kinds["Immunization"] >= 1 and kinds["Procedure"] >= 1
        assert kinds["Condition"] >= 1 and kinds["MedicationRequest"] >= 1
        totals.update(kinds)
    for kind in ("Condition", "DiagnosticReport", "MedicationRequest", "AllergyIntolerance", "Goal", "CarePlan",
                 "CareTeam", "Appointment"):
        assert totals[kind] > 0, kind
    assert totals["Condition"] >= 40


def test_patients_have_us_core_demographics(bundles: list[JSON]) -> None:
    patients = [resources(b)[0] for b in bundles[1:]]
    mrns = [i["value"] for p in patients for i in p["identifier"] if i["system"] == vocab.MRN_SYSTEM]
    assert len(set(mrns)) == 40 and all(re.fullmatch(r"MRN\d{6}", m) for m in mrns)
    assert any(not (p["name"][0]["family"] + "".join(p["name"][0]["given"])).isascii() for p in patients)
    assert {p["gender"] for p in patients} == {"male", "female"}
    for p in patients:
        urls = {e["url"] for e in p["extension"]}
        assert {vocab.US_CORE + "us-core-race", vocab.US_CORE + "us-core-ethnicity"} <= urls
        assert p["communication"][0]["language"]["coding"][0]["system"] == vocab.BCP47
        assert p["generalPractitioner"][0]["reference"].startswith("Practitioner/")
        assert codes(p, "maritalStatus") and p["address"][0]["state"] == "IL" and p["telecom"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", p["birthDate"])


def test_fhir_r4_validity_with_fhirclient_strict_models(bundles: list[JSON]) -> None:
    from fhirclient.models.bundle import Bundle

    for bundle in bundles:
        Bundle(bundle, strict=True)
        for resource in resources(bundle):
            kind = resource["resourceType"]
            model = getattr(importlib.import_module(f"fhirclient.models.{kind.lower()}"), kind)
            model(resource, strict=True)


def test_entries_put_deterministic_ids(bundles: list[JSON]) -> None:
    seen: set[str] = set()
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
            assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
            assert resource["id"] not in seen
            seen.add(resource["id"])


def test_references_resolve(bundles: list[JSON]) -> None:
    shared = {f"{r['resourceType']}/{r['id']}" for r in resources(bundles[0])}
    for index, bundle in enumerate(bundles):
        local = {e["fullUrl"] for e in bundle["entry"]}
        targets: dict[str, str] = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
        for node in walk(bundle["entry"]):
            if isinstance(node, dict) and "reference" in node:
                ref = node["reference"]
                if ref.startswith("urn:uuid:"):
                    assert ref in local, ref
                    assert targets[ref]
                else:
                    assert index > 0 and ref in shared, ref


def test_patient_bundles_reference_their_own_patient(bundles: list[JSON]) -> None:
    for bundle in bundles[1:]:
        patient = f"urn:uuid:{resources(bundle)[0]['id']}"
        for resource in resources(bundle)[1:]:
            subject = resource.get("subject") or resource.get("patient")
            if subject is not None:
                assert subject["reference"] == patient


ALLOWED_CODE_SYSTEMS = {
    vocab.LOINC, vocab.SNOMED, vocab.RXNORM, vocab.CVX, vocab.ICD10CM, vocab.UCUM, vocab.NUCC, vocab.BCP47,
    vocab.CDC_RACE, vocab.CAREPLAN_CATEGORY,
}


def test_code_systems_are_canonical_uris(bundles: list[JSON]) -> None:
    used: set[str] = set()
    for node in walk(bundles):
        if isinstance(node, dict) and "system" in node and "code" in node:  # Coding, Quantity
            system = node["system"]
            used.add(system)
            assert system in ALLOWED_CODE_SYSTEMS or system.startswith(
                "http://terminology.hl7.org/CodeSystem/"), system
        elif isinstance(node, dict) and "system" in node and "value" in node and node["system"] not in (
                "phone", "email"):  # Identifier
            assert node["system"] in {vocab.NPI, vocab.MRN_SYSTEM, vocab.VISIT_SYSTEM}, node["system"]
    assert {vocab.LOINC, vocab.SNOMED, vocab.RXNORM, vocab.CVX, vocab.ICD10CM, vocab.UCUM} <= used


def test_us_core_profiles_claimed(bundles: list[JSON]) -> None:
    for resource in all_resources(bundles):
        if resource["resourceType"] == "Appointment":  # US Core has no Appointment profile
            assert "meta" not in resource
            continue
        (claimed,) = resource["meta"]["profile"]
        assert claimed.startswith(vocab.US_CORE + "us-core-"), claimed


# Required bindings in R4 (fhirclient does not check code values): resource type -> path -> codes.
REQUIRED: dict[str, dict[str, set[str]]] = {
    "Observation": {"status": {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                               "entered-in-error", "unknown"}},
    "DiagnosticReport": {"status": {"registered", "partial", "preliminary", "final", "amended", "corrected",
                                    "appended", "cancelled", "entered-in-error", "unknown"}},
    "Encounter": {"status": {"finished"}, "location.status": {"planned", "active", "reserved", "completed"}},
    "Condition": {"clinicalStatus.coding.code": {"active", "recurrence", "relapse", "inactive", "remission",
                                                 "resolved"},
                  "verificationStatus.coding.code": {"unconfirmed", "provisional", "differential", "confirmed",
                                                     "refuted", "entered-in-error"}},
    "MedicationRequest": {"status": {"active", "completed"}, "intent": {"order"},
                          "dosageInstruction.timing.repeat.periodUnit": {"s", "min", "h", "d", "wk", "mo", "a"}},
    "AllergyIntolerance": {"type": {"allergy", "intolerance"},
                           "category": {"food", "medication", "environment", "biologic"},
                           "criticality": {"low", "high", "unable-to-assess"},
                           "reaction.severity": {"mild", "moderate", "severe"},
                           "clinicalStatus.coding.code": {"active", "inactive", "resolved"},
                           "verificationStatus.coding.code": {"unconfirmed", "confirmed", "refuted",
                                                              "entered-in-error"}},
    "Immunization": {"status": {"completed"}},
    "Procedure": {"status": {"completed"}},
    "Goal": {"lifecycleStatus": {"proposed", "planned", "accepted", "active", "on-hold", "completed"},
             "target.detailQuantity.comparator": {"<", "<=", ">=", ">"}},
    "CarePlan": {"status": {"active"}, "intent": {"plan"}, "text.status": {"generated"},
                 "activity.detail.status": {"not-started", "scheduled", "in-progress", "on-hold", "completed"}},
    "CareTeam": {"status": {"proposed", "active", "suspended", "inactive"}},
    "Appointment": {"status": {"booked"}, "participant.required": {"required", "optional", "information-only"},
                    "participant.status": {"accepted", "declined", "tentative", "needs-action"}},
    "Patient": {"gender": {"male", "female", "other", "unknown"}, "name.use": {"usual", "official", "maiden"},
                "telecom.system": {"phone", "email"}, "telecom.use": {"home", "work", "mobile"},
                "address.use": {"home"}, "address.type": {"postal", "physical", "both"},
                "identifier.use": {"usual", "official", "secondary"}},
    "Practitioner": {"gender": {"male", "female", "other", "unknown"}},
    "Location": {"status": {"active", "suspended", "inactive"}, "mode": {"instance", "kind"}},
}


def test_required_bindings_use_valid_codes(bundles: list[JSON]) -> None:
    for resource in all_resources(bundles):
        for path, allowed in REQUIRED.get(resource["resourceType"], {}).items():
            found = set(values(resource, path))
            assert found <= allowed, (resource["resourceType"], path, found - allowed)


def test_r4_invariants(bundles: list[JSON]) -> None:
    for resource in all_resources(bundles):
        kind = resource["resourceType"]
        if kind == "Condition":
            assert "clinicalStatus" in resource  # con-3
            if "abatementDateTime" in resource:  # con-4
                assert codes(resource, "clinicalStatus") <= {"inactive", "resolved", "remission"}
        if kind == "Appointment":  # app-2 / app-3
            assert "start" in resource and "end" in resource
        if kind == "Goal":  # gol-1
            assert all("measure" in t for t in resource["target"] if "detailQuantity" in t)
        if kind == "CarePlan":
            assert resource["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')


# --- clinical content ---------------------------------------------------------------------------
OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")


def test_observation_content(bundles: list[JSON]) -> None:
    observations = [r for r in all_resources(bundles) if r["resourceType"] == "Observation"]
    loincs = {c["code"] for o in observations for c in o["code"]["coding"]}
    for code in ("85354-9", "8867-4", "29463-7", "8302-2", "39156-5", "8310-5", "2345-7", "4548-4", "2160-0",
                 "718-7", "2093-3", "72166-2"):
        assert code in loincs, code
    categories = {c["code"] for o in observations for c in o["category"][0]["coding"]}
    assert categories == {"vital-signs", "laboratory", "social-history"}
    assert {o["category"][0]["coding"][0]["system"] for o in observations} == {vocab.OBS_CATEGORY}
    assert {o["status"] for o in observations} == {"final", "amended"}
    for o in observations:
        assert OFFSET.fullmatch(o["effectiveDateTime"]), o["effectiveDateTime"]
        if o["code"]["coding"][0]["code"] == "85354-9":
            assert [c["code"]["coding"][0]["code"] for c in o["component"]] == ["8480-6", "8462-4"]
            assert all(c["valueQuantity"]["code"] == "mm[Hg]" for c in o["component"])
        elif o["code"]["coding"][0]["code"] == "72166-2":
            assert o["valueCodeableConcept"]["coding"][0]["system"] == vocab.SNOMED
        else:
            assert o["valueQuantity"]["system"] == vocab.UCUM
        if o["category"][0]["coding"][0]["code"] == "laboratory":
            (flag,) = codes(o, "interpretation")
            value, ref = o["valueQuantity"]["value"], o["referenceRange"][0]
            expected = ("H" if "high" in ref and value > ref["high"]["value"]
                        else "L" if "low" in ref and value < ref["low"]["value"] else "N")
            assert flag == expected


def _by_patient(bundles: list[JSON]) -> Iterator[tuple[bool, set[str], list[JSON]]]:
    for bundle in bundles[1:]:
        rs = resources(bundle)
        adult = rs[0]["birthDate"] < "2005"
        problems = {c["code"] for r in rs if r["resourceType"] == "Condition" for c in r["code"]["coding"]}
        yield adult, problems, [r for r in rs if r["resourceType"] == "Observation"]


def _values_of(observations: list[JSON], loinc: str) -> list[float]:
    return [o["valueQuantity"]["value"] for o in observations if o["code"]["coding"][0]["code"] == loinc]


def test_values_follow_conditions() -> None:
    bundles = list(generate_demo_bundles(120, seed=3))
    diabetic, healthy = [], []
    for adult, problems, observations in _by_patient(bundles):
        a1c = _values_of(observations, "4548-4")
        if "44054006" in problems:
            diabetic += a1c
        elif "714628002" not in problems:
            healthy += a1c
        if "414916001" in problems and adult:  # children's obesity is by BMI-for-age percentile
            assert min(_values_of(observations, "39156-5")) >= 29
    assert diabetic and healthy
    assert min(diabetic) >= 6.3 > 5.6 >= max(healthy)


def test_bmi_is_computed_from_the_same_visit(bundles: list[JSON]) -> None:
    per_visit: dict[str, dict[str, float]] = defaultdict(dict)
    for o in all_resources(bundles):
        if o["resourceType"] == "Observation" and "valueQuantity" in o:
            per_visit[o["encounter"]["reference"]][o["code"]["coding"][0]["code"]] = o["valueQuantity"]["value"]
    for vitals in per_visit.values():
        weight, height, bmi = vitals["29463-7"], vitals["8302-2"], vitals["39156-5"]
        assert abs(weight / (height / 100) ** 2 - bmi) <= 0.051


def test_history_is_before_anchor_and_appointments_after(bundles: list[JSON]) -> None:
    anchor = ANCHOR.isoformat()
    paths = {"Encounter": "period.end", "Observation": "effectiveDateTime", "MedicationRequest": "authoredOn",
             "Immunization": "occurrenceDateTime", "Procedure": "performedPeriod.end", "DiagnosticReport": "issued",
             "Condition": "recordedDate"}
    for resource in all_resources(bundles):
        kind = resource["resourceType"]
        if kind in paths:
            assert all(v < anchor for v in values(resource, paths[kind])), resource
        if kind == "Appointment":
            assert resource["start"] > anchor and resource["status"] == "booked"
            actors = [p["actor"]["reference"].split("/")[0] for p in resource["participant"]]
            assert actors[0].startswith("urn:uuid:") and actors[1:] == ["Practitioner", "Location"]


def test_orders_are_complete(bundles: list[JSON]) -> None:
    for r in all_resources(bundles):
        if r["resourceType"] == "MedicationRequest":
            assert r["medicationCodeableConcept"]["coding"][0]["system"] == vocab.RXNORM
            dosage = r["dosageInstruction"][0]
            assert dosage["text"] and dosage["timing"]["repeat"]
            assert dosage["doseAndRate"][0]["doseQuantity"]["system"] == vocab.UCUM
            assert r["requester"]["reference"].startswith("Practitioner/")
        elif r["resourceType"] == "Immunization":
            assert r["vaccineCode"]["coding"][0]["system"] == vocab.CVX
            assert r["primarySource"] is True and r["lotNumber"]
        elif r["resourceType"] == "AllergyIntolerance" and "reaction" in r:
            assert r["reaction"][0]["manifestation"] and r["reaction"][0]["severity"]
        elif r["resourceType"] == "DiagnosticReport":
            assert r["result"] and all(x["reference"].startswith("urn:uuid:") for x in r["result"])
            assert codes(r, "category") == {"LAB"}
        elif r["resourceType"] == "Condition":
            assert {c["system"] for c in r["code"]["coding"]} == {vocab.SNOMED, vocab.ICD10CM}
            assert codes(r, "category") <= {"problem-list-item", "encounter-diagnosis"}
            assert "encounter" in r and "recordedDate" in r

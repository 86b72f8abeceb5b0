"""Identity from business identifiers (issue 5, "Idempotent"): replaying a message changes nothing
but versions, an update finds what the create made, and two messages for one MRN arriving at once
never make two Patients - on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from ehrgate.convert import convert
from ehrgate.hl7 import parse

from .conftest import OPTIONS, convert_sample, current, load


def _census(store: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    for rtype in ("Patient", "Encounter", "Practitioner", "Location", "Organization", "RelatedPerson",
                  "AllergyIntolerance", "Condition", "Coverage", "Observation", "DiagnosticReport", "Specimen",
                  "ServiceRequest", "Appointment", "Immunization", "DocumentReference", "Provenance", "Procedure",
                  "Account"):
        counts[rtype] = len(current(store, rtype))
    return +counts


def test_same_message_twice_gives_the_same_bundle() -> None:
    for name in ("adt_a01.hl7", "oru_r01.hl7", "siu_s12.hl7", "vxu_v04.hl7", "mdm_t02.hl7", "orm_o01_nw.hl7",
                 "adt_a03_procedure.hl7", "oml_o21_people.hl7"):
        assert convert_sample(name).bundle == convert_sample(name).bundle, name


def test_replay_changes_nothing(store: Any) -> None:
    names = ("adt_a01.hl7", "oru_r01.hl7", "orm_o01_nw.hl7", "siu_s12.hl7", "vxu_v04.hl7", "mdm_t02.hl7",
             "adt_a03_procedure.hl7", "oml_o21_people.hl7")
    for name in names:
        load(store, convert_sample(name).bundle)
    before = _census(store)
    patient = current(store, "Patient", "identifier=urn:ehrgate:id:GHH|MRN1001")[0]
    for name in names:
        load(store, convert_sample(name).bundle)
    assert _census(store) == before
    again = current(store, "Patient", "identifier=urn:ehrgate:id:GHH|MRN1001")[0]
    assert again["id"] == patient["id"]
    assert {k: v for k, v in again.items() if k != "meta"} == {k: v for k, v in patient.items() if k != "meta"}
    assert before["Provenance"] == len(names) + 1  # + the order Provenance of oml_o21_people (ORC-10/11/19)
    assert (before["Procedure"], before["Account"]) == (1, 2)  # adt_a01: an account; adt_a03_procedure: both


def test_update_after_register_updates_the_same_patient(store: Any) -> None:
    load(store, convert_sample("adt_a04.hl7").bundle)
    first = current(store, "Patient", "identifier=urn:ehrgate:id:GHH|MRN2002")
    load(store, convert_sample("adt_a08.hl7").bundle)
    after = current(store, "Patient", "identifier=urn:ehrgate:id:GHH|MRN2002")
    assert len(after) == 1 and after[0]["id"] == first[0]["id"]
    assert after[0]["address"][0]["line"] == ["9 Elm Road"]
    assert after[0]["meta"]["versionId"] == "2"
    assert len(current(store, "Encounter")) == 1


def test_results_link_to_the_patient_admitted_before(store: Any) -> None:
    load(store, convert_sample("adt_a01.hl7").bundle)
    admitted = current(store, "Patient")[0]
    load(store, convert_sample("oru_r01.hl7").bundle)
    patients = current(store, "Patient")
    assert [p["id"] for p in patients] == [admitted["id"]]
    # the lab message links to the Patient without overwriting what the ADT feed wrote
    assert patients[0]["meta"]["versionId"] == "1"
    report = current(store, "DiagnosticReport", "identifier=urn:ehrgate:id:LIS|F-9001")[0]
    assert report["subject"] == {"reference": f"Patient/{admitted['id']}"}
    assert len(current(store, "Encounter")) == 1


def _mrn_message(n: int, kind: str) -> bytes:
    """The n-th of many messages about one new patient, MRN8008 (an A04 or a lab result)."""
    if kind == "adt":
        body = (f"MSH|^~\\&|REGADT|GHH|EHRGATE|EHRGATE|20240701090000||ADT^A04^ADT_A01|RACE-{n}|P|2.5.1\r"
                f"PID|1||MRN8008^^^GHH^MR||Racer^Rita||19900101|F\r")
    else:
        body = (f"MSH|^~\\&|LIS|GHH|EHRGATE|EHRGATE|20240701090000||ORU^R01^ORU_R01|RACE-{n}|P|2.5.1\r"
                f"PID|1||MRN8008^^^GHH^MR||Racer^Rita||19900101|F\r"
                f"OBR|1||F-RACE-{n}^LIS|2345-7^Glucose^LN|||20240701080000|||||||||||||||||F\r"
                f"OBX|1|NM|2345-7^Glucose^LN||{90 + n}|mg/dL^^UCUM|||||F\r")
    return body.encode()


def test_concurrent_messages_for_one_mrn_make_one_patient(store: Any) -> None:
    bundles = [convert(parse(_mrn_message(n, "adt" if n % 2 else "oru")), OPTIONS).bundle for n in range(8)]
    barrier = threading.Barrier(len(bundles))
    failures: list[BaseException] = []

    def run(bundle: dict[str, Any]) -> None:
        barrier.wait()
        try:
            load(store, bundle)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in bundles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert len(current(store, "Patient", "identifier=urn:ehrgate:id:GHH|MRN8008")) == 1
    assert len(current(store, "DiagnosticReport")) == 4

"""End to end, on SQLite and PostgreSQL: MLLP → engine channel (``hl7_to_fhir``) → FHIR store
destination → the FHIR REST API's search finds the patient, the labs and the appointment; replaying
the same stream (duplicates accepted, so every message is converted and stored again) adds no
resource and changes no resource's content; an A40 afterwards moves the record to the survivor
(references follow it), or with ``repoint_on_merge: false`` only links the two Patients.

Real parts only: the engine's MLLP listener on 127.0.0.1 port 0, the message store and the FHIR
store on the same database, the ASGI app for the searches.
"""

from __future__ import annotations

from typing import Any

from ehrgate.engine import MessageStore, SearchQuery, open_messages
from ehrgate.fhir.jsonio import dumps
from ehrgate.fhir.store.service import Store
from tests.engine.helpers import port_of, running, send, until

from .conftest import current, sample

STREAM = ("adt_a01.hl7", "oru_r01.hl7", "siu_s12.hl7", "vxu_v04.hl7", "mdm_t02.hl7", "adt_a03_procedure.hl7",
          "siu_s12_slot.hl7", "oml_o21_people.hl7")
TYPES = ("Patient", "Encounter", "Observation", "DiagnosticReport", "Specimen", "ServiceRequest", "Appointment",
         "Immunization", "DocumentReference", "Practitioner", "Location", "Organization", "Condition",
         "AllergyIntolerance", "Coverage", "RelatedPerson", "Provenance", "Procedure", "Account", "Schedule", "Slot")


def channel(**dest: Any) -> dict[str, Any]:
    return {"source": {"type": "mllp", "host": "127.0.0.1", "port": 0}, "ack": "on_receive", "duplicates": "accept",
            "transform": [{"step": "hl7_to_fhir"}], "destinations": {"store": {"type": "fhir_store", **dest}}}


def sent(messages: MessageStore, n: int) -> bool:
    rows = messages.search(SearchQuery(channel="feed", limit=1000))
    assert not [r for r in rows if r["status"] == "ERROR"], [r.get("error") for r in rows if r["status"] == "ERROR"]
    return sum(r["status"] == "SENT" for r in rows) >= n


async def deliver(messages: MessageStore, store: Store, raws: list[bytes], total: int, **dest: Any) -> None:
    async with running(messages, {"feed": channel(**dest)}, fhir_store=store) as eng:
        acks = await send(port_of(eng, "feed"), raws)
        assert set(acks) <= {"AA", "CA"}, acks  # adt_a01 asks for enhanced mode (MSH-15 AL): a commit accept
        await until(lambda: sent(messages, total), what=f"{total} messages converted and stored")


def snapshot(store: Store) -> dict[str, dict[str, Any]]:
    """Every current resource by type/id, with its meta. A replay is a new entry of the message
    store: only each Provenance's pointer to it (and so its version) moves; a resource whose content
    is unchanged keeps its version (fhir/store: no version for an update that changes nothing)."""
    out = {}
    for rtype in TYPES:
        for r in current(store, rtype):
            skip = ("meta", "entity") if rtype == "Provenance" else ()
            out[f"{rtype}/{r['id']}"] = {k: v for k, v in r.items() if k not in skip}
    return out


def search(client: Any, query: str) -> list[dict[str, Any]]:
    response = client.get(f"/fhir/{query}")
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", []) if e.get("search", {}).get("mode") != "include"]


def test_mllp_to_fhir_search_and_replay(store: Store, client: Any) -> None:
    import asyncio

    raws = [sample(name) for name in STREAM]
    messages = open_messages(store)
    try:
        asyncio.run(asyncio.wait_for(deliver(messages, store, raws, len(raws)), 90))
        patients = search(client, "Patient?identifier=MRN1001")
        assert len(patients) == 1 and patients[0]["name"][0]["family"] == "Everywoman"
        pid = patients[0]["id"]
        labs = search(client, f"Observation?patient=Patient/{pid}&code=http://loinc.org|2345-7")
        assert [o["valueQuantity"]["value"] for o in labs] == [182]
        # OBX-5 "13.20" keeps its trailing zero (a Decimal) and is still found by value
        hgb = search(client, f"Observation?patient=Patient/{pid}&code-value-quantity=http://loinc.org|718-7$13.2")
        assert [o["valueQuantity"]["value"] for o in hgb] == [13.20]
        assert len(search(client, f"Observation?patient=Patient/{pid}&value-quantity=ge13.1||g/dL")) == 2
        reports = search(client, f"DiagnosticReport?subject=Patient/{pid}")
        assert len(reports) == 2
        assert {r["status"] for r in reports} == {"final", "preliminary"}
        appointments = search(client, f"Appointment?patient=Patient/{pid}")
        assert sorted(a["status"] for a in appointments) == ["booked", "booked"]
        slot = search(client, "Slot?status=busy")
        assert len(slot) == 1 and slot[0]["start"] == "2024-05-20T09:30:00-04:00"
        encounters = search(client, f"Encounter?subject=Patient/{pid}")
        assert len(encounters) == 1  # the ORU's PV1 names the A01 visit: linked, not duplicated
        child = search(client, "Patient?identifier=MRN5005")[0]["id"]  # the VXU's patient
        assert len(search(client, f"Immunization?patient=Patient/{child}")) == 3
        assert search(client, f"DocumentReference?subject=Patient/{pid}")
        adam = search(client, "Patient?identifier=MRN3003")[0]["id"]
        procedures = search(client, f"Procedure?patient=Patient/{adam}")
        assert [p["code"]["text"] for p in procedures] == ["Laparoscopic appendectomy"]
        accounts = search(client, f"Account?patient=Patient/{adam}")
        assert [a["identifier"][0]["value"] for a in accounts] == ["ACCT-3003"]
        assert len(accounts[0]["guarantor"]) == 2
        before = snapshot(store)
        assert len(before) > 30

        asyncio.run(asyncio.wait_for(deliver(messages, store, raws, 2 * len(raws)), 90))  # the same stream again
        after = snapshot(store)
        assert after.keys() == before.keys()
        changed = [k for k in after if after[k] != before[k]]
        assert not changed, changed[:5]
    finally:
        messages.close()


MERGED_A04 = (sample("adt_a01.hl7").replace(b"ADT^A01^", b"ADT^A04^").replace(b"EVN|A01", b"EVN|A04")
              .replace(b"MRN1001", b"MRN2999"))  # a visit, allergies, diagnoses, coverage, next of kin, vitals
MERGED_LAB = sample("oru_r01.hl7").replace(b"MRN1001", b"MRN2999")
SURVIVOR_A04 = sample("adt_a04.hl7")  # MRN2002, the survivor of adt_a40.hl7
KEPT = ("Patient", "Provenance")  # references to the merged Patient that stay (fhir/store/merge.py)
BY_PATIENT = ("Observation?patient", "DiagnosticReport?subject", "Encounter?subject", "AllergyIntolerance?patient",
              "Condition?subject", "Coverage?beneficiary", "RelatedPerson?patient")


def referencing(store: Store, pid: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """Current resources (but Patients and Provenances) that mention ``Patient/<pid>``: version, body."""
    needle = f'"Patient/{pid}"'.encode()
    out = {}
    for rtype in TYPES:
        if rtype not in KEPT:
            for r in current(store, rtype):
                if needle in dumps(r):
                    out[f"{rtype}/{r['id']}"] = (int(r["meta"]["versionId"]), r)
    return out


def found(client: Any, pid: str) -> dict[str, set[str]]:
    return {q: {r["id"] for r in search(client, f"{q}=Patient/{pid}")} for q in BY_PATIENT}


def test_merge_moves_the_record_to_the_survivor(store: Store, client: Any) -> None:
    """A40 after a visit, allergies and results exist under the merged MRN: the merged Patient
    becomes inactive and ``replaced-by`` the survivor, the survivor ``replaces`` it, and every
    clinical reference follows the survivor, each in a new version (the old one stays in the
    history) that searches find under the survivor. The Provenances keep recording what each message
    wrote. Replaying the A40 writes no further version of anything it re-pointed."""
    import asyncio

    messages = open_messages(store)
    try:
        asyncio.run(asyncio.wait_for(deliver(messages, store, [MERGED_A04, MERGED_LAB, SURVIVOR_A04], 3), 90))
        old = search(client, "Patient?identifier=MRN2999")[0]
        before = referencing(store, old["id"])
        under_old = found(client, old["id"])
        assert len(under_old["Observation?patient"]) == 14 and all(under_old.values()), under_old
        assert {k.split("/")[0] for k in before} >= {"Encounter", "AllergyIntolerance", "Condition", "Coverage",
                                                     "RelatedPerson", "Observation", "DiagnosticReport", "Specimen"}

        asyncio.run(asyncio.wait_for(deliver(messages, store, [sample("adt_a40.hl7")], 4), 90))
        survivor = search(client, "Patient?identifier=MRN2002")[0]
        merged = search(client, "Patient?identifier=MRN2999")
        assert [p["id"] for p in merged] == [old["id"]] and merged[0]["active"] is False
        assert merged[0]["name"] == old["name"]  # the patch touched active and link only
        assert merged[0]["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
        assert survivor["active"] is True
        assert survivor["link"] == [{"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}]
        assert referencing(store, old["id"]) == {}
        moved = referencing(store, survivor["id"])
        assert {k: moved[k][0] for k in before} == {k: v + 1 for k, (v, _r) in before.items()}
        under_survivor = found(client, survivor["id"])
        assert all(under_survivor[q] >= ids for q, ids in under_old.items()), under_survivor
        assert not any(found(client, old["id"]).values())
        provenances = current(store, "Provenance")
        # the A04's and the A40's Provenance still name the merged Patient among what they wrote
        assert sum(f"Patient/{old['id']}".encode() in dumps(p["target"]) for p in provenances) == 2
        assert [p["id"] for p in search(client, f"Patient?link=Patient/{old['id']}")] == [survivor["id"]]

        asyncio.run(asyncio.wait_for(deliver(messages, store, [sample("adt_a40.hl7")], 5), 90))  # a replay
        replayed = referencing(store, survivor["id"])
        assert {k: v for k, (v, _r) in replayed.items()} == {k: v for k, (v, _r) in moved.items()}

        # a lab result for the merged MRN after the merge (a system that has not caught up) lands on
        # the survivor, and the merged Patient stays retired (follow_merges, on by default)
        late = (MERGED_LAB.replace(b"ORU-0001", b"ORU-LATE").replace(b"F-9001", b"F-L1").replace(b"F-9002", b"F-L2")
                .replace(b"ORD777", b"ORD-L1").replace(b"ORD778", b"ORD-L2").replace(b"S-5001", b"S-L1"))
        asyncio.run(asyncio.wait_for(deliver(messages, store, [late], 6), 90))
        assert not any(found(client, old["id"]).values())
        assert len(found(client, survivor["id"])["Observation?patient"]) == len(under_old["Observation?patient"]) + 12
        assert search(client, "Patient?identifier=MRN2999")[0]["active"] is False
    finally:
        messages.close()


def test_merge_without_repointing_links_only(store: Store, client: Any) -> None:
    """``repoint_on_merge: false``: the Patients are linked as above and nothing else is rewritten;
    a client follows the link from the results' subject to the survivor (FHIR R4 Patient.link)."""
    import asyncio

    messages = open_messages(store)
    try:
        asyncio.run(asyncio.wait_for(deliver(messages, store, [MERGED_LAB], 1, repoint_on_merge=False), 90))
        old = search(client, "Patient?identifier=MRN2999")[0]
        before = referencing(store, old["id"])
        asyncio.run(asyncio.wait_for(deliver(messages, store, [sample("adt_a40.hl7")], 2, repoint_on_merge=False), 90))
        survivor = search(client, "Patient?identifier=MRN2002")[0]
        assert search(client, "Patient?identifier=MRN2999")[0]["active"] is False
        assert [p["id"] for p in search(client, f"Patient?link=Patient/{old['id']}")] == [survivor["id"]]
        assert len(search(client, f"Observation?patient=Patient/{old['id']}")) == 12
        assert referencing(store, old["id"]) == before
    finally:
        messages.close()

"""Re-pointing references after a patient merge (fhir/store/merge.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.errors import InvalidResource, Issue
from ehrgate.fhir.jsonio import loads
from ehrgate.fhir.store.merge import repoint_references
from ehrgate.fhir.store.service import Store

OLD, NEW = "Patient/m1", "Patient/s1"
CODE = {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}


def observation(rid: str, subject: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final", "code": CODE,
            "subject": {"reference": subject}, **more}


RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "s1", "link": [{"other": {"reference": OLD}, "type": "replaces"}]},
    {"resourceType": "Patient", "id": "m1", "active": False,
     "link": [{"other": {"reference": NEW}, "type": "replaced-by"}]},
    {"resourceType": "Patient", "id": "other"},
    # subject and performer are search parameters; the extension and the contained resource are not
    observation("o1", OLD, performer=[{"reference": OLD}],
                extension=[{"url": "urn:test:about", "valueReference": {"reference": OLD}}],
                contained=[{"resourceType": "Basic", "id": "b", "code": {"text": "x"}, "subject": {"reference": OLD}}]),
    {"resourceType": "Coverage", "id": "c1", "status": "active", "beneficiary": {"reference": OLD},
     "subscriber": {"reference": OLD}, "payor": [{"reference": OLD}]},
    {"resourceType": "Encounter", "id": "e1", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
     "subject": {"reference": OLD}},
    observation("o-other", "Patient/other"),
    observation("o-version", OLD + "/_history/1"),  # names that version on purpose
    observation("o-absolute", "https://elsewhere.example/fhir/" + OLD),  # may be another server's
    observation("o-deleted", OLD),
    {"resourceType": "Provenance", "id": "p1", "target": [{"reference": OLD}, {"reference": "Observation/o1"}],
     "recorded": "2024-06-01T08:00:00+00:00", "agent": [{"who": {"display": "MPI"}}]},
]


@pytest.fixture
def merged(store: Store) -> Store:
    with store.writer() as w:
        for resource in RESOURCES:
            w.update(resource["resourceType"], resource["id"], resource)
        w.delete("Observation", "o-deleted")
    return store


def read(store: Store, ref: str) -> tuple[int, dict[str, Any]]:
    res_type, res_id = ref.split("/")
    stored = store.read(res_type, res_id)
    assert stored.raw is not None
    return stored.version, loads(stored.raw)


def found(store: Store, res_type: str, criteria: str) -> list[str]:
    with store.writer() as w:
        return sorted(rid for _pk, rid in w.find(res_type, criteria))


def test_every_reference_follows_the_survivor_in_a_new_version(merged: Store) -> None:
    with merged.writer() as w:
        written = repoint_references(w, "m1", "s1")
    assert [r.stored.location for r in written] == [
        "Coverage/c1/_history/2", "Encounter/e1/_history/2", "Observation/o1/_history/2"]
    _, obs = read(merged, "Observation/o1")
    places = (obs["subject"], obs["performer"][0], obs["extension"][0]["valueReference"], obs["contained"][0]["subject"])
    assert places == ({"reference": NEW},) * 4
    _, cov = read(merged, "Coverage/c1")
    assert (cov["beneficiary"], cov["subscriber"], cov["payor"]) == ({"reference": NEW}, {"reference": NEW},
                                                                     [{"reference": NEW}])
    old = loads(merged.vread("Observation", "o1", 1).raw or b"{}")
    assert old["subject"] == {"reference": OLD}  # the history keeps what was
    # re-indexed: found under the survivor, no longer under the merged Patient (but for what is kept)
    assert found(merged, "Observation", "patient=Patient/s1") == ["o1"]
    assert found(merged, "Observation", "patient=Patient/m1") == ["o-absolute", "o-version"]
    assert found(merged, "Coverage", "beneficiary=Patient/s1") == ["c1"]
    assert found(merged, "Encounter", "patient=Patient/m1") == []


def test_links_history_and_other_patients_are_left_alone(merged: Store) -> None:
    with merged.writer() as w:
        repoint_references(w, "m1", "s1")
    assert read(merged, "Patient/s1") == (1, RESOURCES[0] | {"meta": read(merged, "Patient/s1")[1]["meta"]})
    assert read(merged, "Patient/m1")[0] == 1
    version, provenance = read(merged, "Provenance/p1")
    assert version == 1 and provenance["target"][0] == {"reference": OLD}
    for ref in ("Observation/o-other", "Observation/o-version", "Observation/o-absolute"):
        assert read(merged, ref)[0] == 1
    with merged.reader() as conn:
        deleted = conn.exec_driver_sql("SELECT version, deleted FROM resource WHERE res_id = 'o-deleted'").one()
    assert tuple(deleted) == (2, True)


def test_running_it_again_writes_nothing(merged: Store) -> None:
    with merged.writer() as w:
        assert len(repoint_references(w, "m1", "s1")) == 3
    with merged.writer() as w:
        assert repoint_references(w, "m1", "s1") == []
    assert read(merged, "Observation/o1")[0] == 2


def test_writes_of_the_same_session_are_found(store: Store) -> None:
    with store.writer() as w:
        w.update("Observation", "o1", observation("o1", OLD))
        assert [r.stored.location for r in repoint_references(w, "m1", "s1")] == ["Observation/o1/_history/2"]


def test_a_refused_rewrite_fails_the_whole_unit_and_names_the_resource(merged: Store) -> None:
    def refuse_encounters_of_s1(resource: dict[str, Any]) -> list[Issue]:
        if resource["resourceType"] == "Encounter" and resource.get("subject") == {"reference": NEW}:
            return [Issue("error", "business-rule", "no encounters for s1 (test)")]
        return []

    strict = Store(merged.engine, validate=refuse_encounters_of_s1)
    with strict.writer() as w:
        with pytest.raises(InvalidResource) as info, w.savepoint():
            repoint_references(w, "m1", "s1")
    assert info.value.diagnostics.startswith("Re-pointing Encounter/e1 from Patient/m1 to Patient/s1: ")
    assert read(merged, "Coverage/c1")[0] == 1  # written before the failure, rolled back with it

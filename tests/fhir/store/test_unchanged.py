"""An update that changes nothing makes no new version (both engines): no history entry, no index
rows, no store event - by the single write path, the prepared (load) path and a transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ehrgate.fhir.bundles import process_transaction
from ehrgate.fhir.store.prepare import PreparedBatch
from ehrgate.fhir.store.service import Store
from ehrgate.fhir.validation import known_resource_types


def _patient(res_id: str, family: str = "Quill", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": res_id, "identifier": [{"system": "urn:mrn", "value": f"M-{res_id}"}],
            "name": [{"family": family}], **extra}


def _counts(store: Store, res_id: str) -> tuple[int, int, int]:
    with store.reader() as conn:
        versions = conn.execute(sa.text("SELECT count(*) FROM resource_version WHERE res_id = :i"), {"i": res_id}).scalar_one()
        tokens = conn.execute(sa.text("SELECT count(*) FROM idx_token t JOIN resource r ON r.pk = t.res_pk "
                                      "WHERE r.res_id = :i AND t.param = 'identifier'"), {"i": res_id}).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM outbox WHERE res_id = :i"), {"i": res_id}).scalar_one()
    return versions, tokens, events


def test_the_same_content_keeps_the_current_version(store: Store) -> None:
    first = store.update("Patient", "u1", _patient("u1", meta={"source": "urn:feed#1"}))
    again = store.update("Patient", "u1", _patient("u1", meta={"source": "urn:feed#1"}))
    assert (first.status, first.outcome, first.stored.version) == (201, "created", 1)
    assert (again.status, again.outcome, again.stored.version) == (200, "unchanged", 1)
    assert again.stored.last_updated == first.stored.last_updated
    assert again.stored.raw == store.read("Patient", "u1").raw
    assert _counts(store, "u1") == (1, 1, 1)


def test_a_client_that_puts_back_what_it_read_changes_nothing(store: Store) -> None:
    import json

    store.update("Patient", "u2", _patient("u2"))
    read_back = json.loads(store.read("Patient", "u2").raw)  # with the server's meta.versionId and lastUpdated
    assert store.update("Patient", "u2", read_back).outcome == "unchanged"
    assert _counts(store, "u2") == (1, 1, 1)


def test_any_difference_makes_a_version(store: Store) -> None:
    store.update("Patient", "u3", _patient("u3", meta={"source": "urn:feed#1"}))
    changed = store.update("Patient", "u3", _patient("u3", "Quillon", meta={"source": "urn:feed#1"}))
    other_source = store.update("Patient", "u3", _patient("u3", "Quillon", meta={"source": "urn:feed#2"}))
    assert [changed.stored.version, other_source.stored.version] == [2, 3]
    assert _counts(store, "u3") == (3, 1, 3)


def test_a_deleted_resource_written_again_is_restored(store: Store) -> None:
    store.update("Patient", "u4", _patient("u4"))
    store.delete("Patient", "u4")
    back = store.update("Patient", "u4", _patient("u4"))
    assert (back.status, back.stored.version) == (201, 3)  # not "unchanged": version 2 is the deletion


def test_prepared_writes_skip_unchanged_entries_and_their_rows(store: Store) -> None:
    def batch() -> PreparedBatch:
        b = PreparedBatch()
        b.add("PUT", _patient("p1"), "p1", store.validate, store.extract)
        b.add("PUT", _patient("p2"), "p2", store.validate, store.extract)
        return b

    with store.writer() as w:
        w.write_prepared(batch())
    with store.writer() as w:
        again = w.write_prepared(batch())
    assert [r.outcome for r in again] == ["unchanged", "unchanged"]
    assert _counts(store, "p1") == (1, 1, 1) and _counts(store, "p2") == (1, 1, 1)
    changed = PreparedBatch()
    changed.add("PUT", _patient("p1", "Other"), "p1", store.validate, store.extract)
    changed.add("PUT", _patient("p2"), "p2", store.validate, store.extract)
    with store.writer() as w:
        results = w.write_prepared(changed)
    assert [r.outcome for r in results] == ["updated", "unchanged"]
    assert _counts(store, "p1") == (2, 1, 2) and _counts(store, "p2") == (1, 1, 1)


def test_a_replayed_transaction_makes_no_versions(store: Store) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7c1f2a44-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "TX-1"}],
                      "name": [{"family": "Replay"}]},
         "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|TX-1"}},
        {"resource": {"resourceType": "Observation", "id": "obs-tx-1", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:7c1f2a44-0000-4000-8000-000000000001"}},
         "request": {"method": "PUT", "url": "Observation/obs-tx-1"}},
    ]}
    first = process_transaction(store, bundle, known_resource_types())
    second = process_transaction(store, bundle, known_resource_types())
    assert [r.status for r in first] == [201, 201]
    assert [r.status for r in second] == [200, 200]
    assert [r.etag for r in second] == [r.etag for r in first] == ['W/"1"', 'W/"1"']
    assert _counts(store, "obs-tx-1")[0] == 1

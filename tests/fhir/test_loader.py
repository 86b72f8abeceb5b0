"""The bulk loader (fhir/loader.py + loadprep.py) on both engines: prepared writes store exactly
what the single-write path stores, a failed unit loses nothing else, a crash leaves no partial
Bundle, and the worker pool gives the same result as loading inline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ehrgate.fhir.loader import load_paths
from ehrgate.fhir.search.extract import extract_index
from ehrgate.fhir.store.service import Store, WriteSession
from ehrgate.fhir.validation import known_resource_types
from tests.conftest import corpus_dir

KNOWN = frozenset(known_resource_types())


def _tx(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _post(resource: dict[str, Any], full: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full:
        entry["fullUrl"] = full
    return entry


def _patient_bundle(n: int) -> dict[str, Any]:
    full = f"urn:uuid:00000000-0000-0000-0000-{n:012d}"
    return _tx(
        _post({"resourceType": "Patient", "name": [{"family": f"Fam{n}"}], "gender": "female"}, full),
        _post({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": full}, "valueQuantity": {"value": 1.50, "unit": "kg"}}),
    )


def _write(directory: Path, name: str, value: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    text = json.dumps(value) if not isinstance(value, str) else value
    path.write_text(text.replace("1.5,", "1.50,"))
    return path


def _scalar(store: Store, sql: str) -> Any:
    with store.reader() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def _consistent(store: Store) -> None:
    """Every resource has its current version; no index, compartment or outbox row is orphaned."""
    assert _scalar(store, "SELECT count(*) FROM resource r LEFT JOIN resource_version v "
                          "ON v.res_pk = r.pk AND v.version = r.version WHERE v.vpk IS NULL") == 0
    for table in ("idx_token", "idx_reference", "idx_string", "idx_date", "idx_quantity", "compartment"):
        assert _scalar(store, f"SELECT count(*) FROM {table} i LEFT JOIN resource r ON r.pk = i.res_pk "
                              "WHERE r.pk IS NULL") == 0, table
    assert _scalar(store, "SELECT count(*) FROM outbox") == _scalar(store, "SELECT count(*) FROM resource_version")


def test_transaction_bundles_load_with_references_rewritten(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "in"
    for n in range(3):
        _write(src, f"p{n}.json", _patient_bundle(n))
    summary = load_paths(store, [src], KNOWN, workers=0)
    assert (summary.resources, summary.bundles, summary.errors) == (6, 3, [])
    with store.reader() as conn:
        rows = conn.execute(sa.text(
            "SELECT r.target_type, r.target_id, p.res_id FROM idx_reference r JOIN resource o ON o.pk = r.res_pk "
            "LEFT JOIN resource p ON p.res_type = r.target_type AND p.res_id = r.target_id "
            "WHERE o.res_type = 'Observation' AND r.param = 'subject'")).all()
        raw = conn.execute(sa.text("SELECT raw FROM resource_version WHERE res_type = 'Observation'")).scalars().first()
        patients_in_compartments = conn.execute(sa.text("SELECT count(DISTINCT patient_id) FROM compartment")).scalar_one()
    assert len(rows) == 3 and all(t == "Patient" and rid == pid for t, rid, pid in rows)
    stored = json.loads(bytes(raw))
    assert list(stored)[:3] == ["resourceType", "id", "meta"] and stored["meta"]["versionId"] == "1"
    assert b'"value":1.50' in bytes(raw)  # the client's decimal, as written
    assert patients_in_compartments == 3
    _consistent(store)


def test_prepared_rows_equal_what_extraction_gives(store: Store, tmp_path: Path) -> None:
    """NDJSON upserts: the index rows in the database are exactly extract_index's (minus the two
    served from the resource table), as a single write stores them; the JSON matches a single write's."""
    resource = {"resourceType": "Patient", "id": "pt-1", "meta": {"tag": [{"system": "urn:t", "code": "x"}]},
                "identifier": [{"system": "urn:mrn", "value": "M1"}], "name": [{"family": "Ünï", "given": ["A"]}],
                "birthDate": "1970-01-02", "gender": "male", "generalPractitioner": [{"reference": "Practitioner/9"}]}
    _write(tmp_path, "Patient.ndjson", json.dumps(resource) + "\n")
    assert load_paths(store, [tmp_path], KNOWN, workers=0).errors == []
    with store.reader() as conn:
        tokens = sorted(tuple(r) for r in conn.execute(sa.text("SELECT param, system, code FROM idx_token")))
        strings = sorted(tuple(r) for r in conn.execute(sa.text("SELECT param, norm, exact FROM idx_string")))
        refs = sorted(tuple(r) for r in conn.execute(sa.text("SELECT param, target_type, target_id FROM idx_reference")))
        loaded = json.loads(bytes(conn.execute(sa.text("SELECT raw FROM resource_version")).scalar_one()))
    rows = extract_index(resource)
    skip = {"_id", "_lastUpdated"}
    assert tokens == sorted((r.param, r.system, r.code) for r in rows.tokens if r.param not in skip)
    assert strings == sorted((r.param, r.norm, r.exact) for r in rows.strings)
    assert refs == sorted((r.param, r.target_type, r.target_id) for r in rows.references)
    single = store.update("Patient", "pt-2", {**resource, "id": "pt-2"})
    expected = json.loads(single.stored.raw or b"{}")
    assert {**loaded, "id": "pt-2", "meta": {}} == {**expected, "meta": {}}
    assert loaded["meta"]["tag"] == resource["meta"]["tag"] and loaded["meta"]["versionId"] == "1"


def test_same_id_twice_in_one_file_keeps_the_last_versions_rows(store: Store, tmp_path: Path) -> None:
    lines = [{"resourceType": "Patient", "id": "twice", "gender": "male"},
             {"resourceType": "Patient", "id": "twice", "gender": "female"}]
    _write(tmp_path, "Patient.ndjson", "\n".join(json.dumps(x) for x in lines) + "\n")
    summary = load_paths(store, [tmp_path], KNOWN, workers=0)
    assert summary.resources == 2 and not summary.errors
    with store.reader() as conn:
        genders = conn.execute(sa.text("SELECT code FROM idx_token WHERE param = 'gender'")).scalars().all()
    assert genders == ["female"]
    assert _scalar(store, "SELECT version FROM resource WHERE res_id = 'twice'") == 2
    _consistent(store)


def _ids(*values: str) -> Iterator[str]:
    yield from values


def test_a_bundle_that_fails_mid_write_loses_nothing_else_and_is_reported(engine_name: str, store: Store,
                                                                          tmp_path: Path) -> None:
    """Three transactions in one database transaction; the second fails on its second entry while
    writing (its id is taken). It leaves nothing behind; the first and third are stored."""
    ids = _ids("p1", "p2", "p1", "p3")
    failing = Store(store.engine, new_id=lambda: next(ids))
    src = tmp_path / "in"
    _write(src, "a.json", _tx(_post({"resourceType": "Patient", "gender": "male"})))
    _write(src, "b.json", _tx(_post({"resourceType": "Patient", "gender": "female"}),
                              _post({"resourceType": "Patient", "gender": "other"})))
    _write(src, "c.json", _tx(_post({"resourceType": "Patient", "gender": "unknown"})))
    summary = load_paths(failing, [src], KNOWN, workers=0)
    assert summary.resources == 2 and summary.bundles == 2
    assert len(summary.errors) == 1 and "b.json" in summary.errors[0] and "exists" in summary.errors[0]
    with store.reader() as conn:
        stored = sorted(conn.execute(sa.text("SELECT res_id FROM resource")).scalars())
        genders = sorted(conn.execute(sa.text("SELECT code FROM idx_token WHERE param = 'gender'")).scalars())
    assert stored == ["p1", "p3"]
    assert genders == ["male", "unknown"]
    _consistent(store)


def test_an_invalid_resource_rejects_its_bundle_and_is_named(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _write(src, "a.json", _patient_bundle(1))
    bad = _patient_bundle(2)
    bad["entry"][1]["resource"]["status"] = "banana"
    _write(src, "b.json", bad)
    _write(src, "c.ndjson", '{"resourceType":"Patient","id":"n1"}\n{"resourceType":"Patient","id":"n2","gender":"x"}\n')
    summary = load_paths(store, [src], KNOWN, workers=0)
    assert summary.resources == 3
    assert any("b.json" in e and "Bundle.entry[1]" in e and "status" in e for e in summary.errors), summary.errors
    assert any("c.ndjson line 2" in e and "gender" in e for e in summary.errors), summary.errors
    assert _scalar(store, "SELECT count(*) FROM resource") == 3
    _consistent(store)


def test_a_crash_mid_load_keeps_committed_groups_and_no_partial_bundle(store: Store, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The write of the third bundle fails after its rows went in (an unexpected error, as a lost
    disk or a kill would be): the groups committed before stay, nothing of the group in progress does."""
    src = tmp_path / "in"
    for n in range(4):
        _write(src, f"p{n}.json", _patient_bundle(n))
    calls = {"n": 0}

    def crash_after_rows(self: WriteSession, batch: Any) -> Any:
        result = real_write(self, batch)
        calls["n"] += 1
        if calls["n"] == 3:
            self.flush()  # rows of this bundle are in the database now
            raise RuntimeError("simulated crash")
        return result

    real_write = WriteSession.write_prepared
    monkeypatch.setattr(WriteSession, "write_prepared", crash_after_rows)
    with pytest.raises(RuntimeError, match="simulated crash"):
        load_paths(store, [src], KNOWN, workers=0, group=4)  # 2 bundles per group
    monkeypatch.undo()
    assert _scalar(store, "SELECT count(*) FROM resource") == 4  # the first group, both bundles
    assert _scalar(store, "SELECT count(*) FROM idx_reference WHERE param = 'subject'") == 2
    _consistent(store)


def test_worker_pool_loads_what_inline_loading_does(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "in"
    for n in range(6):
        _write(src, f"p{n}.json", _patient_bundle(n))
    _write(src, "Practitioner.ndjson", "".join(json.dumps({"resourceType": "Practitioner", "id": f"pr{i}"}) + "\n"
                                               for i in range(5)) + "{oops\n")
    _write(src, "batch.json", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Organization", "id": "o1", "name": "Org"},
         "request": {"method": "PUT", "url": "Organization/o1"}}]})
    _write(src, "cond.json", _tx({"resource": {"resourceType": "Organization", "identifier": [{"value": "X"}]},
                                  "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=X"}}))
    pooled = load_paths(store, [src], KNOWN, workers=1)
    assert pooled.errors and all("Practitioner.ndjson line 6" in e for e in pooled.errors), pooled.errors
    assert pooled.resources == 12 + 5 + 1 + 1 and pooled.bundles == 8
    with store.reader() as conn:
        counts = dict(conn.execute(sa.text("SELECT res_type, count(*) FROM resource GROUP BY res_type")).all())
    assert counts == {"Patient": 6, "Observation": 6, "Practitioner": 5, "Organization": 2}
    # the same input again, inline: the same summary (ids are new, PUTs make version 2)
    inline = load_paths(store, [src], KNOWN, workers=0)
    assert (inline.resources, inline.bundles, inline.errors) == (pooled.resources, pooled.bundles, pooled.errors)
    assert _scalar(store, "SELECT count(*) FROM resource WHERE res_type = 'Organization'") == 2  # matched, not doubled
    _consistent(store)


def test_conditional_references_resolve_against_earlier_files(store: Store, tmp_path: Path) -> None:
    """A transaction whose resources point at ``Patient?identifier=…`` takes the database-planned
    path: resolved when exactly one match was loaded before it, rejected (and named) otherwise."""
    src = tmp_path / "in"
    _write(src, "1.ndjson", json.dumps({"resourceType": "Patient", "id": "mrn7",
                                        "identifier": [{"system": "urn:mrn", "value": "7"}]}) + "\n")
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
           "subject": {"reference": "Patient?identifier=urn:mrn|7"}}
    _write(src, "2.json", _tx(_post(obs)))
    _write(src, "3.json", _tx(_post({**obs, "subject": {"reference": "Patient?identifier=urn:mrn|8"}})))
    summary = load_paths(store, [src], KNOWN, workers=0)
    assert summary.resources == 2
    assert len(summary.errors) == 1 and "3.json" in summary.errors[0] and "matches no resources" in summary.errors[0]
    assert _scalar(store, "SELECT target_id FROM idx_reference WHERE param = 'subject'") == "mrn7"
    _consistent(store)


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value) + "\n"


@pytest.mark.parametrize("workers", [0, 1])
def test_ndjson_conditional_references_resolve_even_to_resources_loaded_later(store: Store, tmp_path: Path,
                                                                             workers: int) -> None:
    """Synthea's bulk NDJSON points at ``Practitioner?identifier=…``: each such reference becomes
    the one matching resource's ``Type/id``, whether its target was loaded before (Practitioner.ndjson
    is read first), later in the same file, or later in the input; no match or several is reported
    and the rest still loads."""
    src = tmp_path / "in"
    npi = "http://hl7.org/fhir/sid/us-npi"

    def doc(value: str, **extra: Any) -> dict[str, Any]:
        return {"resourceType": "Practitioner", "identifier": [{"system": npi, "value": value}], **extra}

    def enc(eid: str, ref: str) -> dict[str, Any]:
        return {"resourceType": "Encounter", "id": eid, "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "participant": [{"individual": {"reference": ref, "display": "Dr"}}]}

    _write(src, "Practitioner.000.ndjson", _line(doc("1", id="pr1")) + _line(doc("dup")) + _line(doc("dup")))
    _write(src, "Encounter.000.ndjson", "".join([
        _line(enc("e1", f"Practitioner?identifier={npi}|1")),       # loaded before (ranked file order)
        _line(enc("e2", f"Practitioner?identifier={npi}|2")),       # only in zz-late.ndjson, later
        _line(doc("3", id="pr3")),                                   # earlier in this very file ...
        _line(enc("e3", f"Practitioner?identifier={npi}|3")),       # ... than this reference
        _line(enc("e4", f"Practitioner?identifier={npi}|dup")),     # two matches
        _line(enc("e5", f"Practitioner?identifier={npi}|nobody")),  # no match, ever
        _line(enc("e6", f"Practitioner?identifier={npi}|1")),       # resolved once, reused
    ]))
    _write(src, "zz-late.ndjson", _line(doc("2", id="pr2")))
    _write(src, "coll.json", {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": enc("e7", f"Practitioner?identifier={npi}|3")}]})
    summary = load_paths(store, [src], KNOWN, workers=workers)
    errors = sorted(summary.errors)
    assert len(errors) == 2, errors
    assert "line 5" in errors[0] and "matches 2 resources" in errors[0]
    assert "line 6" in errors[1] and "matches no resources" in errors[1] and "|nobody" in errors[1]
    with store.reader() as conn:
        refs = dict(conn.execute(sa.text(
            "SELECT r.res_id, i.target_type || '/' || i.target_id FROM idx_reference i JOIN resource r ON r.pk = i.res_pk "
            "WHERE r.res_type = 'Encounter' AND i.param = 'participant'")).all())
        raw = conn.execute(sa.text("SELECT v.raw FROM resource_version v WHERE v.res_id = 'e2'")).scalar_one()
    assert refs == {"e1": "Practitioner/pr1", "e2": "Practitioner/pr2", "e3": "Practitioner/pr3",
                    "e6": "Practitioner/pr1", "e7": "Practitioner/pr3"}
    stored = json.loads(raw)
    assert stored["participant"][0]["individual"] == {"reference": "Practitioner/pr2", "display": "Dr"}
    assert summary.by_type == {"Practitioner": 5, "Encounter": 5}
    _consistent(store)


def test_the_corpus_bulk_ndjson_sample_loads_whole(store: Store) -> None:
    """Synthea's Bulk Data export (../shared corpus) points Encounters and PractitionerRoles at
    ``Practitioner?identifier=…`` and ``Organization?identifier=…``: every line loads, every such
    reference is stored as the ``Type/id`` of a loaded resource."""
    folder = corpus_dir("fhir", "bulk-ndjson-10-patients")
    lines = sum(1 for f in folder.glob("*.ndjson") if f.name != "log.ndjson"
                for line in f.read_text().splitlines() if line.strip())
    summary = load_paths(store, [folder], KNOWN, workers=0)
    assert summary.errors == []
    assert summary.resources == lines
    with store.reader() as conn:
        dangling = conn.execute(sa.text(
            "SELECT count(*) FROM idx_reference i LEFT JOIN resource t ON t.res_type = i.target_type "
            "AND t.res_id = i.target_id WHERE i.target_type IN ('Practitioner', 'Organization') "
            "AND t.pk IS NULL")).scalar_one()
        raws = [r[0] for r in conn.execute(sa.text("SELECT raw FROM resource_version"))]
    assert dangling == 0
    assert not any(b'"reference":"Practitioner?' in bytes(raw) for raw in raws)


@pytest.mark.parametrize("workers", [0, 1])
def test_conditional_references_are_prepared_with_placeholders_and_resolved_everywhere(
        store: Store, tmp_path: Path, workers: int) -> None:
    """A line holding conditional references is validated and indexed before its targets are known
    (in a worker), with a placeholder id in each; the writer swaps the match's id into the JSON, the
    reference index and the Patient compartment. One invalid for another reason is reported as such."""
    src = tmp_path / "in"
    _write(src, "Patient.000.ndjson", _line({"resourceType": "Patient", "id": "p9",
                                             "identifier": [{"system": "urn:mrn", "value": "9"}]}))
    obs = {"resourceType": "Observation", "id": "o9", "status": "final", "code": {"text": "t"},
           "subject": {"reference": "Patient?identifier=urn:mrn|9"}}
    _write(src, "Observation.000.ndjson", _line(obs) + _line({**obs, "id": "bad", "status": "banana"}))
    summary = load_paths(store, [src], KNOWN, workers=workers)
    assert len(summary.errors) == 1 and "line 2" in summary.errors[0] and "banana" in summary.errors[0], summary.errors
    with store.reader() as conn:
        assert conn.execute(sa.text(
            "SELECT i.target_type || '/' || i.target_id FROM idx_reference i JOIN resource r ON r.pk = i.res_pk "
            "WHERE r.res_id = 'o9' AND i.param = 'subject'")).scalar_one() == "Patient/p9"
        assert conn.execute(sa.text("SELECT c.patient_id FROM compartment c JOIN resource r ON r.pk = c.res_pk "
                                    "WHERE r.res_id = 'o9'")).scalar_one() == "p9"
        raw = bytes(conn.execute(sa.text("SELECT raw FROM resource_version WHERE res_id = 'o9'")).scalar_one())
        leftovers = sum(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {column} LIKE '%ehrgate-cond-%'"))
                        .scalar_one() for table, column in (("idx_reference", "target_id"), ("compartment", "patient_id"),
                                                            ("resource_version", "raw")))
    assert json.loads(raw)["subject"] == {"reference": "Patient/p9"}
    assert leftovers == 0
    _consistent(store)


def test_new_ids_are_written_as_creates_in_batches_and_known_ones_as_updates(store: Store, tmp_path: Path) -> None:
    """NDJSON lines with ids none of which is stored take the batched create path (version 1, PUT,
    a create event each); a batch holding one stored id goes resource by resource (version 2 for it)."""
    src = tmp_path / "in"
    _write(src, "a.ndjson", "".join(_line({"resourceType": "Patient", "id": f"n{i}"}) for i in range(5)))
    assert load_paths(store, [src], KNOWN, workers=0).resources == 5
    _write(src, "a.ndjson", _line({"resourceType": "Patient", "id": "n0", "gender": "male"}) +
           _line({"resourceType": "Patient", "id": "n5"}))
    assert load_paths(store, [src], KNOWN, workers=0).resources == 2
    with store.reader() as conn:
        versions = dict(conn.execute(sa.text("SELECT res_id, version FROM resource")).all())
        methods = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT method FROM resource_version"))}
        events = [tuple(r) for r in conn.execute(sa.text("SELECT res_id, action FROM outbox ORDER BY seq"))]
    assert versions == {"n0": 2, "n1": 1, "n2": 1, "n3": 1, "n4": 1, "n5": 1}
    assert methods == {"PUT"}
    assert events == [*((f"n{i}", "create") for i in range(5)), ("n0", "update"), ("n5", "create")]
    _consistent(store)


def test_load_sessions_keep_sqlites_statement_journal_in_memory_and_only_they(
        engine_name: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write session of a load is a ``bulk`` one: on SQLite its savepoints' statement journal
    is memory (``PRAGMA temp_store`` 2) instead of a temporary file written page by page; the
    connection goes back to the pool with the default (0), and other write sessions keep it. (A
    Bundle failing mid-write, the journal's one use: ``test_a_bundle_that_fails_mid_write…``.)"""
    seen: list[tuple[bool, int | None]] = []
    real_writer = Store.writer

    def spy(self: Store, **kwargs: Any) -> Any:
        cm = real_writer(self, **kwargs)

        class Recorded:
            def __enter__(self_inner) -> WriteSession:
                w = cm.__enter__()
                mode = w.cur.execute("PRAGMA temp_store").fetchone()[0] if engine_name == "sqlite" else None
                seen.append((bool(kwargs.get("bulk")), mode))
                return w

            def __exit__(self_inner, *exc: Any) -> Any:
                return cm.__exit__(*exc)

        return Recorded()

    monkeypatch.setattr(Store, "writer", spy)
    src = tmp_path / "in"
    for n in range(3):
        _write(src, f"p{n}.json", _patient_bundle(n))
    summary = load_paths(store, [src], KNOWN, workers=0, group=3)  # two database transactions
    assert summary.resources == 6 and not summary.errors
    with store.writer():
        pass
    assert len(seen) == 3 and all(bulk for bulk, _ in seen[:-1]) and not seen[-1][0]
    if engine_name == "sqlite":
        assert {mode for _, mode in seen[:-1]} == {2}  # MEMORY
        assert seen[-1][1] == 0  # the pooled connection is back to the default
    _consistent(store)


def test_a_load_collects_garbage_less_often_and_restores_the_thresholds(store: Store, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The youngest generation's threshold is raised while a load runs (gctuning.py: ~11% less CPU
    a resource) and is back as it was afterwards, also when the load fails."""
    import gc

    import ehrgate.fhir.loader as loader
    from ehrgate.gctuning import GEN0_THRESHOLD

    src = tmp_path / "in"
    _write(src, "p0.json", _patient_bundle(0))
    seen: list[int] = []
    apply = loader._Writer.apply

    def spy(self: Any, step: Any) -> None:
        seen.append(gc.get_threshold()[0])
        apply(self, step)

    monkeypatch.setattr(loader._Writer, "apply", spy)
    before = gc.get_threshold()
    gc.set_threshold(500, *before[1:])
    try:
        assert load_paths(store, [src], KNOWN, workers=0).errors == []
        assert seen and set(seen) == {GEN0_THRESHOLD}
        assert gc.get_threshold()[0] == 500

        def boom(self: Any, step: Any) -> None:
            raise RuntimeError("disk gone")

        monkeypatch.setattr(loader._Writer, "apply", boom)
        with pytest.raises(RuntimeError):
            load_paths(store, [src], KNOWN, workers=0)
        assert gc.get_threshold()[0] == 500
    finally:
        gc.set_threshold(*before)


def test_a_higher_threshold_set_by_the_process_is_kept() -> None:
    import gc

    from ehrgate.gctuning import GEN0_THRESHOLD, fewer_collections

    before = gc.get_threshold()
    try:
        gc.set_threshold(GEN0_THRESHOLD * 5, *before[1:])
        with fewer_collections():
            assert gc.get_threshold()[0] == GEN0_THRESHOLD * 5
        assert gc.get_threshold() == (GEN0_THRESHOLD * 5, *before[1:])
    finally:
        gc.set_threshold(*before)

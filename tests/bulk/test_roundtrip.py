"""Round trip: load Synthea bundles (or the synthetic demo data when the corpus is absent) → Group
export of every patient → load the NDJSON into an empty EHRGate → the same resources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from ehrgate.app import MIGRATION_DIRS
from ehrgate.fhir.loader import load_items
from ehrgate.fhir.loadfiles import iter_load_items
from ehrgate.fhir.store import schema as fs
from ehrgate.fhir.store.engine import create_engine, migrate
from ehrgate.fhir.store.service import Store
from ehrgate.fhir.validation import known_resource_types

from ..conftest import CORPUS
from .conftest import SYSTEM, Bulk

KNOWN = frozenset(known_resource_types())
SYNTHEA = CORPUS / "fhir" / "synthea-r4"


def _source_files(tmp_path: Path, kind: str = "synthea") -> list[str]:
    if kind == "synthea" and SYNTHEA.is_dir():
        files = sorted(SYNTHEA.glob("*.json"), key=lambda p: p.stat().st_size)
        shared = [p for p in files if p.name.startswith(("hospital", "practitioner"))]
        patients = [p for p in files if p not in shared][:6]
        return [str(p) for p in shared + patients]
    from ehrgate.demo.synthetic import generate_demo_bundles

    out = []
    for i, bundle in enumerate(generate_demo_bundles(patients=6, seed=3)):
        path = tmp_path / f"demo-{i}.json"
        path.write_bytes(orjson.dumps(bundle))
        out.append(str(path))
    return out


def _without_meta(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    value.pop("meta", None)
    return dict(value)


def _current(store: Store) -> dict[tuple[str, str], bytes]:
    R, V = fs.resource, fs.resource_version
    with store.reader() as conn:
        rows = conn.execute(
            sa.select(R.c.res_type, R.c.res_id, V.c.raw)
            .join(V, sa.and_(V.c.res_pk == R.c.pk, V.c.version == R.c.version))
            .where(R.c.deleted == sa.false())
        ).all()
    return {(r.res_type, r.res_id): bytes(r.raw) for r in rows}


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[Store]:
    engine = create_engine(f"sqlite:///{tmp_path / 'reload.sqlite3'}")
    migrate(engine, MIGRATION_DIRS)
    yield Store(engine)
    engine.dispose()


def _download_all(bulk: Bulk, manifest: dict[str, Any], into: Path) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    paths = []
    for entry in manifest["output"]:
        r = bulk.client.get(entry["url"].removeprefix("http://testserver"), headers={"Authorization": "Bearer system"})
        assert r.status_code == 200
        path = into / entry["url"].rsplit("/", 1)[1]
        path.write_bytes(r.content)
        paths.append(path)
    return paths


@pytest.mark.corpus
@pytest.mark.parametrize("kind", ["synthea", "synthetic"])
def test_group_export_round_trip(make_bulk: Any, empty_store: Store, tmp_path: Path, kind: str) -> None:
    """Synthea when ../shared/corpus is present (else the synthetic generator), and the synthetic data."""
    bulk = make_bulk(bulk_file_lines=500)
    bulk.use({"system": SYSTEM})
    summary = load_items(bulk.store, iter_load_items(_source_files(tmp_path, kind)), KNOWN)
    assert not summary.errors, summary.errors[:3]
    source = _current(bulk.store)
    patients = sorted(i for t, i in source if t == "Patient")
    assert len(patients) >= 6
    group = {"resourceType": "Group", "id": "everyone", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patients]}
    bulk.store.update("Group", "everyone", group)
    source = _current(bulk.store)

    manifest = bulk.export("/fhir/Group/everyone/$export", "system")
    files = _download_all(bulk, manifest, tmp_path / "export")

    # What a Group export must hold: every resource in the members' compartments.
    with bulk.store.reader() as conn:
        C, R = fs.compartment, fs.resource
        expected = {(r.res_type, r.res_id) for r in conn.execute(
            sa.select(R.c.res_type, R.c.res_id).where(
                R.c.deleted == sa.false(),
                R.c.pk.in_(sa.select(C.c.res_pk).where(C.c.patient_id.in_(patients))),
            )
        )}
    exported: dict[tuple[str, str], bytes] = {}
    for path in files:
        for line in path.read_bytes().splitlines():
            value = orjson.loads(line)
            key = (value["resourceType"], value["id"])
            assert key not in exported, f"{key} exported twice"
            exported[key] = line
    assert set(exported) == expected
    assert len(exported) > 200
    for key, line in exported.items():
        assert line == source[key], f"{key}: the export is not the stored JSON"

    reload = load_items(empty_store, iter_load_items([str(p) for p in files]), KNOWN)
    assert not reload.errors, reload.errors[:3]
    reloaded = _current(empty_store)
    assert set(reloaded) == set(exported)
    for key, raw in reloaded.items():
        assert _without_meta(raw) == _without_meta(exported[key]), key


@pytest.mark.corpus
def test_system_export_round_trip_keeps_every_resource(make_bulk: Any, empty_store: Store, tmp_path: Path) -> None:
    bulk = make_bulk(bulk_file_lines=1000)
    bulk.use({"system": SYSTEM})
    load_items(bulk.store, iter_load_items(_source_files(tmp_path)[:4]), KNOWN)
    source = _current(bulk.store)
    files = _download_all(bulk, bulk.export("/fhir/$export", "system"), tmp_path / "export")
    reload = load_items(empty_store, iter_load_items([str(p) for p in files]), KNOWN)
    assert not reload.errors
    reloaded = _current(empty_store)
    assert set(reloaded) == set(source)
    assert all(_without_meta(reloaded[k]) == _without_meta(v) for k, v in source.items())

"""The store's write path on both engines: migrations, concurrency, atomicity, outbox."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ehrgate.fhir.errors import InvalidResource
from ehrgate.fhir.store.schema import metadata
from ehrgate.fhir.store.service import Store


def _patient(mrn: str = "C-1") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]}


def test_migrations_match_the_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Other packages' tables (engine, smart, bulk) live in the same database: not ours to compare.
    ours = set(metadata.tables)

    def table_of(item: object) -> str | None:
        op = item[0] if isinstance(item, tuple) else None
        obj = item[1] if isinstance(item, tuple) and len(item) > 1 else None
        if op in ("remove_table", "add_table"):
            return getattr(obj, "name", None)
        if op in ("remove_index", "add_index"):
            return getattr(getattr(obj, "table", None), "name", None)
        return None

    diff = [d for d in diff if table_of(d) is None or table_of(d) in ours]
    assert diff == []


def test_migrate_is_idempotent(store: Store) -> None:
    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.fhir.store.engine import current_revisions, migrate

    before = current_revisions(store.engine)
    migrate(store.engine, MIGRATION_DIRS)
    assert "0001" in before or before  # the FHIR chain is applied
    assert current_revisions(store.engine) == before


def test_migration_heads_are_alembics_heads() -> None:
    """The heads read from the files' text (so that a database already at them skips alembic) are
    the ones alembic computes from the same files."""
    from alembic.script import ScriptDirectory

    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.fhir.store.engine import _alembic_config, migration_heads

    script = ScriptDirectory.from_config(_alembic_config(None, MIGRATION_DIRS))  # type: ignore[arg-type]
    assert migration_heads(MIGRATION_DIRS) == set(script.get_heads())
    assert len(migration_heads(MIGRATION_DIRS)) == 1 + len(MIGRATION_DIRS)  # one chain per package


def test_a_database_at_its_heads_is_opened_without_alembic(store: Store) -> None:
    """``migrate`` at every start: a current database needs no alembic (its import and script
    directory cost ~0.3-0.5 s of every CLI command); one stamped otherwise is not "at heads"."""
    import subprocess
    import sys

    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.fhir.store.engine import at_heads

    assert at_heads(store.engine, MIGRATION_DIRS)
    url = store.engine.url.render_as_string(hide_password=False)
    code = ("import sys\nfrom ehrgate.database import MIGRATION_DIRS\n"
            "from ehrgate.fhir.store.engine import create_engine, migrate\n"
            f"migrate(create_engine({url!r}), MIGRATION_DIRS)\n"
            "assert 'alembic' not in sys.modules, 'alembic was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with store.engine.begin() as conn:
        old = conn.exec_driver_sql("SELECT version_num FROM alembic_version WHERE version_num = '0002'").scalar()
        assert old == "0002"
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001' WHERE version_num = '0002'")
    try:
        assert not at_heads(store.engine, MIGRATION_DIRS)
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0002' WHERE version_num = '0001'")
    assert at_heads(store.engine, MIGRATION_DIRS)


def test_a_new_database_is_not_at_heads(tmp_path: Any) -> None:
    from ehrgate.app import MIGRATION_DIRS
    from ehrgate.fhir.store.engine import at_heads, create_engine, migrate

    engine = create_engine(f"sqlite:///{tmp_path / 'new.sqlite3'}")
    try:
        assert not at_heads(engine, MIGRATION_DIRS)
        migrate(engine, MIGRATION_DIRS)
        assert at_heads(engine, MIGRATION_DIRS)
    finally:
        engine.dispose()


def test_concurrent_conditional_creates_yield_one_resource(store: Store) -> None:
    barrier = threading.Barrier(6)
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(store.create("Patient", _patient("RACE-1"), if_none_exist="identifier=urn:mrn|RACE-1"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert not errors, errors
    assert len({r.stored.res_id for r in results}) == 1
    assert sorted(r.status for r in results) == [200, 200, 200, 200, 200, 201]
    with store.reader() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM resource WHERE res_type = 'Patient'")).scalar_one()
    assert n == 1


def test_concurrent_updates_make_distinct_versions(store: Store) -> None:
    created = store.create("Patient", _patient())
    rid = created.stored.res_id
    barrier = threading.Barrier(4)
    versions: list[int] = []

    def worker(n: int) -> None:
        barrier.wait(timeout=10)
        for i in range(5):  # each update different: one that changes nothing makes no version
            body = {**_patient(), "id": rid, "name": [{"family": f"W{n}-{i}"}]}
            versions.append(store.update("Patient", rid, body).stored.version)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert sorted(versions) == list(range(2, 22))


def test_failed_write_leaves_nothing(store: Store) -> None:
    with pytest.raises(InvalidResource):
        with store.writer() as w:
            w.create("Patient", _patient("OK-1"))
            w.create("Patient", {"resourceType": "Patient", "gender": "banana"})
    with store.reader() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM resource")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM idx_token")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one() == 0


def test_every_write_appends_an_outbox_event_and_index_rows(store: Store) -> None:
    r = store.create("Patient", _patient("OB-1"))
    store.update("Patient", r.stored.res_id, {**_patient("OB-2"), "id": r.stored.res_id})
    store.delete("Patient", r.stored.res_id)
    with store.reader() as conn:
        actions = [row.action for row in conn.execute(sa.text("SELECT action FROM outbox ORDER BY seq"))]
        tokens = conn.execute(sa.text("SELECT count(*) FROM idx_token WHERE param = 'identifier'")).scalar_one()
    assert actions == ["create", "update", "delete"]
    assert tokens == 0  # a deleted resource leaves no index rows


def test_index_rows_follow_updates(store: Store) -> None:
    r = store.create("Patient", _patient("IX-1"))
    store.update("Patient", r.stored.res_id, {**_patient("IX-2"), "id": r.stored.res_id})
    with store.reader() as conn:
        codes = [row.code for row in conn.execute(sa.text("SELECT code FROM idx_token WHERE param = 'identifier'"))]
        comp = conn.execute(sa.text("SELECT patient_id FROM compartment")).scalars().all()
    assert codes == ["IX-2"]
    assert comp == [r.stored.res_id]


def test_long_values_are_indexed_clipped(store: Store) -> None:
    long_text = "x" * 3000
    r = store.create("Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "note"},
                                     "valueString": long_text})
    with store.reader() as conn:
        rows = conn.execute(sa.text("SELECT norm FROM idx_string WHERE param = 'value-string'")).scalars().all()
    assert r.status == 201
    assert rows and all(len(v) <= 512 for v in rows)


def test_a_transaction_takes_its_conditional_locks_in_one_global_order(store: Store) -> None:
    """PostgreSQL: a transaction Bundle takes the criteria locks of all its conditional entries
    first, sorted (type, digest), not entry by entry. Here another session holds the lock that sorts
    first; the Bundle lists the other one first. Entry by entry, the Bundle held the second lock while
    it waited for the first, so the session's next lock deadlocked (PostgreSQL failed one of them);
    sorted, the Bundle waits holding nothing and both commit."""
    from ehrgate.fhir.bundles import process_transaction
    from ehrgate.fhir.store.service import _criteria_digest
    from ehrgate.fhir.validation import known_resource_types

    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: two transactions never hold locks together")
    first, second = sorted(["identifier=urn:t|alpha", "identifier=urn:t|beta"], key=_criteria_digest)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": crit.split("|")[1]}]},
         "request": {"method": "PUT", "url": f"Patient?{crit}"}} for crit in (second, first)]}
    errors: list[BaseException] = []

    def transaction() -> None:
        try:
            process_transaction(store, bundle, frozenset(known_resource_types()))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with store.writer() as w:
        w.lock_criteria("Patient", first)
        other = threading.Thread(target=transaction)
        other.start()
        other.join(0.5)
        assert other.is_alive()  # waiting for `first`
        w.lock_criteria("Patient", second)  # entry by entry, the Bundle held this one: deadlock
    other.join(30)
    assert not errors, errors
    with store.writer() as w:
        assert len(w.find("Patient", first)) == len(w.find("Patient", second)) == 1

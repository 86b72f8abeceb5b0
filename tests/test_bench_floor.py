"""bench/sqlite_floor.py's record and replay: the floors it reports are only worth something if the
replay does the same writes as EHRGate did - every call succeeds and the same rows arrive."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def floor():  # type: ignore[no-untyped-def]
    import sqlite3.dbapi2 as dbapi2

    plain = sqlite3.connect
    sys.path.insert(0, str(BENCH))
    try:
        import sqlite_floor

        sqlite_floor.install_recorder()
        yield sqlite_floor
    finally:
        sys.path.remove(str(BENCH))
        sqlite3.connect = dbapi2.connect = plain  # type: ignore[misc]


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_replaying_the_receipts_stores_the_same_messages(floor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log, units = floor.receipts(tmp_path, count=64)
    assert units == 64
    assert any(sql == "COMMIT" or sql.startswith("COMMIT") for _, sql, _, _ in log)
    db = tmp_path / "replayed.sqlite3"
    cpu, wall, errors = floor.replay(log, db, "FULL")
    assert errors == 0
    assert cpu > 0 and wall > 0
    # the recorded batches only (the warm-up's 64 messages came before the recording)
    assert _count(db, "SELECT count(*) FROM eng_message") == 64
    assert _count(db, "SELECT count(*) FROM eng_queue") == 64
    assert _count(tmp_path / "receipts.sqlite3", "SELECT count(*) FROM eng_message") == 128


def test_replaying_the_fhir_transactions_writes_the_same_resources(floor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log, units = floor.hl7_e2e(tmp_path, count=8, per_transaction=4)
    assert (tmp_path / "e2e-4.sqlite3").exists()
    assert units == 8
    db = tmp_path / "replayed.sqlite3"
    _, _, errors = floor.replay(log, db, "NORMAL")
    assert errors == 0
    recorded = sum(len(params) if many else 1 for _, sql, params, many in log
                   if sql.startswith("INSERT INTO resource_version"))
    assert recorded >= 8 * 10  # ~20 resources a message
    assert _count(db, "SELECT count(*) FROM resource_version") == recorded
    assert _count(db, "SELECT count(*) FROM idx_token") > 0
    assert _count(db, "SELECT count(DISTINCT res_type) FROM resource") >= 5

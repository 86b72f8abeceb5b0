"""The SQLite WAL does not keep the size one large transaction gave it (``journal_size_limit``)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ehrgate.fhir.store.engine import WAL_SIZE_LIMIT, create_engine


def _write(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x BLOB)")
        conn.exec_driver_sql(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
                             "INSERT INTO t SELECT randomblob(4000) FROM n")


def test_every_connection_sets_the_limit(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar_one() == WAL_SIZE_LIMIT
    engine.dispose()


def test_a_wal_grown_by_a_big_transaction_is_cut_back_after_a_checkpoint(tmp_path: Path) -> None:
    limit = 256 * 1024
    engine = create_engine(f"sqlite:///{tmp_path / 'b.db'}", sqlite_wal_limit=limit)
    wal = tmp_path / "b.db-wal"
    with engine.connect() as reader:  # held open: the WAL file is not removed when the others close
        _write(engine, 2000)  # ~8 MB in one transaction
        grown = wal.stat().st_size
        assert grown > 4 * 1024 * 1024
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        _write(engine, 1)  # the next writer starts the WAL over and cuts the file to the limit
        assert wal.stat().st_size <= limit
        reader.exec_driver_sql("SELECT 1")
    engine.dispose()


def test_without_a_limit_the_file_keeps_its_size(tmp_path: Path) -> None:
    """The same steps with the limit off (-1, SQLite's default): the test above is not vacuous."""
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}", sqlite_wal_limit=-1)
    wal = tmp_path / "c.db-wal"
    with engine.connect():
        _write(engine, 2000)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        _write(engine, 1)
        assert wal.stat().st_size > 4 * 1024 * 1024
    engine.dispose()

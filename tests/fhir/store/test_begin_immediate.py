"""SQLite write transactions wait for the write lock in short steps (``begin_immediate``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from ehrgate.fhir.store.engine import begin_immediate, writers_waiting


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def test_a_waiting_writer_gets_the_lock_in_a_short_gap_between_another_writers_transactions(tmp_path: Path) -> None:
    """A batch writer holds the lock 60 ms at a time with 3 ms gaps. SQLite's own busy handler
    sleeps 25-100 ms between tries, so a receipt used to wait through several batches; polling
    gets it into the first gap."""
    path = tmp_path / "db.sqlite3"
    batch, receipt = _connect(path), _connect(path)
    batch.execute("CREATE TABLE t (x)")
    holding = threading.Event()
    stop = threading.Event()

    def batches() -> None:
        while not stop.is_set():
            batch.execute("BEGIN IMMEDIATE")
            batch.execute("INSERT INTO t VALUES (1)")
            holding.set()
            time.sleep(0.06)
            batch.execute("COMMIT")
            time.sleep(0.003)

    worker = threading.Thread(target=batches)
    worker.start()
    try:
        holding.wait(5)
        started = time.monotonic()
        begin_immediate(receipt)
        waited = time.monotonic() - started
        receipt.execute("INSERT INTO t VALUES (2)")
        receipt.execute("COMMIT")
    finally:
        stop.set()
        worker.join(5)
    assert waited < 0.075, f"waited {waited * 1000:.0f} ms for the write lock"
    assert receipt.execute("PRAGMA busy_timeout").fetchone()[0] == 30000  # restored


def test_it_gives_up_after_the_timeout_with_sqlites_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder, other = _connect(path), _connect(path)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(other, timeout=0.05)
    assert 0.05 <= time.monotonic() - started < 1
    assert not other.in_transaction
    assert other.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    holder.execute("ROLLBACK")
    begin_immediate(other)
    assert other.in_transaction


def test_a_waiting_writer_is_counted_until_it_has_the_lock(tmp_path: Path) -> None:
    """``writers_waiting``: what a batch writer (the fhir_store destination) reads to end its batch."""
    path = tmp_path / "db.sqlite3"
    holder, other = _connect(path), _connect(path)
    holder.execute("BEGIN IMMEDIATE")
    before = writers_waiting()
    waiting = threading.Thread(target=begin_immediate, args=(other,))
    waiting.start()
    deadline = time.monotonic() + 5
    while writers_waiting() == before and time.monotonic() < deadline:
        time.sleep(0.001)
    assert writers_waiting() == before + 1
    holder.execute("ROLLBACK")
    waiting.join(5)
    assert other.in_transaction
    assert writers_waiting() == before
    other.execute("ROLLBACK")
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # given up: no longer counted either
        holder.execute("BEGIN IMMEDIATE")
        try:
            begin_immediate(other, timeout=0.02)
        finally:
            holder.execute("ROLLBACK")
    assert writers_waiting() == before

"""The export is a durable job: it survives a crash (another worker resumes it from its last
checkpoint, without duplicates), stops when cancelled mid-run, runs alongside other exports and
the API, and any worker on the database may run it (SKIP LOCKED on PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from ehrgate.bulk.jobs import Jobs
from ehrgate.bulk.steps import Run
from ehrgate.bulk.worker import Worker, WorkerConfig

from .conftest import BASE, Bulk, obs

AUTH = {"Authorization": "Bearer system"}


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, no lease is given back."""


def many(bulk: Bulk, n: int = 120) -> None:
    with bulk.store.writer() as w:
        for i in range(n):
            w.update("Observation", f"m{i:04d}", obs(f"m{i:04d}", f"p{1 + i % 3}"))


def worker(bulk: Bulk, owner: str, **kw: Any) -> Worker:
    cfg = WorkerConfig(root=bulk.bulk.root, **{"threads": 1, "file_lines": 7, "batch_size": 5, "lease_ms": 400,
                                               "heartbeat": 0.05, **kw})
    return Worker(bulk.store, Jobs(bulk.store), cfg, owner=owner)


def lines_of(bulk: Bulk, manifest: dict[str, Any]) -> Counter[tuple[str, str]]:
    return Counter((r["resourceType"], r["id"]) for e in manifest["output"] for r in bulk.download(e["url"], "system"))


def test_a_crashed_export_is_resumed_by_another_worker(bulk: Bulk) -> None:
    many(bulk)
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Observation,Patient"}))
    batches = 0

    def crash_later(run: Run) -> None:
        nonlocal batches
        batches += 1
        if batches == 9:
            raise Crash

    a = worker(bulk, "host-a:1:aaaa")
    a.on_batch = crash_later
    with pytest.raises(Crash):
        a.run_once()
    job_id = path.rsplit("/", 1)[1]
    job = bulk.bulk.jobs.get(job_id)
    assert job is not None and job.state == "running" and job.step == "write"
    registered = bulk.bulk.jobs.files(job_id)
    assert registered, "some files were finished before the crash"
    assert bulk.client.get(path, headers=AUTH).status_code == 202
    b = worker(bulk, "host-b:1:bbbb")
    assert not b.run_once(), "the crashed worker's lease still holds"
    time.sleep(0.5)  # the crashed worker's lease runs out
    while b.run_once():
        pass
    manifest = bulk.client.get(path, headers=AUTH).json()
    got = lines_of(bulk, manifest)
    assert max(got.values()) == 1, "no resource is written twice"
    assert sum(1 for t, _ in got if t == "Observation") == 126
    assert sum(1 for t, _ in got if t == "Patient") == 3
    job = bulk.bulk.jobs.get(job_id)
    assert job is not None and job.attempts == 2
    # the files the first attempt finished are kept; its unfinished file is gone
    names = {e["url"].rsplit("/", 1)[1] for e in manifest["output"]}
    assert {f.name for f in registered} <= names
    on_disk = sorted(p.relative_to(bulk.bulk.root / job_id).as_posix() for p in (bulk.bulk.root / job_id).rglob("*.ndjson"))
    assert len(on_disk) == len(manifest["output"])


def test_a_stopping_worker_gives_its_job_back(bulk: Bulk) -> None:
    many(bulk)
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Observation"}))
    a = worker(bulk, "host-a:1:aaaa", lease_ms=60_000)
    a.on_batch = lambda run: a._stopping.set() if run.written >= 20 else None
    a.run_once()
    job = bulk.bulk.jobs.get(path.rsplit("/", 1)[1])
    assert job is not None and job.state == "running"
    b = worker(bulk, "host-b:1:bbbb", lease_ms=60_000)
    assert b.run_once(), "the paused job is claimable at once"
    assert sum(lines_of(bulk, bulk.client.get(path, headers=AUTH).json()).values()) == 126


def test_leases_of_dead_processes_on_this_host_are_released(bulk: Bulk) -> None:
    import socket

    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Patient"}))
    dead_owner = f"{socket.gethostname()[:60]}:999999:dead"
    assert bulk.bulk.jobs.claim(dead_owner, 3_600_000) is not None
    assert bulk.bulk.jobs.claim("someone-else", 60_000) is None  # leased for an hour
    assert bulk.bulk.jobs.release_dead_leases(lambda pid: pid != 999999) == 1
    b = worker(bulk, "host-b:1:bbbb")
    assert b.run_once()
    assert bulk.client.get(path, headers=AUTH).status_code == 200


def test_a_restart_that_got_the_same_pid_resumes_at_once(bulk: Bulk) -> None:
    """In a container the server is PID 1 (or another small pid) on every start: a lease held by the
    previous incarnation carries our own pid, but no worker of this process holds it - it is dead."""
    import os
    import socket

    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Patient"}))
    previous = f"{socket.gethostname()[:60]}:{os.getpid()}:0ld0"
    assert bulk.bulk.jobs.claim(previous, 3_600_000) is not None
    fresh = worker(bulk, f"{socket.gethostname()[:60]}:{os.getpid()}:f4e5")
    fresh.start()
    try:
        deadline = time.monotonic() + 10
        while bulk.client.get(path, headers=AUTH).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bulk.client.get(path, headers=AUTH).status_code == 200
    finally:
        fresh.stop()


def test_a_job_interrupted_too_often_fails(bulk: Bulk) -> None:
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Patient"}))
    with bulk.store.writer() as w:
        w.conn.exec_driver_sql("UPDATE bulk_job SET attempts = 10")
    assert worker(bulk, "w:1:x").run_once()
    r = bulk.client.get(path, headers=AUTH)
    assert r.status_code == 500 and "interrupted" in r.text


def test_cancel_during_an_export_stops_it_and_removes_its_files(bulk: Bulk) -> None:
    many(bulk)
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Observation"}))
    job_id = path.rsplit("/", 1)[1]
    started = threading.Event()
    release = threading.Event()

    def slow(run: Run) -> None:
        started.set()
        release.wait(0.05)

    w = worker(bulk, "w:1:x", lease_ms=60_000)
    w.on_batch = slow
    bulk.app.state.bulk.worker = w  # the DELETE handler signals the worker that runs the job
    w.start()
    try:
        assert started.wait(10)
        assert (bulk.bulk.root / job_id).exists()
        assert bulk.client.delete(path, headers=AUTH).status_code == 202
        deadline = time.monotonic() + 10
        while w._running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not w._running, "the worker stopped the cancelled job"
        assert not (bulk.bulk.root / job_id).exists()
        assert bulk.client.get(path, headers=AUTH).status_code == 404
    finally:
        release.set()
        w.stop()


def test_cancel_seen_by_a_worker_in_another_process_via_the_heartbeat(bulk: Bulk) -> None:
    many(bulk)
    path = bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Observation"}))
    job_id = path.rsplit("/", 1)[1]
    seen: list[int] = []

    def cancel_once(run: Run) -> None:
        if not seen:
            seen.append(1)
            bulk.bulk.jobs.delete(job_id)  # as the DELETE handler of another process would
            time.sleep(0.3)  # a few heartbeats
    w = worker(bulk, "elsewhere:1:x", lease_ms=60_000)
    w.on_batch = cancel_once
    assert w.run_once()
    assert not (bulk.bulk.root / job_id).exists()
    assert bulk.bulk.jobs.get(job_id) is None


def test_concurrent_exports_finish_and_the_api_keeps_answering(bulk: Bulk) -> None:
    many(bulk, 300)
    paths = [bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": t}))
             for t in ("Observation", "Observation,Patient", "Patient,Condition", "Observation")]
    w = worker(bulk, "w:1:x", threads=2, lease_ms=60_000)
    bulk.app.state.bulk.worker = w
    w.start()
    latencies = []
    try:
        deadline = time.monotonic() + 60
        pending = list(paths)
        while pending and time.monotonic() < deadline:
            t0 = time.perf_counter()
            assert bulk.client.get("/fhir/Patient/p1", headers=AUTH).status_code == 200
            latencies.append(time.perf_counter() - t0)
            pending = [p for p in pending if bulk.client.get(p, headers=AUTH).status_code == 202]
            time.sleep(0.01)
        assert not pending
    finally:
        w.stop()
    results = [lines_of(bulk, bulk.client.get(p, headers=AUTH).json()) for p in paths]
    assert sum(results[0].values()) == sum(results[3].values()) == 306
    assert sum(results[1].values()) == 309 and sum(results[2].values()) == 6
    assert max(latencies) < 2.0, max(latencies)


def test_two_workers_share_the_queue(bulk: Bulk) -> None:
    """Each job is claimed by exactly one worker (SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite)."""
    paths = [bulk.status_path(bulk.kickoff("/fhir/$export", "system", params={"_type": "Patient"})) for _ in range(4)]
    jobs = Jobs(bulk.store)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(owner: str) -> None:
        while True:
            job = jobs.claim(owner, 60_000)
            if job is None:
                return
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim, args=(f"w{i}:1:x",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(claimed) == sorted(p.rsplit("/", 1)[1] for p in paths)


def test_file_urls_are_absolute(bulk: Bulk) -> None:
    manifest = bulk.export("/fhir/$export", "system", params={"_type": "Patient"})
    assert all(e["url"].startswith(BASE + "/bulk/files/") for e in manifest["output"])

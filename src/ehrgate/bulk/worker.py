"""The export worker: threads that claim jobs from the database and run their pipeline.

Runs in threads off the event loop, so the API keeps answering while exports stream; the number
of threads (``bulk_workers``) bounds how many exports run at once in this process. Any EHRGate
process on the same database may run any job (leases; SKIP LOCKED on PostgreSQL). While a job
runs, a heartbeat renews its lease and notices a cancellation (the job row is gone) within about
a second. Expired jobs and stray directories are swept from time to time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..fhir.store.service import Store
from .jobs import Job, Jobs, LeaseLost, new_owner
from .ndjson import JOB_ID, remove_job_dir
from .steps import JobError, Run, run_pipeline

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger("ehrgate.bulk")
MAX_ATTEMPTS = 10
SWEEP_EVERY = 30.0


@dataclass(frozen=True)
class WorkerConfig:
    root: Path
    threads: int = 2
    file_lines: int = 50_000
    batch_size: int = 1000
    lease_ms: int = 60_000
    ttl_ms: int = 86_400_000
    poll: float = 1.0
    heartbeat: float = 1.0


_LIVE_OWNERS: set[str] = set()
"""Lease owner ids of the workers started in this process."""


def _pid_alive(pid: int) -> bool:
    """Is a process with this pid running? Our own pid, seen in a lease that no worker of this process
    holds, belongs to a previous run that had the same pid (a container's server is PID 1 on every start)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Heartbeat(threading.Thread):
    """Renews one job's lease; sets ``lost`` when the job was deleted or taken over."""

    def __init__(self, jobs: Jobs, job_id: str, owner: str, lease_ms: int, every: float) -> None:
        super().__init__(name=f"bulk-heartbeat-{job_id[:8]}", daemon=True)
        self.jobs, self.job_id, self.owner, self.lease_ms, self.every = jobs, job_id, owner, lease_ms, every
        self.lost = threading.Event()
        self.done = threading.Event()
        self.progress = ""

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                if not self.jobs.renew(self.job_id, self.owner, self.lease_ms, self.progress):
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a busy database: try again next beat
                log.warning("bulk job %s: lease renewal failed; retrying", self.job_id, exc_info=True)


class Worker:
    def __init__(
        self,
        store: Store,
        jobs: Jobs,
        config: WorkerConfig,
        *,
        owner: str | None = None,
        on_batch: Callable[[Run], None] | None = None,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.config = config
        self.owner = owner or new_owner()
        self.on_batch = on_batch
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._wake = threading.Event()
        self._running: dict[str, _Heartbeat] = {}
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        if self._threads or self.config.threads <= 0:
            return
        self._stopping.clear()
        self._abandon.clear()
        _LIVE_OWNERS.add(self.owner)
        try:
            released = self.jobs.release_dead_leases(_pid_alive, keep=set(_LIVE_OWNERS))
            if released:
                log.info("bulk: resuming %d export job(s) of a stopped process", released)
        except Exception:  # noqa: BLE001 - the loop retries claims anyway
            log.warning("bulk: could not check for jobs of stopped processes", exc_info=True)
        for i in range(self.config.threads):
            thread = threading.Thread(target=self._loop, name=f"bulk-worker-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 10.0, *, abandon: bool = False) -> None:
        """Stop the threads. Running jobs give their lease back so another worker resumes them at
        once; ``abandon`` leaves the lease as a crash would (tests of crash recovery)."""
        if abandon:
            self._abandon.set()
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        _LIVE_OWNERS.discard(self.owner)

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """The job was deleted: if it runs here, stop it now instead of at the next heartbeat."""
        with self._lock:
            beat = self._running.get(job_id)
        if beat is not None:
            beat.lost.set()

    # -- work -----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.run_once()
                if time.monotonic() - self._last_sweep > SWEEP_EVERY:
                    self._last_sweep = time.monotonic()
                    self.sweep()
            except Exception:  # noqa: BLE001 - keep the worker alive; the next poll retries
                log.exception("bulk worker: unexpected error")
                worked = False
            if not worked:
                self._wake.wait(self.config.poll)
                self._wake.clear()

    def run_once(self) -> bool:
        """Claim one job and run it to its end (or interruption). False when no job was waiting."""
        if self._stopping.is_set() and self._threads:
            return False
        job = self.jobs.claim(self.owner, self.config.lease_ms)
        if job is None:
            return False
        if job.attempts > MAX_ATTEMPTS:
            self.jobs.fail(job.id, self.owner, f"The export was interrupted {MAX_ATTEMPTS} times and was given up; "
                           "start a new export.", self.config.ttl_ms)
            return True
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        cfg = self.config
        beat = _Heartbeat(self.jobs, job.id, self.owner, cfg.lease_ms, cfg.heartbeat)
        with self._lock:
            self._running[job.id] = beat
        beat.start()

        def stopped() -> bool:
            return beat.lost.is_set() or self._stopping.is_set()

        def on_batch(run: Run) -> None:
            beat.progress = run.progress
            if self.on_batch is not None:
                self.on_batch(run)

        run = Run(self.store, self.jobs, job, self.owner, cfg.root, cfg.file_lines, cfg.batch_size, cfg.ttl_ms,
                  stopped, on_batch)
        try:
            log.info("bulk job %s: running (attempt %d, step %s)", job.id, job.attempts, job.step)
            run_pipeline(run)
            log.info("bulk job %s: completed, %d resources", job.id, run.written)
        except LeaseLost:
            if run.files is not None:
                run.files.abort()
            self._interrupted(job, beat)
        except JobError as exc:
            log.info("bulk job %s: failed: %s", job.id, exc)
            self.jobs.fail(job.id, self.owner, str(exc), cfg.ttl_ms)
        except Exception:  # noqa: BLE001 - logged with the id; the client gets a sentence
            log.exception("bulk job %s: failed", job.id)
            self.jobs.fail(job.id, self.owner, f"The export failed on the server (job {job.id}); the server log "
                           "has the details. Start a new export.", cfg.ttl_ms)
        finally:
            beat.done.set()
            beat.join(5)
            with self._lock:
                self._running.pop(job.id, None)

    def _interrupted(self, job: Job, beat: _Heartbeat) -> None:
        if self._abandon.is_set():
            return  # as if the process died: the lease runs out and another worker resumes
        # Stop the heartbeat first: a renewal landing after the give-back below would claim the job
        # again for a whole lease, and nobody could resume it until then.
        beat.done.set()
        beat.join(5)
        current = self.jobs.get(job.id)
        if current is None:
            log.info("bulk job %s: cancelled", job.id)
            remove_job_dir(self.config.root, job.id)
        elif current.lease_owner == self.owner and self._stopping.is_set():
            self.jobs.renew(job.id, self.owner, -self.config.lease_ms)  # give the lease back
            log.info("bulk job %s: paused at step %s; it resumes on the next start", job.id, current.step)

    def sweep(self) -> None:
        """Remove expired jobs, and directories whose job is gone (cancelled while a worker elsewhere
        was still writing)."""
        for job_id in self.jobs.expired():
            self.jobs.delete(job_id)
            remove_job_dir(self.config.root, job_id)
            log.info("bulk job %s: expired and removed", job_id)
        root = self.config.root
        if not root.exists():
            return
        names = [p.name for p in root.iterdir() if p.is_dir() and JOB_ID.match(p.name)]
        known = self.jobs.known_ids(names)
        cutoff = time.time() - 2 * self.config.lease_ms / 1000
        for name in names:
            if name not in known and (root / name).stat().st_mtime < cutoff:
                remove_job_dir(root, name)

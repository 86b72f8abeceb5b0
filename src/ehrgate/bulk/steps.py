"""The export pipeline: ``select`` → ``expand`` → ``write`` → ``manifest`` (STYLE rule 14).

Each step reads the job's checkpoint, does its work in short transactions, and ends with a
checkpoint naming the next step, so a job resumes where it stopped after a restart or a crash:

* ``select``   the patients of a Patient- or Group-level export (``bulk_job_patient``);
* ``expand``   the work units: one pass over all requested types, then Provenance, then deletions;
* ``write``    NDJSON files per type, split at ``file_lines``; a checkpoint after every finished
               file (and every few seconds) records the files, the ``pk`` up to which everything
               is written, and the size of each half-written file (a resumed run continues it);
* ``manifest`` the error file, a sweep of unfinished files, the manifest; the job completes.

Every step is a function of a ``Run`` and can be called alone (tests do).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..fhir.jsonio import loads
from ..fhir.store import schema as fs
from ..fhir.store.service import Store
from ..fhir.validation import known_resource_types
from . import schema as bs
from .jobs import FileRecord, Job, Jobs, LeaseLost
from .ndjson import NdjsonFile, job_dir, sync_all
from .plan import build_manifest, error_lines, member_ids, plan_units, resolve_types
from .sources import Line, stream_for

__all__ = ["STEPS", "JobError", "Run", "expand", "finish", "run_pipeline", "select_patients", "write_units"]

STEPS = ("select", "expand", "write", "manifest")
R, V, P = fs.resource, fs.resource_version, bs.job_patient


class JobError(Exception):
    """The export cannot be done as asked (e.g. its Group was deleted); the job fails with this text."""


@dataclass
class Run:
    """One worker's run of one job."""

    store: Store
    jobs: Jobs
    job: Job
    owner: str
    root: Path
    file_lines: int = 50_000
    batch_size: int = 1000
    ttl_ms: int = 3_600_000
    stopped: Callable[[], bool] = lambda: False
    """True once the job was cancelled, its lease lost, or the worker is stopping."""
    on_batch: Callable[[Run], None] | None = None
    """Called after every batch (progress; tests use it to interrupt a run at a known point)."""
    progress: str = "Starting"
    written: int = 0
    files: Files | None = None
    """The open files of the unit being written (closed unfinished when the run is interrupted)."""

    @property
    def directory(self) -> Path:
        return job_dir(self.root, self.job.id)

    @property
    def attempt(self) -> str:
        return f"a{self.job.attempts}"

    def check(self) -> None:
        if self.stopped():
            raise LeaseLost(self.job.id)

    def checkpoint(self, step: str, cursor: dict[str, Any], files: list[FileRecord] | None = None,
                   conn_hook: Callable[[sa.Connection], None] | None = None) -> None:
        self.check()
        self.jobs.checkpoint(self.job.id, self.owner, step, cursor, files or [], self.progress, conn_hook)
        self.job.step = step
        self.job.cursor = cursor


# -- select -------------------------------------------------------------------------------------


def group_at(conn: sa.Connection, group_id: str, at: int) -> dict[str, Any] | None:
    """The Group as it was at ``at`` (epoch ms), from its history; None if it did not exist then."""
    row = conn.execute(
        sa.select(V.c.raw, V.c.deleted)
        .join(R, R.c.pk == V.c.res_pk)
        .where(R.c.res_type == "Group", R.c.res_id == group_id, V.c.last_updated <= at)
        .order_by(V.c.version.desc())
        .limit(1)
    ).first()
    if row is None or row.deleted or row.raw is None:
        return None
    value = loads(bytes(row.raw))
    return value if isinstance(value, dict) else None


def group_first_stored(conn: sa.Connection, group_id: str) -> int | None:
    """When the Group's first version was stored (epoch ms); None if it never was. The transaction
    time is held back while older writes are in progress (``Store.write_horizon``), so a Group the
    client stored just before its kick-off can be younger than it: the export takes it as first stored."""
    return conn.execute(
        sa.select(sa.func.min(V.c.last_updated)).join(R, R.c.pk == V.c.res_pk)
        .where(R.c.res_type == "Group", R.c.res_id == group_id)
    ).scalar()


def select_patients(run: Run) -> None:
    """Step ``select``: the job's patients, from the Group (as of the transaction time), the
    POST ``patient`` list, or the caller's own patient; ``added``: joined the Group after _since."""
    job = run.job
    export = job.export
    cursor: dict[str, Any] = {}
    chosen: list[tuple[str, bool]] = []
    if job.level == "group":
        assert export.group_id is not None
        with run.store.reader() as conn:
            group = group_at(conn, export.group_id, job.info.get("group_at", job.transaction_time))
            if group is None:
                raise JobError(f"Group/{export.group_id} no longer exists; the export cannot run.")
            members = member_ids(group)
            before: set[str] | None = None
            if export.since is not None:
                old = group_at(conn, export.group_id, export.since)
                before = set(member_ids(old)) if old is not None else set()
        wanted = set(export.patients) if export.patients is not None else None
        if job.access_patient is not None:
            wanted = {job.access_patient} & (wanted if wanted is not None else {job.access_patient})
        chosen = [(m, before is not None and m not in before) for m in members if wanted is None or m in wanted]
        cursor["added"] = any(added for _m, added in chosen)
    elif job.level == "patient":
        if export.patients is None and job.access_patient is None:
            cursor["all_patients"] = True
        else:
            ids = list(export.patients) if export.patients is not None else [str(job.access_patient)]
            if job.access_patient is not None:
                ids = [i for i in ids if i == job.access_patient]
            chosen = [(i, False) for i in ids]
    run.progress = f"Selected {len(chosen)} patients" if chosen else "Selected the export's scope"

    def store_patients(conn: sa.Connection) -> None:
        conn.execute(P.delete().where(P.c.job_id == job.id))
        for start in range(0, len(chosen), 1000):
            conn.execute(P.insert(), [{"job_id": job.id, "patient_id": pid, "added": added}
                                      for pid, added in chosen[start:start + 1000]])

    run.checkpoint("expand", cursor, conn_hook=store_patients)


# -- expand -------------------------------------------------------------------------------------


def expand(run: Run) -> None:
    """Step ``expand``: the units to write, in order, from the request and the caller's access."""
    job = run.job
    types, warnings = resolve_types(job.export, known_resource_types())
    units = plan_units(job.export, types, job.access_filters)
    cursor = {**job.cursor, "units": units, "unit": 0, "warnings": [*job.export.warnings, *warnings]}
    run.progress = f"Planned {len(units)} units"
    run.checkpoint("write", cursor)


# -- write --------------------------------------------------------------------------------------

SEGMENT_SECONDS = 10.0
"""A unit's query is restarted (``pk > last``) after this long, so no read transaction lives long."""
CHECKPOINT_SECONDS = 5.0
"""At most this much work is redone after a crash, besides the file being finished."""


class Files:
    """The open NDJSON files of one unit: one per prefix (a resource type, or ``deleted``), each
    split at ``file_lines`` lines into ``<prefix>-1.ndjson``, ``<prefix>-2.ndjson``, ..."""

    def __init__(self, run: Run, kind: str, seqs: dict[str, int], open_state: dict[str, dict[str, Any]]) -> None:
        self.run = run
        self.kind = kind
        self.seqs = dict(seqs)
        self.files: dict[str, NdjsonFile] = {}
        for prefix, st in open_state.items():  # resume the files an interrupted run left half-written
            self.files[prefix] = NdjsonFile(
                run.directory, run.attempt, st["name"], kind, self._type(prefix), int(st["seq"]),
                resume=(run.directory / st["path"], int(st["size"]), int(st["count"])),
            )

    @staticmethod
    def _type(prefix: str) -> str:
        return "Bundle" if prefix == "deleted" else prefix

    def paths(self) -> set[str]:
        return {f.rel for f in self.files.values()}

    def room(self, prefix: str) -> int:
        f = self.files.get(prefix)
        return self.run.file_lines - (f.count if f is not None else 0)

    def file(self, prefix: str) -> NdjsonFile:
        f = self.files.get(prefix)
        if f is None:
            seq = self.seqs.get(prefix, 1)
            self.seqs[prefix] = seq + 1
            f = self.files[prefix] = NdjsonFile(self.run.directory, self.run.attempt, f"{prefix}-{seq}.ndjson",
                                                self.kind, self._type(prefix), seq)
        return f

    def close(self, prefix: str) -> FileRecord:
        return self.files.pop(prefix).close()

    def state(self) -> dict[str, Any]:
        prefixes = list(self.files)
        return dict(zip(prefixes, sync_all([self.files[p] for p in prefixes]), strict=True))

    def close_all(self) -> list[FileRecord]:
        written = [f for f in self.files.values() if f.count]
        sync_all(written)
        records = [f.close(fsync=False) for f in written]
        for f in self.files.values():
            if not f.count:
                f.discard()
        self.files = {}
        return records

    def abort(self) -> None:
        for f in self.files.values():
            f.abort()
        self.files = {}


def _sweep(run: Run, keep: Collection[str] = ()) -> None:
    """Remove files on disk that no checkpoint registered (a write cut short by a crash)."""
    directory = run.directory
    if not directory.exists():
        return
    registered = {f.path for f in run.jobs.files(run.job.id)} | set(keep)
    for sub in directory.iterdir():
        if not sub.is_dir():
            sub.unlink(missing_ok=True)
            continue
        for path in sub.iterdir():
            if f"{sub.name}/{path.name}" not in registered:
                path.unlink(missing_ok=True)


_PROGRESS_KEYS = ("unit", "after", "seqs", "open", "written")


def write_units(run: Run) -> None:
    """Step ``write``: every unit from the checkpoint on, as NDJSON files of ``file_lines`` lines."""
    cursor = dict(run.job.cursor)
    base = {k: v for k, v in cursor.items() if k not in _PROGRESS_KEYS}
    units: list[dict[str, Any]] = cursor["units"]
    run.written = int(cursor.get("written", 0))
    while int(cursor.get("unit", 0)) < len(units):
        index = int(cursor.get("unit", 0))
        records = _write_unit(run, cursor, index, units[index])
        cursor = {**base, "unit": index + 1, "after": None, "seqs": {}, "open": {}, "written": run.written}
        run.checkpoint("write", cursor, records)
    run.checkpoint("manifest", base)


def _write_lines(run: Run, files: Files, lines: list[Line], save: Callable[[int, list[FileRecord]], None]) -> None:
    """Append lines to their files; when a file fills, close it and checkpoint right after its
    last line (so a resumed run starts exactly where the finished file ends)."""
    start, n = 0, len(lines)
    room: dict[str, int] = {}
    while start < n:
        cut, full = n, None
        counts: dict[str, int] = {}
        for i in range(start, n):
            prefix = lines[i][1]
            c = counts.get(prefix, 0) + 1
            counts[prefix] = c
            r = room.get(prefix)
            if r is None:
                r = room[prefix] = files.room(prefix)
            if c >= r:
                cut, full = i + 1, prefix
                break
        groups: dict[str, list[bytes]] = {}
        for _pk, prefix, line in lines[start:cut]:
            group = groups.get(prefix)
            if group is None:
                group = groups[prefix] = []
            group.append(line)
        for prefix, group in groups.items():
            files.file(prefix).write(group)
        run.written += cut - start
        room = {}
        if full is not None:
            save(lines[cut - 1][0], [files.close(full)])
        start = cut


def _write_unit(run: Run, cursor: dict[str, Any], index: int, unit: dict[str, Any]) -> list[FileRecord]:
    kind = "deleted" if unit["kind"] == "deleted" else "output"
    stream = stream_for(run.job, unit, run.batch_size, run.store.extract)
    after = int(cursor.get("after") or 0)
    files = run.files = Files(run, kind, cursor.get("seqs") or {}, cursor.get("open") or {})
    _sweep(run, files.paths())
    base = {k: v for k, v in cursor.items() if k not in _PROGRESS_KEYS}
    saved = time.monotonic()

    def save(key: int, records: list[FileRecord]) -> None:
        nonlocal saved
        run.checkpoint("write", {**base, "unit": index, "after": key, "seqs": files.seqs, "open": files.state(),
                                 "written": run.written}, records)
        saved = time.monotonic()

    label = "listing deletions" if kind == "deleted" else "writing resources"
    finished = False
    while not finished:
        run.check()
        began = time.monotonic()
        finished = True
        with run.store.reader() as conn:
            rows = stream(conn, after)
            try:
                for lines, last in rows:
                    _write_lines(run, files, lines, save)
                    after = last
                    run.progress = f"Exporting ({label}): {run.written} resources written"
                    if run.on_batch is not None:
                        run.on_batch(run)
                    run.check()
                    now = time.monotonic()
                    if now - saved > CHECKPOINT_SECONDS:
                        save(after, [])
                    if now - began > SEGMENT_SECONDS:
                        finished = False
                        break
            finally:
                rows.close()
    records = files.close_all()
    run.files = None
    return records


# -- manifest -----------------------------------------------------------------------------------


def finish(run: Run) -> None:
    """Step ``manifest``: write the warnings as OperationOutcomes, drop unfinished files, complete."""
    job = run.job
    cursor = job.cursor
    files = run.jobs.files(job.id)
    warnings = list(cursor.get("warnings") or [])
    if warnings and not any(f.kind == "error" for f in files):
        out = NdjsonFile(run.directory, run.attempt, "error-1.ndjson", "error", "OperationOutcome", 1)
        out.write(error_lines(warnings))
        run.checkpoint("manifest", cursor, [out.close()])
        files = run.jobs.files(job.id)
    _sweep(run)
    types = [t for u in cursor.get("units", []) if u["kind"] != "deleted" for t in u["types"]]
    order = {t: i for i, t in enumerate(types)}
    files.sort(key=lambda f: ({"output": 0, "deleted": 1, "error": 2}[f.kind], order.get(f.res_type, 1 << 20), f.seq))
    manifest = build_manifest(job.transaction_time, job.info["url"], job.info["files"], files,
                              since=job.export.since is not None)
    run.check()
    run.jobs.complete(job.id, run.owner, manifest, run.ttl_ms)
    job.state = "completed"


def run_pipeline(run: Run) -> None:
    """Run the job's remaining steps, from its checkpoint to completion."""
    steps = {"select": select_patients, "expand": expand, "write": write_units, "manifest": finish}
    while run.job.step in steps:
        steps[run.job.step](run)
        if run.job.state == "completed":
            return

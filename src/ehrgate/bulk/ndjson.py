"""Export files on disk: the NDJSON writer and the only way a path under the export directory is made.

Layout: ``<bulk_dir>/<job id>/a<attempt>/<name>``. Each claim of a job (attempt) writes into its
own sub-directory, so a worker that lost its lease can never overwrite the files of the one that
took over. Names are ``<Type>-<n>.ndjson``, ``error-<n>.ndjson``, ``deleted-<n>.ndjson``.

Every path is built from a job id and a name that match strict patterns and is then checked to
resolve inside the export directory: a URL can never reach any other file.
"""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .jobs import FileRecord

__all__ = ["JOB_ID", "NAME", "NdjsonFile", "job_dir", "remove_job_dir", "safe_path", "sync_all"]

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
NAME = re.compile(r"^[A-Za-z]{1,64}-[0-9]{1,6}\.ndjson$")
_REL = re.compile(r"^a[0-9]{1,6}/[A-Za-z]{1,64}-[0-9]{1,6}\.ndjson$")


def job_dir(root: Path, job_id: str) -> Path:
    if not JOB_ID.match(job_id):
        raise ValueError(f"Not an export job id: {job_id!r}")
    return root / job_id


def safe_path(root: Path, job_id: str, rel: str) -> Path | None:
    """The file ``rel`` of a job, or None if it is not a well-formed path inside the export dir."""
    if not JOB_ID.match(job_id) or not _REL.match(rel):
        return None
    base = root.resolve()
    path = (base / job_id / rel).resolve()
    if not path.is_relative_to(base / job_id):
        return None
    return path


def remove_job_dir(root: Path, job_id: str) -> None:
    shutil.rmtree(job_dir(root, job_id), ignore_errors=True)


def sync_all(files: list[NdjsonFile]) -> list[dict[str, object]]:
    """Flush every file, then fsync them in parallel (the disk flushes them together: a unit's
    dozens of files cost about one fsync, not dozens)."""
    states = [f.sync(fsync=False) for f in files]
    if len(files) == 1:
        os.fsync(files[0].fileno())
    elif files:
        with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            list(pool.map(os.fsync, [f.fileno() for f in files]))
    return states


class NdjsonFile:
    """One NDJSON file being written: counts lines and bytes; ``sync`` makes what was written
    durable (a checkpoint records it), ``close`` finishes the file."""

    def __init__(self, directory: Path, attempt: str, name: str, kind: str, res_type: str, seq: int,
                 *, resume: tuple[Path, int, int] | None = None) -> None:
        """``resume``: (a file of an earlier attempt, its checkpointed size and line count) - its
        first ``size`` bytes are copied and writing goes on from there."""
        if not NAME.match(name):
            raise ValueError(f"Not an export file name: {name!r}")
        self.rel = f"{attempt}/{name}"
        self.path = directory / self.rel
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name, self.kind, self.res_type, self.seq = name, kind, res_type, seq
        self.count = 0
        self.size = 0
        self._fh = open(self.path, "wb", buffering=1 << 18)  # noqa: SIM115 - closed in close()
        if resume is not None:
            old, size, count = resume
            with open(old, "rb") as src:
                left = size
                while left > 0:
                    chunk = src.read(min(left, 1 << 20))
                    if not chunk:
                        raise OSError(f"{old} is shorter than its checkpoint ({size} bytes)")
                    self._fh.write(chunk)
                    left -= len(chunk)
            self.size, self.count = size, count

    def write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        chunk = b"\n".join(lines) + b"\n"
        self._fh.write(chunk)
        self.count += len(lines)
        self.size += len(chunk)

    def sync(self, fsync: bool = True) -> dict[str, object]:
        """Flush and fsync; the state a checkpoint records to resume this file."""
        self._fh.flush()
        if fsync:
            os.fsync(self._fh.fileno())
        return {"name": self.name, "path": self.rel, "seq": self.seq, "count": self.count, "size": self.size}

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self, fsync: bool = True) -> FileRecord:
        self.sync(fsync)
        self._fh.close()
        return FileRecord(self.name, self.rel, self.kind, self.res_type, self.seq, self.count, self.size)

    def abort(self) -> None:
        """Stop writing (the run was interrupted); the next run resumes or removes the file."""
        self._fh.close()

    def discard(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)

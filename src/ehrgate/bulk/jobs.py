"""Durable export jobs in the database: create, claim with a lease, checkpoint, finish, remove.

A worker *claims* a queued job, or a running one whose lease ran out (its worker crashed), by
writing its owner id and a lease deadline; it renews the lease while it works and writes every
checkpoint only while it still holds the lease (``LeaseLost`` otherwise). So a job survives a
restart, is picked up again after a crash, and never has two live writers.

* PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` lets any EHRGate process claim any job.
* SQLite: the claim is one ``UPDATE ... RETURNING`` under ``BEGIN IMMEDIATE`` (one writer).

Every transaction here is small (one row or one file list), so exports never hold locks that
the FHIR API waits on.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from ..fhir.store.engine import WRITE_OPTION
from ..fhir.store.service import Store, now_ms
from . import schema as t
from .params import ExportRequest

__all__ = ["FileRecord", "Job", "Jobs", "LeaseLost", "new_owner"]

ACTIVE = ("queued", "running")
J, F, P = t.job, t.file, t.job_patient


def new_owner() -> str:
    """host:pid:random - the lease owner id of one worker."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(4).hex()}"


class LeaseLost(Exception):
    """The job was deleted (cancelled) or claimed by another worker: stop without touching it."""


@dataclass(frozen=True)
class FileRecord:
    """One finished NDJSON file of a job."""

    name: str
    path: str
    """Relative to the job's directory."""
    kind: str
    res_type: str
    seq: int
    count: int
    size: int


@dataclass
class Job:
    id: str
    level: str
    export: ExportRequest
    info: dict[str, Any]
    """Kick-off context: ``url`` (the request), ``base`` (for file URLs), ``patient`` and
    ``filters`` (the caller's access, frozen at kick-off), ``group_version``."""
    client_id: str
    subject: str
    state: str
    created_at: int
    transaction_time: int
    attempts: int = 0
    step: str = "select"
    cursor: dict[str, Any] = field(default_factory=dict)
    progress: str = ""
    manifest: bytes | None = None
    error: str | None = None
    finished_at: int | None = None
    expires_at: int | None = None
    lease_owner: str | None = None

    @property
    def access_patient(self) -> str | None:
        value = self.info.get("patient")
        return str(value) if value else None

    @property
    def access_filters(self) -> dict[str, tuple[str, ...]]:
        return {k: tuple(v) for k, v in (self.info.get("filters") or {}).items()}


def _job(row: Any) -> Job:
    request = orjson.loads(row.request)
    return Job(
        id=row.id, level=row.level, export=ExportRequest.from_json(request["export"]), info=request["info"],
        client_id=row.client_id, subject=row.subject, state=row.state, created_at=row.created_at,
        transaction_time=row.transaction_time, attempts=row.attempts, step=row.step,
        cursor=orjson.loads(row.cursor) if row.cursor else {}, progress=row.progress or "",
        manifest=row.manifest.encode() if row.manifest else None, error=row.error, finished_at=row.finished_at,
        expires_at=row.expires_at, lease_owner=row.lease_owner,
    )


def _file(row: Any) -> FileRecord:
    m = row._mapping  # by name: ``count`` is also a tuple method
    return FileRecord(m["name"], m["path"], m["kind"], m["res_type"], m["seq"], m["count"], m["size"])


class Jobs:
    """The job table's operations. ``clock`` returns epoch ms (tests pass their own)."""

    def __init__(self, store: Store, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.clock = clock
        self.pg = store.dialect == "postgresql"

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.store.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
            with conn.begin():
                yield conn

    # -- kick-off, status, delete ---------------------------------------------------------

    def active_count(self, client_id: str, subject: str) -> int:
        with self.store.reader() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(J)
                .where(J.c.client_id == client_id, J.c.subject == subject, J.c.state.in_(ACTIVE))
            ).scalar_one())

    def create(self, job: Job) -> None:
        request = orjson.dumps({"export": job.export.to_json(), "info": job.info}).decode()
        with self._write() as conn:
            conn.execute(J.insert().values(
                id=job.id, level=job.level, request=request, client_id=job.client_id, subject=job.subject,
                state="queued", created_at=job.created_at, transaction_time=job.transaction_time, attempts=0,
                step="select", progress="Queued",
            ))

    def get(self, job_id: str) -> Job | None:
        with self.store.reader() as conn:
            row = conn.execute(sa.select(J).where(J.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def files(self, job_id: str, conn: sa.Connection | None = None) -> list[FileRecord]:
        stmt = sa.select(F).where(F.c.job_id == job_id).order_by(F.c.kind, F.c.res_type, F.c.seq)
        if conn is None:
            with self.store.reader() as c:
                rows = c.execute(stmt).all()
        else:
            rows = conn.execute(stmt).all()
        return [_file(r) for r in rows]

    def file(self, job_id: str, name: str) -> FileRecord | None:
        with self.store.reader() as conn:
            r = conn.execute(sa.select(F).where(F.c.job_id == job_id, F.c.name == name)).first()
        return _file(r) if r else None

    def delete(self, job_id: str) -> bool:
        """Remove the job and its rows (the caller removes the directory)."""
        with self._write() as conn:
            gone = conn.execute(J.delete().where(J.c.id == job_id)).rowcount
            conn.execute(F.delete().where(F.c.job_id == job_id))
            conn.execute(P.delete().where(P.c.job_id == job_id))
        return bool(gone)

    # -- worker side ----------------------------------------------------------------------

    def claim(self, owner: str, lease_ms: int) -> Job | None:
        """Take the oldest queued job, or a running one whose lease ran out."""
        now = self.clock()
        params = {"now": now, "owner": owner, "until": now + lease_ms}
        eligible = "state IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < :now)"
        sets = "lease_owner = :owner, lease_until = :until, state = 'running', attempts = attempts + 1"
        with self._write() as conn:
            if self.pg:
                sql = (f"WITH c AS (SELECT id FROM bulk_job WHERE {eligible} ORDER BY created_at LIMIT 1 "
                       f"FOR UPDATE SKIP LOCKED) UPDATE bulk_job SET {sets} FROM c WHERE bulk_job.id = c.id "
                       "RETURNING bulk_job.id")
            else:
                sql = (f"UPDATE bulk_job SET {sets} WHERE id = (SELECT id FROM bulk_job WHERE {eligible} "
                       "ORDER BY created_at LIMIT 1) RETURNING id")
            row = conn.execute(sa.text(sql), params).first()
            if row is None:
                return None
            job = conn.execute(sa.select(J).where(J.c.id == row[0])).first()
        return _job(job)

    def renew(self, job_id: str, owner: str, lease_ms: int, progress: str | None = None) -> bool:
        """Extend the lease (and record progress); False when the job is gone or no longer ours."""
        values: dict[str, Any] = {"lease_until": self.clock() + lease_ms}
        if progress:
            values["progress"] = progress[:255]
        with self._write() as conn:
            n = conn.execute(
                J.update().where(J.c.id == job_id, J.c.lease_owner == owner, J.c.state == "running").values(**values)
            ).rowcount
        return bool(n)

    def checkpoint(
        self,
        job_id: str,
        owner: str,
        step: str,
        cursor: dict[str, Any],
        files: Iterable[FileRecord] = (),
        progress: str | None = None,
        conn_hook: Callable[[sa.Connection], None] | None = None,
    ) -> None:
        """Record finished files and the position after them, atomically, while holding the lease."""
        values: dict[str, Any] = {"step": step, "cursor": orjson.dumps(cursor).decode()}
        if progress:
            values["progress"] = progress[:255]
        with self._write() as conn:
            n = conn.execute(
                J.update().where(J.c.id == job_id, J.c.lease_owner == owner, J.c.state == "running").values(**values)
            ).rowcount
            if not n:
                raise LeaseLost(job_id)
            rows = [
                {"job_id": job_id, "name": f.name, "path": f.path, "kind": f.kind, "res_type": f.res_type,
                 "seq": f.seq, "count": f.count, "size": f.size}
                for f in files
            ]
            if rows:
                conn.execute(F.insert(), rows)
            if conn_hook is not None:
                conn_hook(conn)

    def complete(self, job_id: str, owner: str, manifest: bytes, ttl_ms: int) -> None:
        now = self.clock()
        with self._write() as conn:
            n = conn.execute(
                J.update().where(J.c.id == job_id, J.c.lease_owner == owner, J.c.state == "running").values(
                    state="completed", step="done", manifest=manifest.decode(), finished_at=now, expires_at=now + ttl_ms,
                    lease_owner=None, lease_until=None, progress="Completed",
                )
            ).rowcount
            conn.execute(P.delete().where(P.c.job_id == job_id))
        if not n:
            raise LeaseLost(job_id)

    def fail(self, job_id: str, owner: str | None, message: str, ttl_ms: int) -> None:
        now = self.clock()
        cond = [J.c.id == job_id, J.c.state.in_(ACTIVE)]
        if owner is not None:
            cond.append(J.c.lease_owner == owner)
        with self._write() as conn:
            conn.execute(J.update().where(*cond).values(
                state="failed", error=message, finished_at=now, expires_at=now + ttl_ms, lease_owner=None,
                lease_until=None, progress="Failed",
            ))
            conn.execute(P.delete().where(P.c.job_id == job_id))

    def expired(self) -> list[str]:
        with self.store.reader() as conn:
            return [r[0] for r in conn.execute(
                sa.select(J.c.id).where(J.c.expires_at.is_not(None), J.c.expires_at < self.clock())
            )]

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        found: set[str] = set()
        with self.store.reader() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                found.update(r[0] for r in conn.execute(sa.select(J.c.id).where(J.c.id.in_(chunk))))
        return found

    def release_dead_leases(self, alive: Callable[[int], bool], keep: Collection[str] = ()) -> int:
        """Free leases held by workers on this host whose process is gone (after kill -9), so a
        restarted server resumes its jobs at once instead of after the lease runs out. ``keep``:
        owners known to be alive whatever ``alive`` says of their pid (this process's workers)."""
        host = socket.gethostname()[:60]
        with self.store.reader() as conn:
            owners = [r[0] for r in conn.execute(
                sa.select(J.c.lease_owner).distinct().where(J.c.state == "running", J.c.lease_owner.is_not(None))
            )]
        dead = []
        for owner in owners:
            parts = (owner or "").rsplit(":", 2)
            if (len(parts) == 3 and parts[0] == host and parts[1].isdigit() and owner not in keep
                    and not alive(int(parts[1]))):
                dead.append(owner)
        if not dead:
            return 0
        with self._write() as conn:
            return int(conn.execute(
                J.update().where(J.c.lease_owner.in_(dead), J.c.state == "running").values(lease_until=0)
            ).rowcount)

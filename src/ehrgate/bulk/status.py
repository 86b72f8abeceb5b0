"""Status polling, cancellation and file download (Bulk Data Access IG 2.0.0, export.html).

* ``GET /bulk/status/{job}``: 202 with ``X-Progress`` and ``Retry-After`` while the job is queued
  or running; 200 with the manifest (``application/json``) when complete; 500 with an
  OperationOutcome when it failed.
* ``DELETE /bulk/status/{job}``: 202; the job and its files are removed; later requests get 404.
* ``GET /bulk/files/{job}/{name}``: the NDJSON file (``application/fhir+ndjson``), with ``Range``.

Only the client (and user, with the same patient and query constraints) that started a job may see
it: anyone else gets the same 404 as for a job that does not exist; a file of a type the token may
not read is 403. With authorization switched off every caller is the same anonymous one.
"""

from __future__ import annotations

import re
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from ..fhir.access import Access
from ..fhir.errors import FhirError, NotFound
from ..fhir.jsonio import dumps
from .jobs import Job
from .ndjson import JOB_ID, NAME, remove_job_dir, safe_path

if TYPE_CHECKING:
    from .service import BulkExports

__all__ = ["delete_job", "download", "status"]

NDJSON = "application/fhir+ndjson"


class RangeNotSatisfiable(FhirError):
    status = 416
    code = "invalid"


class ExportFailed(FhirError):
    """500 for an export that failed for good. Not ``exception``: that code is a child of
    ``transient`` (IssueType), which tells a client to poll again (export.html#response---error-status-1)."""

    status = 500
    code = "processing"


def _owns(job: Job, access: Access) -> bool:
    """The same client and user, with the same confinement: a token of the same clinician and app
    launched for another patient (or with other query constraints) sees none of this export."""
    return (job.client_id == access.client_id and job.subject == access.subject
            and job.access_patient == (access.patient or None)
            and job.access_filters == {k: tuple(v) for k, v in access.filters.items()})


async def _job(request: Request, bulk: BulkExports) -> Job:
    return (await _job_and_access(request, bulk))[0]


async def _job_and_access(request: Request, bulk: BulkExports) -> tuple[Job, Access]:
    job_id = request.path_params["job"]
    access = await bulk.ctx.policy(request)
    job = await anyio.to_thread.run_sync(bulk.jobs.get, job_id) if JOB_ID.match(job_id) else None
    expired = job is not None and job.expires_at is not None and job.expires_at < bulk.jobs.clock()
    if job is None or not _owns(job, access) or expired:
        raise NotFound(f"There is no export {job_id}: it was cancelled, has expired, or never existed.")
    assert job is not None
    return job, access


async def status(request: Request, bulk: BulkExports) -> Response:
    job = await _job(request, bulk)
    if job.state in ("queued", "running"):
        headers = {"X-Progress": (job.progress or job.state.capitalize())[:200], "Retry-After": str(bulk.retry_after)}
        return Response(None, 202, headers)
    if job.state == "failed":
        raise ExportFailed(job.error or "The export failed.")
    assert job.manifest is not None
    headers = {"Expires": formatdate((job.expires_at or 0) / 1000, usegmt=True)} if job.expires_at else {}
    return Response(job.manifest, 200, headers, media_type="application/json")


async def delete_job(request: Request, bulk: BulkExports) -> Response:
    job = await _job(request, bulk)

    def remove() -> None:
        bulk.jobs.delete(job.id)
        bulk.worker.cancel(job.id)
        remove_job_dir(bulk.root, job.id)

    await anyio.to_thread.run_sync(remove)
    outcome = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational", "diagnostics": f"Export {job.id} was cancelled and its files removed.",
    }]}
    return Response(dumps(outcome), 202, media_type="application/fhir+json")


_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def _usable_range(header: str | None) -> bool:
    """A ``bytes`` range set whose every range is well-formed (RFC 9110 §14.1.1); any other Range
    is ignored and the whole file sent (§14.2: a server MUST ignore a range unit it does not know)."""
    unit, sep, ranges = (header or "").partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return False
    for part in ranges.split(","):
        m = _RANGE.match(part)
        if m is None or not (m.group(1) or m.group(2)) or (
                m.group(1) and m.group(2) and int(m.group(2)) < int(m.group(1))):
            return False
    return True


class _NdjsonFile(FileResponse):
    """The file; ``whole`` sends all of it whatever the request's Range says."""

    whole = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.whole:
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]}
        await super().__call__(scope, receive, send)


def _check_range(header: str | None, size: int) -> None:
    """Answer an unsatisfiable single range with an OperationOutcome (416); the file response
    serves the satisfiable ones."""
    if not header or not header.strip().lower().startswith("bytes="):
        return
    for part in header.split("=", 1)[1].split(","):
        start, _, end = part.strip().partition("-")
        if start.strip().isdigit() and int(start) >= size:
            exc = RangeNotSatisfiable(f"Range {part.strip()!r} starts beyond the end of the file ({size} bytes).")
            exc.headers["Content-Range"] = f"bytes */{size}"
            raise exc
        if not start.strip() and end.strip().isdigit() and int(end) == 0:
            exc = RangeNotSatisfiable("A suffix range of 0 bytes selects nothing.")
            exc.headers["Content-Range"] = f"bytes */{size}"
            raise exc


async def download(request: Request, bulk: BulkExports) -> Response:
    job, access = await _job_and_access(request, bulk)
    name = request.path_params["name"]
    record = await anyio.to_thread.run_sync(bulk.jobs.file, job.id, name) if NAME.match(name) else None
    path = safe_path(bulk.root, job.id, record.path) if record is not None else None
    if record is None or path is None or job.state != "completed" or not path.is_file():
        raise NotFound(f"Export {job.id} has no file {name!r}.")
    if record.kind == "output":  # a later token of the same client may have fewer scopes
        access.require("read", record.res_type)
    header = request.headers.get("range")
    usable = header is not None and _usable_range(header)
    if usable:
        _check_range(header, record.size)
    headers: dict[str, Any] = {"Cache-Control": "private, no-store"}
    response = _NdjsonFile(path, media_type=NDJSON, headers=headers)
    response.whole = header is not None and not usable
    return response

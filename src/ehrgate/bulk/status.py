"""Status polling, cancellation and file download (Bulk Data Access IG 2.0.0, export.html).

* ``GET /bulk/status/{job}``: 202 with ``X-Progress`` and ``Retry-After`` while the job is queued
  or running; 200 with the manifest (``application/json``) when complete; 500 with an
  OperationOutcome when it failed.
* ``DELETE /bulk/status/{job}``: 202; the job and its files are removed; later requests get 404.
* ``GET /bulk/files/{job}/{name}``: the NDJSON file (``application/fhir+ndjson``), with ``Range``.

Only the client (and user) that started a job may see it: anyone else gets the same 404 as for a
job that does not exist. With authorization switched off every caller is the same anonymous one.
"""

from __future__ import annotations

from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response

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


def _owns(job: Job, access: Access) -> bool:
    return job.client_id == access.client_id and job.subject == access.subject


async def _job(request: Request, bulk: BulkExports) -> Job:
    job_id = request.path_params["job"]
    access = await bulk.ctx.policy(request)
    job = await anyio.to_thread.run_sync(bulk.jobs.get, job_id) if JOB_ID.match(job_id) else None
    if job is None or not _owns(job, access):
        raise NotFound(f"There is no export {job_id}: it was cancelled, has expired, or never existed.")
    return job


async def status(request: Request, bulk: BulkExports) -> Response:
    job = await _job(request, bulk)
    if job.state in ("queued", "running"):
        headers = {"X-Progress": (job.progress or job.state.capitalize())[:200], "Retry-After": str(bulk.retry_after)}
        return Response(None, 202, headers)
    if job.state == "failed":
        raise FhirError(job.error or "The export failed.")
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
    job = await _job(request, bulk)
    name = request.path_params["name"]
    record = await anyio.to_thread.run_sync(bulk.jobs.file, job.id, name) if NAME.match(name) else None
    path = safe_path(bulk.root, job.id, record.path) if record is not None else None
    if record is None or path is None or job.state != "completed" or not path.is_file():
        raise NotFound(f"Export {job.id} has no file {name!r}.")
    _check_range(request.headers.get("range"), record.size)
    headers: dict[str, Any] = {"Cache-Control": "private, no-store"}
    return FileResponse(path, media_type=NDJSON, headers=headers)

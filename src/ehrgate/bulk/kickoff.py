"""``$export`` kick-off at system, Patient and Group level (Bulk Data Access IG 2.0.0, export.html).

Thin: parse the parameters (``params.py``), apply the caller's ``Access`` (the same policy as
every FHIR interaction), check what only the database can tell (the Group, the patients, the
caller's running jobs), store a job and answer 202 with the status URL in ``Content-Location``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from ..fhir.access import Access
from ..fhir.errors import BadRequest, FhirError, Forbidden, NotFound
from ..fhir.guard import check_visible
from ..fhir.jsonio import dumps, parse_body
from ..fhir.store import schema as fs
from ..fhir.store.service import now_ms
from ..fhir.store.sql import IDS_PER_LOOKUP
from .jobs import Job
from .params import ExportRequest, parameters_items, parse_kickoff, parse_prefer
from .plan import member_ids, resolve_types
from .steps import group_at, group_first_stored

if TYPE_CHECKING:
    from .service import BulkExports

__all__ = ["TooManyJobs", "kickoff"]

R = fs.resource
FHIR_JSON = "application/fhir+json"
_PATIENT_GROUPS = ("person", "animal")
"""Group.type codes whose members are Patients (ValueSet group-type)."""


class TooManyJobs(FhirError):
    """429: the caller already has ``bulk_max_jobs`` exports queued or running."""

    status = 429
    code = "throttled"


def _check_access(access: Access, export: ExportRequest, types: list[str]) -> None:
    """Every exported type needs read access; a patient-scoped token only exports its patient."""
    if export.level == "system" and access.patient is not None:
        raise Forbidden("A patient-scoped token cannot run a system-level export; use /Patient/$export, "
                        "which exports the token's patient.")
    if export.level == "group":
        access.require("read", "Group")
    for res_type in types:
        if not access.allowed("r", res_type):
            if export.types is None:
                raise Forbidden(
                    f"An export of all types needs read access to every type, and this token cannot read {res_type}. "
                    "Name the types you may read with _type, or use a token with "
                    f"{'system' if export.level == 'system' else 'patient or system'}/*.read."
                )
            access.require("read", res_type)
    if export.latest_provenance:
        access.require("read", "Provenance")


def _check_store(bulk: BulkExports, access: Access, export: ExportRequest, transaction_time: int) -> int | None:
    """Checks that need the database: the Group (as of the transaction time), the patients. Returns
    when the Group was first stored, if that is after the transaction time (``group_first_stored``)."""
    younger: int | None = None
    with bulk.store.reader() as conn:
        if export.level == "group":
            assert export.group_id is not None
            group = group_at(conn, export.group_id, transaction_time)
            first = group_first_stored(conn, export.group_id) if group is None else None
            if first is not None and first > transaction_time:
                younger = first
                group = group_at(conn, export.group_id, first)
            if group is None:
                raise NotFound(f"Group/{export.group_id} is not known.")
            check_visible(conn, access, "Group", export.group_id)
            if group.get("actual") is not True:
                raise BadRequest(f"Group/{export.group_id} is not an actual group (actual must be true): "
                                 "only a group of real patients can be exported.", expression="Group.actual")
            if group.get("type") not in _PATIENT_GROUPS:
                raise BadRequest(f"Group/{export.group_id} is a group of type {group.get('type')!r}: only a group of "
                                 "Patients (type person or animal) can be exported.", expression="Group.type")
            if export.patients is not None:
                members = set(member_ids(group))
                outside = [p for p in export.patients if p not in members]
                if outside:
                    raise BadRequest(f"Patient/{outside[0]} is not a member of Group/{export.group_id}; "
                                     "'patient' may only name members of the group.", expression="patient")
        if export.patients is not None:
            # in chunks: one IN list of every id passes the engines' limit of bound parameters
            # (SQLite 250,000 or 32,766, PostgreSQL 65,535) long before the body limit
            found: set[str] = set()
            for start in range(0, len(export.patients), IDS_PER_LOOKUP):
                chunk = export.patients[start:start + IDS_PER_LOOKUP]
                found.update(r[0] for r in conn.execute(
                    sa.select(R.c.res_id).where(R.c.res_type == "Patient", R.c.res_id.in_(chunk),
                                                R.c.deleted == sa.false())
                ))
            for pid in export.patients:
                if pid not in found or (access.patient is not None and pid != access.patient):
                    raise BadRequest(f"Patient/{pid} is not known.", expression="patient")
    return younger


async def kickoff(request: Request, ctx: Any, *, bulk: BulkExports, level: str) -> Response:
    prefer = parse_prefer(",".join(request.headers.getlist("prefer")))  # every Prefer line (RFC 7240)
    if "respond-async" not in prefer:
        raise BadRequest("$export runs asynchronously: send the header 'Prefer: respond-async'.")
    lenient = prefer.get("handling") == "lenient"
    group_id = request.path_params.get("id")
    if level == "group" and not group_id:
        raise BadRequest("Group export needs a group: /Group/<id>/$export.")
    if level == "patient" and group_id:
        raise BadRequest("Patient-level export is /Patient/$export; to export some patients, POST it with "
                         "'patient' parameters.")
    access = await ctx.policy(request)
    if request.method == "POST":
        extra = [k for k in request.query_params if k not in ("_format", "_pretty")]
        if extra:
            raise BadRequest(f"A POST kick-off takes its parameters in the Parameters body, not the URL ({extra[0]}).")
        raw = await request.body()
        if len(raw) > ctx.max_body:
            raise BadRequest(f"The request body is larger than {ctx.max_body} bytes.")
        items = parameters_items(parse_body(raw, ctx.max_depth))
    else:
        items = list(request.query_params.multi_items())
    export = parse_kickoff(level, items, ctx.known_types, lenient=lenient, group_id=group_id,
                           allow_patient=request.method == "POST")
    types, warnings = resolve_types(export, ctx.known_types)
    if warnings and prefer.get("handling") == "strict":
        raise BadRequest(warnings[0] + " (Without 'Prefer: handling=strict' this is a warning in the export's error file.)")
    _check_access(access, export, types)
    # Not "now": a write stamped before now may commit after the worker reads. Every write stamped
    # at or before this time has committed; later ones are the next _since export's.
    transaction_time = await ctx.call(bulk.store.write_horizon) - 1
    group_time = await ctx.call(_check_store, bulk, access, export, transaction_time)
    if bulk.max_jobs > 0 and await ctx.call(bulk.jobs.active_count, access.client_id, access.subject) >= bulk.max_jobs:
        exc = TooManyJobs(f"This client already has {bulk.max_jobs} exports queued or running; wait for one to "
                          "finish (or DELETE one) and try again.")
        exc.headers["Retry-After"] = str(max(bulk.retry_after, 10))
        raise exc
    job_id = uuid.uuid4().hex
    path = request.url.path
    query = request.url.query if request.method == "GET" else ""
    url = ctx.base + path[path.find("/", 1):] if path.startswith("/fhir/") else ctx.base + path
    job = Job(
        id=job_id, level=level, export=export,
        info={"url": url + (f"?{query}" if query else ""), "files": f"{bulk.public_base}/bulk/files/{job_id}",
              "patient": access.patient, "filters": {k: list(v) for k, v in access.filters.items()},
              **({"group_at": group_time} if group_time is not None else {})},
        client_id=access.client_id, subject=access.subject, state="queued", created_at=now_ms(),
        transaction_time=transaction_time,
    )
    await ctx.call(bulk.jobs.create, job)
    bulk.worker.wake()
    status_url = f"{bulk.public_base}/bulk/status/{job_id}"
    outcome = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": f"Export {job_id} accepted; poll {status_url} for its status.",
    }]}
    return Response(dumps(outcome), 202, {"Content-Location": status_url}, media_type=FHIR_JSON)

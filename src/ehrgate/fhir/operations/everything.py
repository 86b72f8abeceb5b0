"""Patient/$everything (http://hl7.org/fhir/R4/patient-operation-everything.html).

The patient and every resource in its compartment (stored on write), newest-last by storage
order, paged with ``_count``; ``_since`` and ``_type`` narrow the set.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidSearch
from ..search.normalize import parse_fhir_date_range
from ..store import schema as t

__all__ = ["NAME", "everything"]

NAME = "Patient$everything"
R, V, C = t.resource, t.resource_version, t.compartment


def everything_page(ctx: Any, patient_id: str, params: dict[str, str], self_url: str, access: Any = None) -> bytes:
    from ..access import OPEN
    from ..api.render import bundle_bytes
    from ..guard import check_visible, visible
    from ..search.compartment import PATIENT_COMPARTMENT

    access = access or OPEN
    ctx.store.read("Patient", patient_id)
    with ctx.store.reader() as conn:
        check_visible(conn, access, "Patient", patient_id)
    count_raw = params.get("_count")
    try:
        count = min(int(count_raw), ctx.max_page) if count_raw else ctx.page_size
    except ValueError:
        raise InvalidSearch(f"'_count' has value {count_raw!r}; expected a whole number.") from None
    if count < 1:  # LIMIT 0 would page forever, a negative LIMIT is "no limit" (SQLite) or an error
        raise InvalidSearch(f"'_count' has value {count_raw!r}; expected a whole number of at least 1.")
    after = int(params["_after_pk"]) if params.get("_after_pk", "").isdigit() else 0
    conds: list[Any] = [
        R.c.deleted == sa.false(),
        R.c.pk > after,
        sa.or_(
            R.c.pk.in_(sa.select(C.c.res_pk).where(C.c.patient_id == patient_id)),
            sa.and_(R.c.res_type == "Patient", R.c.res_id == patient_id),
        ),
    ]
    if params.get("_since"):
        try:
            since = parse_fhir_date_range(params["_since"])[0]
        except ValueError:
            raise InvalidSearch(f"'_since' has value {params['_since']!r}; expected an instant.") from None
        conds.append(R.c.last_updated >= since)
    if params.get("_type"):
        types = [x.strip() for x in params["_type"].split(",") if x.strip()]
        unknown = [t for t in types if t not in ctx.known_types]
        if unknown:  # an empty result would read as "this patient has none"
            raise InvalidSearch(f"'_type' names {unknown[0]!r}, which is not a resource type this server knows.")
        conds.append(R.c.res_type.in_(types))
    if access is not OPEN:
        conds.append(R.c.res_type.in_([t for t in PATIENT_COMPARTMENT if access.allowed("r", t)]))
    with ctx.store.reader() as conn:
        rows = conn.execute(
            sa.select(R.c.pk, R.c.res_type, R.c.res_id, V.c.raw)
            .join(V, sa.and_(V.c.res_pk == R.c.pk, V.c.version == R.c.version))
            .where(*conds)
            .order_by(R.c.pk)
            .limit(count + 1)
        ).all()
    more = len(rows) > count
    rows = rows[:count]
    if access.filters:
        with ctx.store.reader() as conn:
            rows = [r for r in rows if not access.filters_for(r.res_type) or visible(conn, access, r.res_type, r.res_id)]
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    links = [{"relation": "self", "url": self_url}]
    if more:
        sep = "&" if "?" in self_url else "?"
        links.append({"relation": "next", "url": f"{self_url}{sep}_after_pk={rows[-1].pk}"})
    head["link"] = links
    entries = [
        ({"fullUrl": f"{ctx.base}/{r.res_type}/{r.res_id}", "search": {"mode": "match"}}, r.raw) for r in rows
    ]
    return bundle_bytes(head, entries)


async def everything(request: Request, ctx: Any) -> Response:
    from ..api.render import fhir_response

    patient_id = request.path_params.get("id")
    if patient_id is None:
        raise InvalidSearch("Patient/$everything needs a patient: use Patient/<id>/$everything.")
    params = {k: v for k, v in request.query_params.items() if k != "_after_pk"}
    from urllib.parse import urlencode

    self_url = f"{ctx.base}/Patient/{patient_id}/$everything" + (f"?{urlencode(params)}" if params else "")
    params["_after_pk"] = request.query_params.get("_after_pk", "")
    from ..api.handlers import access_of

    access = await access_of(ctx, request)
    access.require("everything", "Patient")
    body = await ctx.call(everything_page, ctx, patient_id, params, self_url, access)
    return fhir_response(request, body)

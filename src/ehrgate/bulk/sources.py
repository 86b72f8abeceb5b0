"""Where the NDJSON lines of one work unit come from: one streamed query per unit, in ``pk`` order.

A unit's query runs on a streaming cursor (a server-side cursor on PostgreSQL; SQLite steps its
statement as rows are fetched) inside one read transaction, and hands rows over in partitions of
``batch`` rows, so memory stays flat however large the export. Every row carries its ``pk``: the
worker checkpoints "everything up to pk N is written" and a resumed run restarts the query with
``pk > N``; the worker also restarts it every few seconds so no read transaction lives long.
Reads never block writers (SQLite WAL, PostgreSQL MVCC).

Lines are the stored JSON bytes of each version, written as they are (no re-serialisation), except
when ``_elements`` asks for a subset.

Consistency: the export shows the store as of its ``transactionTime`` T. A resource changed after
T (while the export runs) is written as the version that was current at T, or left out if it did
not exist then; search criteria (``_typeFilter``, compartments) are evaluated on current data.
Every write stamped at or before T had committed when the kick-off chose T (``Store.write_horizon``),
so every read of the export (each restart is a new snapshot) sees all of them.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
import sqlalchemy as sa

from ..fhir.api.render import apply_elements
from ..fhir.errors import InvalidSearch
from ..fhir.jsonio import loads
from ..fhir.search.query import ParsedQuery, parse_query
from ..fhir.search.sql import Sql, conditions
from ..fhir.store import schema as fs
from ..fhir.validation.definitions import TYPES
from . import schema as bs
from .jobs import Job

__all__ = ["Line", "Stream", "stream_for"]

R, V, C, REF = fs.resource, fs.resource_version, fs.compartment, fs.idx_reference
P = bs.job_patient

Line = tuple[int, str, bytes]
"""(pk, file prefix - the resource type, or ``deleted`` -, the NDJSON line)."""
Stream = Callable[[sa.Connection, int], Generator[tuple[list[Line], int], None, None]]
"""(connection, after pk) → partitions of (lines, the last pk read, written or not)."""

_AT = (
    sa.select(V.c.raw, V.c.deleted, V.c.last_updated)
    .where(V.c.res_pk == sa.bindparam("pk"), V.c.last_updated <= sa.bindparam("t"))
    .order_by(V.c.version.desc())
    .limit(1)
)


def _driver_rows(conn: sa.Connection, stmt: sa.Select[Any], after: int, batch: int) -> Iterator[list[Any]]:
    """Run ``stmt`` on the driver's cursor (SQLAlchemy's per-row result machinery cost a third of
    the export's time on PostgreSQL): a named, server-side cursor on PostgreSQL, SQLite's own
    lazily stepped cursor; rows in lists of ``batch``."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = dict(compiled.params)
    params["after"] = after
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        cur = raw.cursor(name=f"bulk_{uuid.uuid4().hex[:16]}")
        cur.itersize = batch
        cur.execute(str(compiled), params)
    else:
        cur = raw.cursor()
        cur.execute(str(compiled), tuple(params[name] for name in compiled.positiontup or ()))
    try:
        while rows := cur.fetchmany(batch):
            yield rows
    finally:
        cur.close()


_FILTERS = itertools.count()
_BIND = re.compile(r"(?<![:\w]):(\w+)")


def _search_clause(query: ParsedQuery) -> sa.TextClause:
    """One search as a condition on ``resource``, from the search engine's SQL compiler (the
    same SQL a FHIR search runs); bind names get a prefix of their own so filters can be combined.
    Only the parameters the text uses are bound (the compiler may allocate some it then leaves out)."""
    q = Sql(f"bf{next(_FILTERS)}_")
    text = "(" + " AND ".join(conditions(q, query, "resource")) + ")"
    used = set(_BIND.findall(text))
    return sa.text(text).bindparams(**{k: v for k, v in q.params.items() if k in used})


def _filter(res_type: str, queries: list[str], *, scopes: bool = False) -> list[Any]:
    """Search queries ORed (each query's own parameters ANDed), as one condition. ``scopes``: the
    caller's query constraints, where (as for a read, ``fhir.guard.visible``) a criterion this type
    cannot be searched by matches nothing of it (a ``*`` constraint names parameters of some types)."""
    if not queries:
        return []
    parsed = []
    for q in queries:
        try:
            parsed.append(parse_query(res_type, parse_qsl(q, keep_blank_values=True), strict=True))
        except InvalidSearch:
            if not scopes:
                raise
    if not parsed:
        return [sa.false()]
    return [sa.or_(*[sa.and_(R.c.res_type == p.res_type, _search_clause(p)) for p in parsed])]


def _scope(job: Job) -> list[Any]:
    """Patient and Group level: resources in the compartment of the job's patients."""
    if job.level == "system":
        return []
    comp = sa.select(C.c.res_pk)
    if job.cursor.get("all_patients"):
        return [R.c.pk.in_(comp)]
    members = sa.select(P.c.patient_id).where(P.c.job_id == job.id)
    return [R.c.pk.in_(comp.where(C.c.patient_id.in_(members)))]


def _since(job: Job) -> list[Any]:
    since = job.export.since
    if since is None:
        return []
    changed = R.c.last_updated > since
    if job.level == "group" and job.cursor.get("added"):
        # Patients who joined the Group after _since: all of their data (IG, group-export _since).
        added = sa.select(P.c.patient_id).where(P.c.job_id == job.id, P.c.added == sa.true())
        return [sa.or_(changed, R.c.pk.in_(sa.select(C.c.res_pk).where(C.c.patient_id.in_(added))))]
    return [changed]


def _types(unit: dict[str, Any]) -> list[Any]:
    """Which types, each with its _typeFilter queries (ORed) and the caller's query-constrained
    scopes (ORed), the two ANDed."""
    filters: dict[str, list[str]] = unit.get("filters") or {}
    access: dict[str, list[str]] = unit.get("access") or {}
    special = [t for t in unit["types"] if filters.get(t) or access.get(t)]
    plain = [t for t in unit["types"] if t not in special]
    branches: list[Any] = []
    if unit.get("all") and not special:
        return []
    if unit.get("all"):
        branches.append(R.c.res_type.not_in(special))
    elif plain:
        branches.append(R.c.res_type.in_(plain))
    for t in special:
        branches.append(sa.and_(R.c.res_type == t, *_filter(t, filters.get(t, [])),
                                *_filter(t, access.get(t, []), scopes=True)))
    return [sa.or_(*branches)] if branches else [sa.false()]


def output_conditions(job: Job, unit: dict[str, Any]) -> list[Any]:
    return [R.c.deleted == sa.false(), *_types(unit), *_scope(job), *_since(job)]


def _elements(job: Job) -> Callable[[str], list[str] | None]:
    cache: dict[str, list[str] | None] = {}

    def of(res_type: str) -> list[str] | None:
        if res_type not in cache:
            wanted = job.export.elements_for(res_type)
            td = TYPES.get(res_type)
            mandatory = [name for _label, names in td.required for name in names] if td is not None else []
            cache[res_type] = None if wanted is None else [*wanted, *mandatory]
        return cache[res_type]

    return of


def _resource_stream(job: Job, conds: list[Any], batch: int) -> Stream:
    stmt = (
        sa.select(R.c.pk, R.c.res_type, R.c.last_updated, V.c.raw)
        .join(V, sa.and_(V.c.res_pk == R.c.pk, V.c.version == R.c.version))
        .where(*conds, R.c.pk > sa.bindparam("after", 0))
        .order_by(R.c.pk)
    )
    t = job.transaction_time
    since = job.export.since
    keep_old = job.level == "group" and bool(job.cursor.get("added"))
    elements = _elements(job) if job.export.elements else None

    def stream(conn: sa.Connection, after: int) -> Generator[tuple[list[Line], int], None, None]:
        for rows in _driver_rows(conn, stmt, after, batch):
            lines: list[Line] = []
            for pk, res_type, last_updated, raw in rows:
                if last_updated > t:  # changed while the export runs: the version current at T
                    old = conn.execute(_AT, {"pk": pk, "t": t}).first()
                    if old is None or old.deleted or old.raw is None:
                        continue
                    if since is not None and old.last_updated <= since and not keep_old:
                        continue
                    raw = old.raw
                if elements is not None:
                    subset = elements(res_type)
                    if subset is not None:
                        raw = apply_elements(bytes(raw), subset, None)
                lines.append((pk, res_type, raw if type(raw) is bytes else bytes(raw)))
            yield lines, rows[-1][0]

    return stream


def _provenance_conditions(job: Job, unit: dict[str, Any]) -> list[Any]:
    """includeAssociatedData=LatestProvenanceResources: per exported resource, the Provenance
    that targets it and was recorded last (by lastUpdated), if the caller may read it."""
    outputs = [u for u in job.cursor.get("units", []) if u["kind"] == "output"]
    if not outputs:
        return [sa.false()]
    exported = sa.union_all(
        *[sa.select(R.c.res_type.label("rt"), R.c.res_id.label("rid")).where(*output_conditions(job, u)) for u in outputs]
    ).subquery("exported")
    prov = R.alias("prov")
    ranked = (
        sa.select(
            prov.c.pk.label("pk"),
            sa.func.row_number().over(
                partition_by=(REF.c.target_type, REF.c.target_id),
                order_by=(prov.c.last_updated.desc(), prov.c.pk.desc()),
            ).label("rn"),
        )
        .select_from(
            REF.join(prov, prov.c.pk == REF.c.res_pk).join(
                exported, sa.and_(exported.c.rt == REF.c.target_type, exported.c.rid == REF.c.target_id)
            )
        )
        .where(REF.c.res_type == "Provenance", REF.c.param == "target", prov.c.deleted == sa.false())
        .subquery("ranked")
    )
    latest = sa.select(ranked.c.pk).where(ranked.c.rn == 1)
    # a patient-confined token reads only Provenance in its patient's compartment (fhir.guard.visible)
    confined = job.access_patient
    return [
        R.c.res_type == "Provenance",
        R.c.deleted == sa.false(),
        R.c.pk.in_(latest),
        *_filter("Provenance", (unit.get("access") or {}).get("Provenance", []), scopes=True),
        *([R.c.pk.in_(sa.select(C.c.res_pk).where(C.c.patient_id == confined))] if confined is not None else []),
    ]


def _deleted_stream(job: Job, unit: dict[str, Any], batch: int, extract: Callable[[Any], Any]) -> Stream:
    """Deletions after ``_since`` (and at or before T), one transaction Bundle per line
    (export.html#response---complete-status, ``deleted``). For Patient and Group level, a deletion
    counts when the version before it was in one of the job's patients' compartments."""
    types = unit.get("types") or []
    stmt = (
        sa.select(R.c.pk, R.c.res_type, R.c.res_id, R.c.version)
        .where(
            R.c.deleted == sa.true(), R.c.res_type.in_(types), R.c.last_updated > (job.export.since or 0),
            R.c.last_updated <= job.transaction_time, R.c.pk > sa.bindparam("after", 0),
        )
        .order_by(R.c.pk)
    )
    previous = sa.select(V.c.raw).where(V.c.res_pk == sa.bindparam("pk"), V.c.version == sa.bindparam("v"))

    def in_scope(conn: sa.Connection, pk: int, version: int) -> bool:
        if job.level == "system":
            return True
        raw = conn.execute(previous, {"pk": pk, "v": version - 1}).scalar()
        if raw is None:
            return False
        patients = extract(loads(bytes(raw))).compartments
        if not patients:
            return False
        if job.cursor.get("all_patients"):
            return True
        hit = conn.execute(
            sa.select(P.c.patient_id).where(P.c.job_id == job.id, P.c.patient_id.in_(sorted(patients))).limit(1)
        ).first()
        return hit is not None

    def deletions(conn: sa.Connection, part: Any) -> list[Line]:
        lines: list[Line] = []
        for pk, res_type, res_id, version in part:
            if in_scope(conn, pk, version):
                bundle = {"resourceType": "Bundle", "type": "transaction",
                          "entry": [{"request": {"method": "DELETE", "url": f"{res_type}/{res_id}"}}]}
                lines.append((pk, "deleted", orjson.dumps(bundle)))
        return lines

    def stream(conn: sa.Connection, after: int) -> Generator[tuple[list[Line], int], None, None]:
        if not types:
            return
        for part in _driver_rows(conn, stmt, after, batch):
            yield deletions(conn, part), part[-1][0]

    return stream


def stream_for(job: Job, unit: dict[str, Any], batch: int, extract: Callable[[Any], Any]) -> Stream:
    """The row stream of one unit of ``job.cursor['units']``."""
    kind = unit["kind"]
    if kind == "output":
        return _resource_stream(job, output_conditions(job, unit), batch)
    if kind == "provenance":
        return _resource_stream(job, _provenance_conditions(job, unit), batch)
    if kind == "deleted":
        return _deleted_stream(job, unit, batch, extract)
    raise ValueError(f"Unknown export unit kind {kind!r}")

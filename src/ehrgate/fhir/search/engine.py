"""Run parsed searches on the index tables (never on JSON) and page the results.

Each clause becomes ``resource.pk IN (SELECT res_pk FROM idx_<type> WHERE ...)`` so every
condition is answered from an index. Paging is keyset-based: a cursor holds the sort values and
``pk`` of the last row, so ``next``/``previous`` links stay valid while data changes.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from ..errors import InvalidSearch
from ..store import schema as t
from ..store.sql import cursor_of
from .query import ParsedQuery, parse_query
from .results import parse_include
from .sql import Sql, after, conditions, lead_pks, ordered_lead, sort_keys

__all__ = ["SearchPage", "filter_clause", "match_ids", "run_search"]

R = t.resource
V = t.resource_version


@dataclass
class SearchPage:
    rows: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(type, id, raw) of the matches on this page, in order."""
    included: list[tuple[str, str, bytes]] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None


# -- running searches (SQL text from sql.py, on the DBAPI cursor) ------------------------------


def _fetch(conn: sa.Connection, q: Sql, text: str) -> list[Any]:
    pg = conn.dialect.name == "postgresql"
    cur = cursor_of(conn)
    cur.execute(Sql.render(text, pg), q.params)
    return list(cur.fetchall())


def filter_clause(query: ParsedQuery, prefix: str = "f_") -> sa.TextClause:
    """The search ``query`` as one SQLAlchemy condition on the ``resource`` table, for callers
    that build their own statements (bulk export's ``_typeFilter``). ``prefix`` keeps bind names
    apart when several filters share a statement."""
    q = Sql(prefix)
    return sa.text("(" + " AND ".join(conditions(q, query, "resource")) + ")").bindparams(**q.params)


_FILTER_NAMES = itertools.count()


def _conditions(query: ParsedQuery) -> list[Any]:
    """Conditions as a list, each with bind names of its own (callers may combine many)."""
    return [filter_clause(query, f"c{next(_FILTER_NAMES)}_")]


def match_ids(conn: sa.Connection, res_type: str, criteria: str, dialect: str = "") -> list[tuple[int, str]]:
    """(pk, id) of the current resources that match ``criteria`` (conditional interactions)."""
    from urllib.parse import parse_qsl

    items = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    if not items:
        raise InvalidSearch(f"Conditional criteria {criteria!r} are empty; give at least one search parameter.")
    query = parse_query(res_type, items, strict=True)
    if not query.clauses:  # only result parameters or empty values: they would match every resource
        raise InvalidSearch(
            f"Conditional criteria {criteria!r} hold no search parameter with a value (result parameters such as "
            "_count select nothing); give at least one, e.g. identifier=system|value."
        )
    q = Sql()
    text = "SELECT r.pk, r.res_id FROM resource r WHERE " + " AND ".join(conditions(q, query)) + " LIMIT 1002"
    return [(row[0], row[1]) for row in _fetch(conn, q, text)]


def encode_cursor(values: Sequence[Any], direction: str, order: str = "") -> str:
    """``order`` names the ordering the values belong to (see ``_order_of``)."""
    data: dict[str, Any] = {"v": list(values), "d": direction}
    if order:
        data["o"] = order
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def decode_cursor(text: str, order: str = "") -> tuple[list[Any], str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        values, direction = list(data["v"]), str(data["d"])
        made_for = str(data.get("o", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidSearch("The paging cursor is not valid; start the search again from the first page.") from None
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
        raise InvalidSearch("The paging cursor is not valid; start the search again from the first page.")
    if made_for != order:
        # The keyset values of one ordering compared under another would skip or repeat rows, or
        # compare a string with a number (an error on PostgreSQL).
        raise InvalidSearch("The paging cursor does not fit this search; start again from the first page.")
    return values, direction


def _order_of(query: ParsedQuery, lead: bool) -> str:
    """The ordering a page's cursor values belong to: the lead walk's pk order, or the ``_sort``."""
    return "lead" if lead else "sort:" + ",".join(query.result.get("_sort", []))


def run_search(
    conn: sa.Connection,
    query: ParsedQuery,
    *,
    count: int,
    cursor: str | None = None,
    want_total: bool = False,
    compartment: str | None = None,
    alternatives: tuple[ParsedQuery, ...] = (),
) -> SearchPage:
    from .params import params_for

    page = SearchPage()
    if want_total:
        tq = Sql()
        where = " AND ".join(conditions(tq, query, "r", compartment, alternatives))
        page.total = int(_fetch(conn, tq, f"SELECT count(*) FROM resource r WHERE {where}")[0][0])
    if count == 0:
        return page
    lead = ordered_lead(query, compartment, alternatives)
    if lead is not None:
        bound, forward = None, True
        if cursor:
            values, direction = decode_cursor(cursor, _order_of(query, True))
            if len(values) != 1 or type(values[0]) is not int:
                raise InvalidSearch("The paging cursor does not fit this search; start again from the first page.")
            bound, forward = values[0], direction != "prev"
        rows = _walk_lead(conn, query, lead, count + 1, bound, forward)
    else:
        q = Sql()
        conds = conditions(q, query, "r", compartment, alternatives)
        keys = sort_keys(q, query, params_for(query.res_type)) + [("r.pk", False)]
        forward = True
        if cursor:
            values, direction = decode_cursor(cursor, _order_of(query, False))
            if len(values) != len(keys) or type(values[-1]) is not int:
                raise InvalidSearch("The paging cursor does not fit this search; start again from the first page.")
            forward = direction != "prev"
            conds.append(after(q, keys, values, forward))
        order = ", ".join(f"{expr} {'DESC' if desc == forward else 'ASC'}" for expr, desc in keys)
        selected = ", ".join(f"{expr} AS k{i}" for i, (expr, _desc) in enumerate(keys))
        text = (
            f"SELECT r.res_type, r.res_id, v.raw, {selected} FROM resource r "
            "JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
            f"WHERE {' AND '.join(conds)} ORDER BY {order} LIMIT {int(count) + 1}"
        )
        rows = _fetch(conn, q, text)
    more = len(rows) > count
    rows = rows[:count]
    if not forward:
        rows.reverse()
    page.rows = [(r[0], r[1], bytes(r[2])) for r in rows]
    if rows:
        first, last = list(rows[0][3:]), list(rows[-1][3:])
        order = _order_of(query, lead is not None)
        if (more and forward) or (not forward):
            page.next_cursor = encode_cursor(last, "next", order)
        if (cursor and forward) or (not forward and more):
            page.prev_cursor = encode_cursor(first, "prev", order)
    return page


def _walk_lead(conn: sa.Connection, query: ParsedQuery, lead: Any, want: int, bound: int | None,
               forward: bool) -> list[Any]:
    """The first ``want`` matches in pk order after ``bound``: candidates come from the lead clause's
    index in pk order, a chunk at a time (growing), and the other clauses filter each chunk. The work
    is proportional to the page, not to how many resources share the lead value."""
    rows: list[Any] = []
    chunk = max(64, 2 * want)
    while len(rows) < want:
        lq = Sql()
        pks = [int(r[0]) for r in _fetch(conn, lq, lead_pks(lq, query.res_type, lead, bound, forward, chunk))]
        if not pks:
            break
        q = Sql()
        conds = conditions(q, query, "r", candidates=pks, skip=lead)
        text = (
            "SELECT r.res_type, r.res_id, v.raw, r.pk AS k0 FROM resource r "
            "JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
            f"WHERE {' AND '.join(conds)} ORDER BY r.pk {'ASC' if forward else 'DESC'} LIMIT {int(want - len(rows))}"
        )
        rows.extend(_fetch(conn, q, text))
        if len(pks) < chunk:
            break
        bound = pks[-1]
        chunk = min(chunk * 4, 20_000)
    return rows


# -- _include / _revinclude ---------------------------------------------------------------------


def load_includes(conn: sa.Connection, query: ParsedQuery, page_rows: list[tuple[str, str, bytes]],
                  compartment: str | None = None) -> list[tuple[str, str, bytes]]:
    """Resources named by ``_include`` / ``_revinclude`` for the page (``:iterate`` one level)."""
    includes = [parse_include(s, "_include") for s in query.result.get("_include", [])]
    revincludes = [parse_include(s, "_revinclude") for s in query.result.get("_revinclude", [])]
    if not page_rows or not (includes or revincludes):
        return []
    seen = {(ty, i) for ty, i, _ in page_rows}
    found: list[tuple[str, str, bytes]] = []

    def fetch(pairs: set[tuple[str, str]]) -> list[tuple[str, str, bytes]]:
        new = [p for p in pairs if p not in seen]
        out: list[tuple[str, str, bytes]] = []
        for start in range(0, len(new), 200):
            chunk = new[start : start + 200]
            cond = sa.or_(*[sa.and_(R.c.res_type == ty, R.c.res_id == i) for ty, i in chunk])
            stmt = sa.select(R.c.pk, R.c.res_type, R.c.res_id, V.c.raw).join(V, sa.and_(V.c.res_pk == R.c.pk, V.c.version == R.c.version)).where(
                cond, R.c.deleted == sa.false()
            )
            if compartment is not None:
                comp = t.compartment
                stmt = stmt.where(
                    sa.or_(
                        R.c.pk.in_(sa.select(comp.c.res_pk).where(comp.c.patient_id == compartment)),
                        ~R.c.res_type.in_(_compartment_types()),
                    )
                )
            for r in conn.execute(stmt):
                seen.add((r.res_type, r.res_id))
                out.append((r.res_type, r.res_id, r.raw))
        return out

    def forward(rows: list[tuple[str, str, bytes]], specs: list[tuple[str, str, str | None, bool]]) -> list[Any]:
        pairs: set[tuple[str, str]] = set()
        ref = t.idx_reference
        for src, code, target, _it in specs:
            ids = [i for ty, i, _ in rows if ty == src]
            if not ids:
                continue
            sub_pks = sa.select(R.c.pk).where(R.c.res_type == src, R.c.res_id.in_(ids))
            stmt = sa.select(ref.c.target_type, ref.c.target_id).where(
                ref.c.res_type == src, ref.c.res_pk.in_(sub_pks), ref.c.target_id.is_not(None)
            )
            if code != "*":
                stmt = stmt.where(ref.c.param == code)
            if target:
                stmt = stmt.where(ref.c.target_type == target)
            pairs.update((r.target_type, r.target_id) for r in conn.execute(stmt) if r.target_type)
        return fetch(pairs)

    def reverse(rows: list[tuple[str, str, bytes]], specs: list[tuple[str, str, str | None, bool]]) -> list[Any]:
        pairs: set[tuple[str, str]] = set()
        ref = t.idx_reference
        for src, code, target, _it in specs:
            targets = [(ty, i) for ty, i, _ in rows if target is None or ty == target]
            if not targets:
                continue
            cond = sa.or_(*[sa.and_(ref.c.target_type == ty, ref.c.target_id == i) for ty, i in targets])
            stmt = (
                sa.select(R.c.res_type, R.c.res_id)
                .join(ref, ref.c.res_pk == R.c.pk)
                .where(ref.c.res_type == src, cond, R.c.deleted == sa.false())
            )
            if code != "*":
                stmt = stmt.where(ref.c.param == code)
            pairs.update((r.res_type, r.res_id) for r in conn.execute(stmt))
        return fetch(pairs)

    found.extend(forward(page_rows, includes))
    found.extend(reverse(page_rows, revincludes))
    iter_inc = [s for s in includes if s[3]]
    iter_rev = [s for s in revincludes if s[3]]
    if found and (iter_inc or iter_rev):
        level = list(found)
        found.extend(forward(level, iter_inc))
        found.extend(reverse(level, iter_rev))
    return found


def _compartment_types() -> list[str]:
    from .compartment import PATIENT_COMPARTMENT

    return list(PATIENT_COMPARTMENT)


def everything_types() -> list[str]:
    return _compartment_types()

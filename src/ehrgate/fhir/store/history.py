"""history at instance, type and system level (http://hl7.org/fhir/R4/http.html#history).

Newest first, keyset-paged on the version sequence so links stay valid as new versions arrive.
``_since`` keeps versions written at or after the instant; ``_at`` keeps the versions that were
current at some point during the given time (a version is current from its own lastUpdated until
the next version's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from ..errors import InvalidSearch
from ..search.normalize import parse_fhir_date_range
from . import schema as t
from .model import iso_instant
from .service import Store

__all__ = ["HistoryQuery", "history_page"]

V = t.resource_version


@dataclass(frozen=True)
class HistoryQuery:
    res_type: str | None
    res_id: str | None
    since: int | None
    at: tuple[int, int] | None
    count: int
    before: int | None
    at_text: str | None = None
    """``_at`` as the client wrote it: its precision is its meaning (``_at=2026-12`` is a month)."""

    @classmethod
    def from_params(
        cls, res_type: str | None, res_id: str | None, params: Mapping[str, str], default: int, maximum: int
    ) -> HistoryQuery:
        def instant(name: str) -> tuple[int, int] | None:
            raw = params.get(name)
            if raw is None:
                return None
            try:
                return parse_fhir_date_range(raw)
            except ValueError:
                raise InvalidSearch(f"'{name}' has value {raw!r}; expected an instant such as 2026-01-01T00:00:00Z.") from None

        since = instant("_since")
        count_raw = params.get("_count")
        try:
            count = min(int(count_raw), maximum) if count_raw is not None else default
        except ValueError:
            raise InvalidSearch(f"'_count' has value {count_raw!r}; expected a whole number.") from None
        if count < 0:
            raise InvalidSearch(f"'_count' has value {count}; expected zero or more.")
        before_raw = params.get("_before_vpk")
        return cls(res_type, res_id, since[0] if since else None, instant("_at"), count,
                   int(before_raw) if before_raw and before_raw.isdigit() else None, params.get("_at"))


def history_page(store: Store, q: HistoryQuery, base: str, self_url: str) -> bytes:
    from ..api.render import bundle_bytes

    conds: list[Any] = []
    if q.res_type:
        conds.append(V.c.res_type == q.res_type)
    if q.res_id:
        conds.append(V.c.res_id == q.res_id)
    if q.since is not None:
        conds.append(V.c.last_updated >= q.since)
    if q.at is not None:
        low, high = q.at
        nxt = V.alias("nxt")
        conds.append(V.c.last_updated <= high)
        conds.append(
            ~sa.exists().where(nxt.c.res_pk == V.c.res_pk, nxt.c.version == V.c.version + 1, nxt.c.last_updated <= low)
        )
    with store.reader() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(V).where(*conds)).scalar_one()
        rows: list[Any] = []
        if q.count:
            page_conds = list(conds)
            if q.before is not None:
                page_conds.append(V.c.vpk < q.before)
            rows = list(conn.execute(
                sa.select(V.c.vpk, V.c.res_type, V.c.res_id, V.c.version, V.c.last_updated, V.c.method, V.c.deleted, V.c.raw)
                .where(*page_conds)
                .order_by(V.c.vpk.desc())
                .limit(q.count + 1)
            ).all())
    more = len(rows) > q.count
    rows = rows[: q.count]
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "total": total}
    params = []
    if q.since is not None:
        params.append(f"_since={iso_instant(q.since)}")
    if q.at_text is not None:
        params.append(f"_at={quote(q.at_text, safe=':')}")  # quoted: a raw '+hh:mm' would come back a space
    if q.count:
        params.append(f"_count={q.count}")
    base_link = self_url + ("?" + "&".join(params) if params else "")
    sep = "&" if "?" in base_link else "?"
    # self is this page: a page reached through next carries its cursor (else self named page 1)
    links = [{"relation": "self", "url": base_link if q.before is None else f"{base_link}{sep}_before_vpk={q.before}"}]
    if more and rows:
        links.append({"relation": "next", "url": f"{base_link}{sep}_before_vpk={rows[-1].vpk}"})
    head["link"] = links
    entries = []
    for r in rows:
        url = f"{r.res_type}/{r.res_id}"
        method = "DELETE" if r.deleted else ("POST" if r.version == 1 and r.method == "POST" else "PUT")
        status = "204 No Content" if r.deleted else ("201 Created" if r.version == 1 else "200 OK")
        entry: dict[str, Any] = {
            "fullUrl": f"{base}/{url}",
            "request": {"method": method, "url": url if method != "POST" else r.res_type},
            "response": {"status": status, "etag": f'W/"{r.version}"', "lastModified": iso_instant(r.last_updated)},
        }
        entries.append((entry, None if r.deleted else r.raw))
    return bundle_bytes(head, entries)

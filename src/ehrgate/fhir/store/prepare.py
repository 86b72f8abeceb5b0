"""The pure half of a write: validate, extract index rows, serialise — runnable in any process.

``WriteSession`` does these steps itself for a single write. A bulk load runs them in worker
processes instead (``fhir/loadprep.py``) and hands the results to ``WriteSession.write_prepared``,
which does only the SQL: the version, the rows and the outbox event still come from the one
write path, in one database transaction. A ``PreparedBatch`` is shaped for cheap transfer between
processes: the JSON as bytes and the index rows as plain tuples per table (unpickling one row
object per row, which names its class, cost more than inserting it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from ..errors import BadRequest, InvalidResource
from ..jsonio import dumps
from ..search import types as t
from ..search.types import IndexRows
from . import sql as q

__all__ = ["PreparedBatch", "PreparedEntry", "check_resource", "index_tuples", "stored_json"]

_SKIP_INDEX_PARAMS = frozenset({"_id", "_lastUpdated"})  # served from the resource table itself
_ROW_VALUES = {name: attrgetter(*cols) for name, (_table, cols) in q.INDEX_COLUMNS.items()}
_OWN_KEYS = ("resourceType", "id", "meta")


def _column_limits() -> dict[str, tuple[int | None, ...]]:
    from .schema import metadata

    out = {}
    for name, (table, cols) in q.INDEX_COLUMNS.items():
        columns = metadata.tables[table].c
        out[name] = tuple(getattr(columns[c].type, "length", None) for c in cols)
    return out


_LIMITS = _column_limits()


def clip(values: tuple[Any, ...], limits: tuple[int | None, ...], short: int = 64) -> tuple[Any, ...]:
    """Index values longer than their column (a 2,000-character valueString) are cut to fit:
    PostgreSQL refuses them otherwise; prefix searches still find them. ``short``: no column of
    ``limits`` is narrower (values up to it need no look at the limits)."""
    for v in values:  # a plain loop: this runs for every index row written
        if isinstance(v, str) and len(v) > short:
            break
    else:
        return values
    return tuple(v[:n] if n is not None and isinstance(v, str) and len(v) > n else v
                 for v, n in zip(values, limits, strict=True))


# The row class of each index table (search/types.py). A row is a NamedTuple: when its fields are
# the table's columns in the same order, the row itself is its SQL values (``head + row`` makes the
# plain tuple written), with no attribute read per column.
_ROW_CLASSES: dict[str, type[Any]] = {
    "strings": t.StringRow, "tokens": t.TokenRow, "references": t.ReferenceRow, "dates": t.DateRow,
    "numbers": t.NumberRow, "quantities": t.QuantityRow, "uris": t.UriRow, "composites": t.CompositeRow,
}


def _in_column_order(name: str) -> type[Any] | None:
    cls = _ROW_CLASSES.get(name)
    if cls is None or not issubclass(cls, tuple):
        return None
    return cls if getattr(cls, "_fields", None) == q.INDEX_COLUMNS[name][1] else None


# name -> (row class taken as its own values or None, attrgetter of the columns, column limits,
# positions of the columns that have a limit, the narrowest limit)
_TABLES = {
    name: (_in_column_order(name), _ROW_VALUES[name], limits, tuple(i for i, n in enumerate(limits) if n is not None),
           min(n for n in limits if n is not None))
    for name, limits in _LIMITS.items()
}


def index_tuples(name: str, rows: Iterable[Any], head: tuple[Any, ...], out: list[tuple[Any, ...]]) -> None:
    """Append ``(*head, *columns)`` to ``out`` for each row of index table ``name`` (sql.INDEX_COLUMNS)
    the store writes: not ``_id`` / ``_lastUpdated`` (the resource table serves those), values
    clipped to their columns. Runs for every index row written, hence the plain loops."""
    cls, values, limits, limited, short = _TABLES[name]
    skip = _SKIP_INDEX_PARAMS
    append = out.append
    for row in rows:
        if row.__class__ is cls:
            if row[0] in skip:  # param
                continue
            vals = row
        else:
            if row.param in skip:
                continue
            vals = values(row)
        for i in limited:  # clip's test, on the columns it may cut: is any longer than the narrowest?
            v = vals[i]
            if v is None:
                continue
            if v.__class__ is str:
                if len(v) > short:
                    vals = clip(vals, limits, short)
                    break
            elif isinstance(v, str) and len(v) > short:  # a str subclass: the same rule
                vals = clip(vals, limits, short)
                break
        append(head + vals)


def check_resource(res_type: str, resource: Any, validate: Callable[[dict[str, Any]], list[Any]]) -> None:
    """Raise the store's error for a body that is not a valid ``res_type`` (else return)."""
    if not isinstance(resource, dict):
        raise BadRequest("Expected a FHIR resource (a JSON object).")
    if resource.get("resourceType") != res_type:
        raise BadRequest(
            f"The body's resourceType {resource.get('resourceType')!r} does not match the URL's {res_type!r}.",
            expression="resourceType",
        )
    issues = [i for i in validate(resource) if getattr(i, "severity", "error") in ("error", "fatal")]
    if issues:
        first = issues[0].diagnostics
        more = f" (and {len(issues) - 1} more problems)" if len(issues) > 1 else ""
        raise InvalidResource(f"{res_type} is not valid: {first}{more}", issues=issues)


def stored_json(res_type: str, res_id: str, meta: dict[str, Any], body: bytes) -> bytes:
    """The stored form ``{"resourceType", "id", "meta", …rest}`` from ``body`` (the rest, serialised):
    byte for byte what ``dumps`` gives for the whole resource in that key order."""
    head = b'{"resourceType":' + dumps(res_type) + b',"id":' + dumps(res_id) + b',"meta":' + dumps(meta)
    return head + (b"," + body[1:] if len(body) > 2 else b"}")


@dataclass(slots=True)
class PreparedEntry:
    """One validated resource: what ``WriteSession.write_prepared`` needs to store it."""

    method: str
    """POST (a create with a server-assigned id, ``res_id`` fresh) or PUT (create-or-update)."""
    res_type: str
    res_id: str
    meta: dict[str, Any]
    """The resource's own meta (versionId and lastUpdated are set when it is written)."""
    body: bytes
    """The resource's JSON without resourceType, id and meta."""


@dataclass(slots=True)
class PreparedBatch:
    """Validated resources and their index rows, in write order.

    ``rows[name]`` holds ``(entry number, *values)`` for index table ``name`` (sql.INDEX_COLUMNS),
    ``compartments`` ``(entry number, patient id)``.
    """

    entries: list[PreparedEntry] = field(default_factory=list)
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {name: [] for name in q.INDEX_COLUMNS})
    compartments: list[tuple[int, str]] = field(default_factory=list)

    def add(
        self,
        method: str,
        resource: dict[str, Any],
        res_id: str,
        validate: Callable[[dict[str, Any]], list[Any]],
        extract: Callable[[dict[str, Any]], IndexRows],
    ) -> None:
        """Validate ``resource`` (raises the store's FhirError), extract its rows and append it.

        ``resource`` must already carry ``res_id`` as its id (extraction reads it).
        """
        res_type = resource.get("resourceType") if isinstance(resource, dict) else None
        check_resource(str(res_type), resource, validate)
        found = extract(resource)
        n = len(self.entries)
        head = (n,)
        tables = self.rows
        for name in _TABLES:
            rows = getattr(found, name)
            if rows:
                index_tuples(name, rows, head, tables[name])
        if found.compartments:
            self.compartments.extend((n, p) for p in found.compartments)
        rest = dict(resource)
        for key in _OWN_KEYS:
            rest.pop(key, None)
        body = dumps(rest)
        meta = resource.get("meta")
        self.entries.append(PreparedEntry(method, str(res_type), res_id, dict(meta) if isinstance(meta, dict) else {}, body))

    def __len__(self) -> int:
        return len(self.entries)

    def only(self, n: int) -> PreparedBatch:
        """A batch of entry ``n`` alone (to retry entries one by one after a failed batch)."""
        return self.select([n])

    def select(self, ns: Sequence[int], swaps: Sequence[Mapping[str, str]] | None = None) -> PreparedBatch:
        """A batch of entries ``ns`` (in that order). ``swaps[k]``, for entry ``ns[k]``: text to
        replace in its JSON and whole values to replace in its reference rows and compartments (a
        conditional reference's placeholder id and ``Type/id`` with the resolved ones: the only
        index rows a reference's target goes into)."""
        position = {n: k for k, n in enumerate(ns)}
        entries = []
        for k, n in enumerate(ns):
            entry = self.entries[n]
            swap = swaps[k] if swaps else None
            if swap:
                body = entry.body
                for old, new in swap.items():
                    body = body.replace(old.encode(), new.encode())
                entry = dataclasses.replace(entry, body=body)
            entries.append(entry)

        def moved(row: tuple[Any, ...]) -> tuple[Any, ...]:
            return (position[row[0]], *row[1:])

        def swapped(row: tuple[Any, ...]) -> tuple[Any, ...]:
            k = position[row[0]]
            swap = swaps[k] if swaps else None
            if not swap:
                return (k, *row[1:])
            return (k, *(swap.get(v, v) if isinstance(v, str) else v for v in row[1:]))

        return PreparedBatch(
            entries,
            {name: [(swapped if name == "references" else moved)(r) for r in rows if r[0] in position]
             for name, rows in self.rows.items()},
            [swapped(c) for c in self.compartments if c[0] in position],  # type: ignore[misc]
        )

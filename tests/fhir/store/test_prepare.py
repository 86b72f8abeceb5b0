"""prepare.index_tuples: index rows as the SQL tuples the store inserts, checked against the plain
definition (every column read by name, every text value longer than its column cut to fit, ``_id`` and
``_lastUpdated`` left to the resource table)."""

from __future__ import annotations

from operator import attrgetter
from types import SimpleNamespace
from typing import Any

import pytest

from ehrgate.fhir.search.extract import extract_index
from ehrgate.fhir.search.types import (
    CompositeRow,
    DateRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)
from ehrgate.fhir.store import sql as q
from ehrgate.fhir.store.prepare import _LIMITS, PreparedBatch, index_tuples

LONG = "x" * 3000


class Text(str):
    """A str subclass: clipped like a str."""


def plain(name: str, rows: list[Any], head: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    values = attrgetter(*q.INDEX_COLUMNS[name][1])
    out = []
    for row in rows:
        if row.param in ("_id", "_lastUpdated"):
            continue
        cut = tuple(v[:n] if n is not None and isinstance(v, str) and len(v) > n else v
                    for v, n in zip(values(row), _LIMITS[name], strict=True))
        out.append((*head, *cut))
    return out


ROWS: dict[str, list[Any]] = {
    "tokens": [TokenRow("_id", None, "p1"), TokenRow("code", "http://loinc.org", "8867-4", "heart rate"),
               TokenRow("identifier", LONG, LONG, LONG, LONG, LONG), TokenRow("code", None, Text(LONG))],
    "strings": [StringRow("name", LONG.lower(), LONG), StringRow("name", "eve", "Eve")],
    "references": [ReferenceRow("subject", "Patient", "1"),
                   ReferenceRow("subject", "Patient", "y" * 100, "http://example.org/fhir/Patient/" + "y" * 100)],
    "dates": [DateRow("_lastUpdated", 0, 1), DateRow("date", -5, 5)],
    "quantities": [QuantityRow("value-quantity", 1.5, "http://unitsofmeasure.org", LONG, LONG)],
    "uris": [UriRow("url", LONG), UriRow("url", "http://example.org")],
    "composites": [CompositeRow("code-value-quantity", "s", LONG, 2.0, "u", "mm[Hg]", LONG, None)],
}


@pytest.mark.parametrize("name", list(ROWS))
def test_rows_become_the_plain_tuples(name: str) -> None:
    out: list[tuple[Any, ...]] = []
    index_tuples(name, ROWS[name], (7, "Observation"), out)
    assert out == plain(name, ROWS[name], (7, "Observation"))
    assert all(type(t) is tuple for t in out)  # no row class in what is pickled to the writer
    assert all(len(v) <= n for t in out for v, n in zip(t[2:], _LIMITS[name], strict=True) if isinstance(v, str) and n)


def test_rows_of_other_classes_are_read_by_column_name() -> None:
    rows = [SimpleNamespace(param="code", system="s", code=LONG, text=None, type_system=None, type_code=None),
            SimpleNamespace(param="_id", system=None, code="x", text=None, type_system=None, type_code=None)]
    out: list[tuple[Any, ...]] = []
    index_tuples("tokens", rows, (1,), out)
    assert out == plain("tokens", rows, (1,))


def test_a_batch_holds_the_plain_tuples_of_every_table() -> None:
    resource = {"resourceType": "Observation", "id": "o1", "status": "final", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": LONG}], "text": "hr"},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-01",
                "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    batch = PreparedBatch()
    batch.add("PUT", resource, "o1", lambda _r: [], extract_index)
    found = extract_index(resource)
    for name in q.INDEX_COLUMNS:
        assert batch.rows[name] == plain(name, getattr(found, name), (0,)), name
    assert batch.compartments == [(0, "p1")]

"""Index rows are NamedTuples (search/types.py) and rows.py builds them with ``tuple.__new__``
instead of their constructors (see its "row construction" note): the rows it builds must be the
rows the constructors build, their fields the index table's columns in order (the store writes a
row as its own values, prepare.index_tuples)."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from ehrgate.fhir.search import rows as r
from ehrgate.fhir.search.extract import _new_index
from ehrgate.fhir.search.types import (
    CompositeRow,
    DateRow,
    IndexRows,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)
from ehrgate.fhir.store import sql as q
from ehrgate.fhir.store.prepare import _ROW_CLASSES

CASES: list[tuple[Callable[..., Any], type[Any], tuple[Any, ...]]] = [
    (r._token, TokenRow, ("identifier", "http://example.org/mrn", "123", "medical record number",
                          "http://terminology.hl7.org/CodeSystem/v2-0203", "MR")),
    (r._token, TokenRow, ("status", None, "final")),
    (r._string, StringRow, ("name", "eve", "Eve")),
    (r._reference, ReferenceRow, ("subject", "Patient", "p1", None)),
    (r._date, DateRow, ("date", -5, 5)),
    (r._number, NumberRow, ("probability", 0.5)),
    (r._quantity, QuantityRow, ("value-quantity", 72.0, "http://unitsofmeasure.org", "/min", "/min")),
    (r._uri, UriRow, ("url", "http://example.org")),
    (r.composite_row, CompositeRow, ("code-value-quantity", "http://loinc.org", "8867-4", 72.0, "s", "c", "u", None)),
]


@pytest.mark.parametrize(("build", "cls", "args"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_built_rows_are_the_constructed_rows(build: Callable[..., Any], cls: type[Any], args: tuple[Any, ...]) -> None:
    row, expected = build(*args), cls(*args)
    assert type(row) is cls
    assert row == expected and hash(row) == hash(expected) and repr(row) == repr(expected)
    assert tuple(row) == tuple(getattr(expected, n) for n in cls._fields)  # values in field order
    assert row.param == args[0] and getattr(row, cls._fields[-1]) == expected[-1]  # read by name
    back = pickle.loads(pickle.dumps(row))
    assert type(back) is cls and back == expected
    with pytest.raises(AttributeError):
        row.param = "other"
    assert not hasattr(row, "__dict__")  # nothing to set either
    assert row != cls(*(["other"] + list(args[1:])))  # equality within a type: by value
    assert row._replace(param="other") == cls("other", *args[1:])


def test_rows_are_built_fast() -> None:
    # if types.py changes a row class, rows.py falls back to the constructors: this says so
    assert r._FAST_ROWS


@pytest.mark.parametrize("name", list(q.INDEX_COLUMNS))
def test_row_fields_are_the_table_columns(name: str) -> None:
    # the store writes a row as its own values (prepare.index_tuples)
    assert _ROW_CLASSES[name]._fields == q.INDEX_COLUMNS[name][1]


def test_the_row_types_have_distinct_shapes() -> None:
    # A NamedTuple equals any tuple of its values, a row of another type included. Rows of two
    # types can only be equal if they have as many fields, and those that do differ in what their
    # fields hold (StringRow's texts, DateRow's ints; UriRow's text, NumberRow's float).
    by_length: dict[int, set[str]] = {}
    for cls in _ROW_CLASSES.values():
        by_length.setdefault(len(cls._fields), set()).add(cls.__name__)
    assert {n: names for n, names in by_length.items() if len(names) > 1} == {
        3: {"StringRow", "DateRow"}, 2: {"UriRow", "NumberRow"}}


def test_a_new_index_is_the_dataclass_default() -> None:
    fresh = _new_index()
    assert type(fresh) is IndexRows and fresh == IndexRows()
    assert tuple(fresh.__dict__) == tuple(f.name for f in dataclasses.fields(IndexRows))
    fresh.tokens.append(r._token("status", None, "final"))
    assert _new_index().tokens == []  # lists of its own

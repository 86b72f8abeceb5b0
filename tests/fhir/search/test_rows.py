"""rows.py builds index rows without the dataclass constructors (see its "row construction" note):
the rows it builds must be the rows the constructors build, fields in declaration order (the store
reads a row's ``__dict__`` values as its SQL columns, prepare.index_tuples)."""

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
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)

CASES: list[tuple[Callable[..., Any], type[Any], tuple[Any, ...]]] = [
    (r._token, TokenRow, ("identifier", "http://example.org/mrn", "123", "medical record number",
                          "http://terminology.hl7.org/CodeSystem/v2-0203", "MR")),
    (r._token, TokenRow, ("status", None, "final")),
    (r._string, StringRow, ("name", "eve", "Eve")),
    (r._reference, ReferenceRow, ("subject", "Patient", "p1", None)),
    (r._date, DateRow, ("date", -5, 5)),
    (r._quantity, QuantityRow, ("value-quantity", 72.0, "http://unitsofmeasure.org", "/min", "/min")),
    (r._uri, UriRow, ("url", "http://example.org")),
    (r.composite_row, CompositeRow, ("code-value-quantity", "http://loinc.org", "8867-4", 72.0, "s", "c", "u", None)),
]


@pytest.mark.parametrize(("build", "cls", "args"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_built_rows_are_the_dataclass_rows(build: Callable[..., Any], cls: type[Any], args: tuple[Any, ...]) -> None:
    row, expected = build(*args), cls(*args)
    assert type(row) is cls
    assert row == expected and hash(row) == hash(expected) and repr(row) == repr(expected)
    names = tuple(f.name for f in dataclasses.fields(cls))
    assert tuple(row.__dict__) == names  # declaration order: the SQL column order
    assert tuple(row.__dict__.values()) == tuple(getattr(expected, n) for n in names)
    assert pickle.loads(pickle.dumps(row)) == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.param = "other"


def test_rows_are_built_fast() -> None:
    # if types.py changes a row class, rows.py falls back to the constructors: this says so
    assert r._FAST_ROWS


def test_a_new_index_is_the_dataclass_default() -> None:
    fresh = _new_index()
    assert type(fresh) is IndexRows and fresh == IndexRows()
    assert tuple(fresh.__dict__) == tuple(f.name for f in dataclasses.fields(IndexRows))
    fresh.tokens.append(r._token("status", None, "final"))
    assert _new_index().tokens == []  # lists of its own

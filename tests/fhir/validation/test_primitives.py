"""Primitive formats of http://hl7.org/fhir/R4/datatypes.html#primitive, through Extension.value[x]."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrgate.fhir.validation import validate
from ehrgate.fhir.validation.definitions import MEMOS
from ehrgate.fhir.validation.primitives import CHECKS, Memo

VALID: dict[str, list[Any]] = {
    "boolean": [True, False],
    "integer": [0, -7, 2147483647, -2147483648],
    "positiveInt": [1, 2147483647],
    "unsignedInt": [0, 2147483647],
    "decimal": [0, -1.5, 3.14159, 1e-7, 100],
    "string": ["x", " padded ", "line\nbreak", "ünïcødé"],
    "markdown": ["**bold**\n\n* item"],
    "code": ["final", "a b", "mm[Hg]", "<="],
    "id": ["a", "pat-1042", "A.b-9", "x" * 64],
    "uri": ["http://loinc.org", "urn:oid:2.16.840.1", "urn:ietf:bcp:47", "#frag", "relative/path"],
    "url": ["https://example.org/fhir/Patient?name=x"],
    "canonical": ["http://hl7.org/fhir/StructureDefinition/Patient|4.0.1"],
    "oid": ["urn:oid:2.16.840.1.113883.6.1", "urn:oid:0.1"],
    "uuid": ["urn:uuid:0b4c9e0c-3d3c-4b7e-8f6b-2f7f8e8f6a11"],
    "date": ["2024", "2024-02", "2024-02-29", "0001-01-01"],
    "dateTime": ["2024", "2024-03", "2024-03-05", "2024-03-05T09:41:00Z", "2024-03-05T09:41:00.123-05:00",
                 "2016-12-31T23:59:60+14:00"],
    "instant": ["2024-03-05T09:41:00Z", "2024-03-05T09:41:00.5+01:00"],
    "time": ["00:00:00", "23:59:59.999"],
    "base64Binary": ["aGVsbG8=", "aGVs bG8=", "AAAA"],
}

INVALID: dict[str, list[Any]] = {
    "boolean": ["true", 1, 0, None],
    "integer": [2147483648, -2147483649, 1.0, 1.5, "1", True],
    "positiveInt": [0, -1, 2147483648, "1"],
    "unsignedInt": [-1, 2147483648],
    "decimal": ["1.0", True, False],
    "string": ["", 1, True, "x" * (1024 * 1024 + 1)],
    "markdown": [""],
    "code": ["", " final", "final ", "a  b", 5],
    "id": ["", "has space", "under_score", "x" * 65, "slash/no", 12],
    "uri": ["", "http://example.org/a b", " http://x"],
    "url": ["", "https://example.org/ x"],
    "canonical": ["http://x y"],
    "oid": ["2.16.840.1", "urn:oid:3.1", "urn:oid:1.02", "urn:oid:1"],
    "uuid": ["urn:uuid:0B4C9E0C-3D3C-4B7E-8F6B-2F7F8E8F6A11", "0b4c9e0c-3d3c-4b7e-8f6b-2f7f8e8f6a11",
             "urn:uuid:0b4c9e0c3d3c4b7e8f6b2f7f8e8f6a11"],
    "date": ["2023-02-29", "2023-02-30", "2024-04-31", "2024-13", "2024-00", "0000", "24-01-01", "2024-1-1",
             "2024-03-05T09:41:00Z", "", 2024],
    "dateTime": ["2024-03-05T09:41Z", "2024-03-05T09:41:00", "2024-03-05T24:00:00Z", "2024-03-05 09:41:00Z",
                 "2024-02-30T00:00:00Z", "2024-03-05T09:41:00+15:00", "2024-03T09:41:00Z"],
    "instant": ["2024-03-05", "2024-03-05T09:41:00", "2024", "2021-02-29T00:00:00Z"],
    "time": ["24:00:00", "9:41:00", "09:41", "09:41:00Z"],
    "base64Binary": ["aGVsbG8", "aGVs!G8=", "", 5],
}

JSON_KIND: dict[str, tuple[type, ...]] = {
    "boolean": (bool,), "integer": (int,), "positiveInt": (int,), "unsignedInt": (int,), "decimal": (int, float),
}
_SUFFIX = {name: name[:1].upper() + name[1:] for name in VALID}


def as_extension(type_name: str, value: Any) -> dict[str, Any]:
    return {"resourceType": "Basic", "code": {"text": "probe"},
            "extension": [{"url": "http://example.org/probe", f"value{_SUFFIX[type_name]}": value}]}


def test_every_primitive_type_is_covered() -> None:
    assert set(VALID) | {"xhtml"} == set(CHECKS) == set(INVALID) | {"xhtml"}


@pytest.mark.parametrize(("type_name", "value"), [(t, v) for t, vs in VALID.items() for v in vs])
def test_valid(type_name: str, value: Any) -> None:
    assert validate(as_extension(type_name, value)) == []


@pytest.mark.parametrize(("type_name", "value"), [(t, v) for t, vs in INVALID.items() for v in vs])
def test_invalid(type_name: str, value: Any) -> None:
    issues = validate(as_extension(type_name, value))
    assert len(issues) == 1, issues
    issue = issues[0]
    assert issue.expression == f"Basic.extension[0].value{_SUFFIX[type_name]}"
    # The right JSON kind with a bad value is a `value` problem; the wrong JSON kind is `structure`.
    assert issue.code == ("value" if type(value) in JSON_KIND.get(type_name, (str,)) else "structure"), issue


def test_primitive_types_come_from_the_definitions_not_python_types() -> None:
    """fhirclient types these all as ``str``/``int``; the tables know better."""
    resource = {"resourceType": "Patient", "id": "has space",
                "identifier": [{"system": "not a uri", "value": "ok"}],
                "photo": [{"data": "%%%", "size": -1}],
                "communication": [{"language": {"coding": [{"code": " es"}]}}]}
    assert {i.expression: i.code for i in validate(resource)} == {
        "Patient.id": "value",
        "Patient.identifier[0].system": "value",
        "Patient.photo[0].data": "value",
        "Patient.photo[0].size": "value",
        "Patient.communication[0].language.coding[0].code": "value",
    }


@pytest.mark.parametrize(
    ("div", "ok"),
    [
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>ok</p></div>', True),
        ("<div xmlns='http://www.w3.org/1999/xhtml'>ok</div>", True),
        ("<div>no namespace</div>", False),
        ("<p xmlns=\"http://www.w3.org/1999/xhtml\">not a div</p>", False),
        ("plain text", False),
    ],
)
def test_narrative_div(div: str, ok: bool) -> None:
    issues = validate({"resourceType": "Patient", "text": {"status": "generated", "div": div}})
    assert (issues == []) is ok
    if not ok:
        assert issues[0].expression == "Patient.text.div"


@settings(max_examples=150, deadline=None)
@given(st.dates(min_value=datetime.date(1, 1, 1)))
def test_every_calendar_date_is_a_valid_date(day: datetime.date) -> None:
    text = day.isoformat()
    assert CHECKS["date"](text) is None
    assert CHECKS["dateTime"](text + "T12:00:00Z") is None
    assert CHECKS["instant"](text + "T00:00:00.000+05:30") is None


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=9999), st.integers(min_value=1, max_value=12), st.integers(29, 31))
def test_month_ends_follow_the_calendar(year: int, month: int, day: int) -> None:
    try:
        datetime.date(year, month, day)
        real = True
    except ValueError:
        real = False
    assert (CHECKS["date"](f"{year:04d}-{month:02d}-{day:02d}") is None) is real


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceType", "id", "name", "given", "_given", "code", "coding", "extension", "url",
                         "valueString", "status", "contained", "entry", "resource", "x"]),
        children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Patient", "Observation", "Bundle", "Basic", "Extension"]), st.dictionaries(
    st.sampled_from(["id", "name", "code", "status", "contained", "entry", "extension", "_status", "subject",
                     "valueQuantity", "meta", "text", "identifier", "x"]), JSON, max_size=6))
def test_never_raises_on_arbitrary_json(resource_type: str, body: dict[str, Any]) -> None:
    issues = validate({"resourceType": resource_type, **body})
    assert all(i.code in {"structure", "required", "value", "code-invalid", "invariant"} for i in issues)
    assert all(i.expression for i in issues)


def test_memo_of_valid_values_is_kept_per_type() -> None:
    """A string found valid as a code ("a b") must not pass as an id or a uri afterwards."""
    probe = {"resourceType": "Basic", "code": {"coding": [{"system": "http://example.org/s", "code": "a b"}]}}
    assert validate(probe) == []
    assert "a b" in MEMOS["code"].values
    issues = validate({"resourceType": "Basic", "id": "a b", "code": {"coding": [{"system": "a b"}]}})
    assert {i.expression for i in issues} == {"Basic.id", "Basic.code.coding[0].system"}


def test_memo_is_bounded() -> None:
    memo = Memo(limit=3)
    for value in ("a", "b", "c", "d"):
        memo.add(value)
    assert memo.values == {"d"}
    memo.add("x" * (Memo.MAX_LENGTH + 1))
    assert memo.values == {"d"}

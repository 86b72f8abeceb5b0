"""JSON in and out of the store: decimals keep their digits, and exact numbers stay on orjson's path."""

from __future__ import annotations

from decimal import Decimal

import pytest
import simplejson

from ehrgate.fhir import jsonio


@pytest.mark.parametrize("raw", [
    b'{"v":13.20}', b'{"a":[1.50,0.100000000000000000001,2.0],"b":"\xc3\xa9"}', b'{"q":1E+3}',
    b'{"n":123456789012345678901}', b'{"d":-0.10}', b"1.50",
    b'{"t":"2019-01-01T10:20:30.530+00:00","v":1.50}',  # a harmless lookalike before a risky number
])
def test_exact_numbers_round_trip_byte_for_byte(raw: bytes) -> None:
    value = jsonio.loads(raw)
    assert jsonio.dumps(value) == raw


def test_decimals_are_written_by_orjson_not_the_slow_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> str:
        raise AssertionError("simplejson.dumps was used")

    monkeypatch.setattr(simplejson, "dumps", boom)
    assert jsonio.dumps({"valueQuantity": {"value": Decimal("13.20")}}) == b'{"valueQuantity":{"value":13.20}}'
    assert jsonio.dumps({"v": Decimal("1.50")}, pretty=True) == b'{\n  "v": 1.50\n}'


@pytest.mark.parametrize("raw", [
    b'{"lastUpdated":"2019-01-01T10:20:30.530+00:00","issued":"2019-01-01T10:20:30.100Z"}',
    b'{"system":"urn:oid:2.16.840.1.113883.19.4.6","value":"12345678901234567890-A"}',
    b'{"id":"6e8ba06d-8f7c-4b1e-9e0a-1e5d2c3b4a59","v":1.5,"n":42}',
])
def test_numbers_only_inside_strings_take_the_fast_parser(raw: bytes) -> None:
    """What looks like a risky number but sits inside a string (timestamps' milliseconds, OIDs,
    ids) is no number: orjson parses it (these sent most Bulk Data NDJSON lines to simplejson)."""
    assert not jsonio.needs_exact(raw)
    assert jsonio.dumps(jsonio.loads(raw)) == jsonio.dumps(simplejson.loads(raw))


@pytest.mark.parametrize(("raw", "out"), [
    (b'{"v":13.20}', b'{"v":13.20}'), (b'{"v":1e5}', b'{"v":1e5}'), (b'{"v":[0.30000000000000004]}', None),
    (b'{"v": 13.20 }', b'{"v":13.20}'), (b'{"a":[ 2.50\n,-1.0e-7]}', b'{"a":[2.50,-1.0e-7]}'),
    (b'{"v":12345678901234567890}', b'{"v":12345678901234567890}'),
])
def test_numbers_a_float_could_change_take_the_exact_parser(raw: bytes, out: bytes | None) -> None:
    assert jsonio.needs_exact(raw)
    if out is not None:
        assert jsonio.dumps(jsonio.loads(raw)) == out


@pytest.mark.parametrize("text", ["1e5", "1E2", "1.50e-7", "-1.0E+07", "13.20", "0.100000000000000000001"])
def test_an_exact_number_keeps_its_text_through_pickle_and_stays_a_decimal(text: str) -> None:
    """Loader workers pickle what they parsed: the text survives; arithmetic and comparison are the
    Decimal's."""
    import pickle

    value = jsonio.loads(f'{{"v":{text}}}'.encode())["v"]
    assert isinstance(value, Decimal) and value == Decimal(text)
    again = pickle.loads(pickle.dumps(value))
    assert again == value and jsonio.dumps(again) == text.encode()
    assert jsonio.dumps(Decimal(text) + 0) == str(Decimal(text) + 0).encode()


@pytest.mark.parametrize("raw", [
    b'{"v":87.35552017650116,"w":[0.3202898736241102,0.30000000000000004],"n":8766734163625651911}\n',
    b'{"resourceType":"Observation","valueQuantity":{"value":2.0},"effectiveDateTime":"2019-01-01T10:20:30.530Z"}',
])
def test_compact_json_whose_numbers_survive_a_float_is_parsed_by_orjson_alone(
        raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """An NDJSON line or a Bundle the engine wrote: orjson parses it and writes it back; the same
    bytes mean every number kept its text, so neither the exact parser nor the regex scan runs."""
    def boom(*_a: object, **_k: object) -> object:
        raise AssertionError("the slow path ran")

    monkeypatch.setattr(simplejson, "loads", boom)
    monkeypatch.setattr(jsonio, "_RISKY_NUMBER", None)
    assert jsonio.dumps(jsonio.loads(raw)) == raw.strip()


@pytest.mark.parametrize(("raw", "out"), [
    (b'{"a":"x","v":13.20,"w":1e5}', b'{"a":"x","v":13.20,"w":1e5}'),
    (b'{"name":"Jos\\u00e9","v":1.50}', '{"name":"José","v":1.50}'.encode()),
    (b'{"v":123456789012345678901}', b'{"v":123456789012345678901}'),
    (b'{"a": 1.50}', b'{"a":1.50}'),  # not compact: the scan finds the number
])
def test_compact_json_that_orjson_writes_otherwise_is_parsed_exactly(raw: bytes, out: bytes) -> None:
    value = jsonio.loads(raw)
    assert jsonio.dumps(value) == out
    assert value == simplejson.loads(raw, parse_float=jsonio._exact_number)


@pytest.mark.parametrize("raw", [b'{"a":1,}', b'{"a":1.50', b'{"a":NaN}', b"", b'{"a":"\xff"}'])
def test_malformed_compact_json_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        jsonio.loads(raw)

"""JSON in and out of the store: decimals keep their digits, and exact numbers stay on orjson's path."""

from __future__ import annotations

from decimal import Decimal

import pytest
import simplejson

from ehrgate.fhir import jsonio


@pytest.mark.parametrize("raw", [b'{"v":13.20}', b'{"a":[1.50,0.100000000000000000001,2.0],"b":"\xc3\xa9"}', b'{"q":1E+3}'])
def test_exact_numbers_round_trip_byte_for_byte(raw: bytes) -> None:
    value = jsonio.loads(raw)
    assert jsonio.dumps(value) == raw


def test_decimals_are_written_by_orjson_not_the_slow_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> str:
        raise AssertionError("simplejson.dumps was used")

    monkeypatch.setattr(simplejson, "dumps", boom)
    assert jsonio.dumps({"valueQuantity": {"value": Decimal("13.20")}}) == b'{"valueQuantity":{"value":13.20}}'
    assert jsonio.dumps({"v": Decimal("1.50")}, pretty=True) == b'{\n  "v": 1.50\n}'

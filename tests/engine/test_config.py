"""Channel declarations: validated at start, every problem named with its value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehrgate.engine import ChannelConfigError, load_channels


def good() -> dict:
    return {"source": {"type": "mllp", "port": 0}, "destinations": {"store": {"type": "fhir_store"}}}


def test_a_full_declaration_loads(tmp_path: Path) -> None:
    (tmp_path / "wards.csv").write_text("from,to\n3W,WARD-3W\n")
    cfg = load_channels({"channels": {"adt-in": {
        **good(), "ack": "on_processed", "ordered": True, "order_by": "PID-3.1", "workers": 2,
        "retention_days": 30, "filter": ["tests.engine.channels.sample:only_adt"],
        "transform": [{"step": "set_field", "path": "MSH-5", "value": "HUB"},
                      {"step": "map_table", "path": "PV1-3.1", "table": "wards.csv"},
                      {"step": "route", "routes": {"ADT^A01": ["store"]}, "default": []}],
        "alerts": {"queue_depth": 100, "webhook": "http://127.0.0.1:9/hook"},
        "destinations": {"store": {"type": "fhir_store"},
                         "lab": {"type": "mllp", "host": "127.0.0.1", "port": 2576,
                                 "retry": {"max_attempts": 3, "max_age": 0, "base_delay": 0.1}}},
    }}}, tmp_path)["adt-in"]
    assert cfg.ack == "on_processed" and cfg.ordered and cfg.order_by == "PID-3.1"
    assert [d.name for d in cfg.destinations] == ["store", "lab"]
    assert cfg.destinations[1].retry.max_attempts == 3
    assert cfg.alerts.queue_depth == 100


@pytest.mark.parametrize(("spec", "expected"), [
    ({"source": {"type": "ftp"}}, "source has value {'type': 'ftp'}. Expected a mapping whose 'type' is one of: mllp"),
    ({"ack": "sometimes"}, "ack has value 'sometimes'. Expected on_receive or on_processed"),
    ({"ordered": "yes"}, "ordered has value 'yes'. Expected true or false"),
    ({"order_by": "PID-x", "ordered": True}, "order_by has value 'PID-x'"),
    ({"workers": 0}, "workers has value 0. Expected a whole number of at least 1"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"destinations": {"x": {"type": "carrier-pigeon"}}}, "x.type has value 'carrier-pigeon'. Expected one of: fhir_http, fhir_store, file"),
    ({"destinations": {"x": {"type": "mllp", "host": "h"}}}, "option 'port' has value None. Expected the receiver's TCP port"),
    ({"destinations": {"x": {"type": "file", "directory": "out", "retry": {"max_attempts": 0, "max_age": 0}}}},
     "sets neither max_attempts nor max_age"),
    ({"filter": ["no.such.module:f"]}, "'no.such.module:f' cannot be imported: module 'no' is not found"),
    ({"filter": ["tests.engine.channels.sample:nothing"]}, "has no 'nothing'"),
    ({"transform": [{"step": "teleport"}]}, "step 'teleport' is not known. Expected one of:"),
    ({"transform": [{"step": "route", "routes": {"ADT": ["nowhere"]}}]}, "routes to nowhere, which the channel does not declare"),
    ({"transform": [{"step": "map_table", "path": "PV1-3", "table": "missing.csv"}]}, "mapping table"),
    ({"transform": [{"step": "hl7_to_fhir", "colour": "red"}]}, "transform[0]: option 'colour' is not known to the hl7_to_fhir step"),
])
def test_problems_name_the_value_and_the_fix(tmp_path: Path, spec: dict, expected: str) -> None:
    with pytest.raises(ChannelConfigError) as info:
        load_channels({"channels": {"adt-in": {**good(), **spec}}}, tmp_path)
    assert expected in str(info.value)
    assert str(info.value).startswith("The channels of ehrgate.yaml are not valid:")


def test_all_problems_are_reported_together_and_ports_are_unique(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError) as info:
        load_channels({"channels": {
            "Bad Name": good(),
            "a": {**good(), "source": {"type": "mllp", "port": 7001}},
            "b": {**good(), "source": {"type": "mllp", "port": 7001}, "ack": "never"},
        }}, tmp_path)
    text = str(info.value)
    assert "Channel name 'Bad Name' is not valid" in text
    assert "source port 7001 is already used by channel 'a'" in text
    assert "ack has value 'never'" in text

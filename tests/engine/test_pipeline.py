"""The pipeline and the built-in steps, sans-I/O (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehrgate.engine import Pipeline, load_channels
from ehrgate.hl7 import parse

from .conftest import hl7

ORU = (b"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401||ORU^R01|L1|P|2.5.1\rPID|1||P9^^^FAC^MR||Doe^Jane\r"
       b"OBR|1||A1|GLU\rOBX|1|NM|GLU||5.1\rOBR|2||A2|K\rOBX|1|NM|K||4.0\rOBX|2|NM|NA||140\r")


def pipeline(tmp_path: Path, filters: list | None = None, transform: list | None = None,
             destinations: dict | None = None) -> Pipeline:
    cfg = load_channels({"channels": {"c": {
        "source": "http", "filter": filters, "transform": transform,
        "destinations": destinations or {"store": {"type": "fhir_store"}}}}}, tmp_path)["c"]
    return Pipeline(cfg)


@pytest.mark.parametrize(("step", "path", "expected"), [
    ({"step": "set_field", "path": "MSH-5", "value": "NEWAPP"}, "MSH-5", "NEWAPP"),
    ({"step": "copy_field", "from": "PID-3.1", "to": "PID-2"}, "PID-2", "P1"),
    ({"step": "remove_field", "path": "PID-8"}, "PID-8", ""),
    ({"step": "map_table", "path": "PID-8", "table": {"F": "female"}}, "PID-8", "female"),
    ({"step": "map_table", "path": "PID-8", "table": {"M": "male"}, "default": "unknown"}, "PID-8", "unknown"),
    ({"step": "map_table", "path": "PID-8", "table": {"M": "male"}}, "PID-8", "F"),
    ({"step": "map_table", "path": "PID-8", "to": "PID-2", "table": {"F": "W"}}, "PID-2", "W"),
    ({"step": "remove_segment", "segment": "EVN"}, "EVN-1", ""),
    ("tests.engine.channels.sample:shout_name", "PID-5.1", "EVERYWOMAN"),
])
def test_transform_steps(tmp_path: Path, step: object, path: str, expected: str) -> None:
    result = pipeline(tmp_path, transform=[step]).run(hl7("C1"))
    assert result.status == "QUEUED", result.error
    assert parse(result.outputs[0].raw).get(path) == expected


def test_mapping_table_files(tmp_path: Path) -> None:
    (tmp_path / "sex.csv").write_text("from,to\nF,female\nM,male\n")
    (tmp_path / "sex.yaml").write_text("F: W\n")
    for name, want in (("sex.csv", "female"), ("sex.yaml", "W")):
        out = pipeline(tmp_path, transform=[{"step": "map_table", "path": "PID-8", "table": name}]).run(hl7("C"))
        assert parse(out.outputs[0].raw).get("PID-8") == want
    strict = pipeline(tmp_path, transform=[{"step": "map_table", "path": "PID-8", "table": {"M": "m"},
                                            "on_missing": "error"}]).run(hl7("C"))
    assert strict.status == "ERROR" and "PID-8 value 'F' is not in the mapping table" in (strict.error or "")


@pytest.mark.parametrize(("filters", "kind", "status"), [
    (["tests.engine.channels.sample:only_adt"], "ADT^A01", "QUEUED"),
    (["tests.engine.channels.sample:only_adt"], "ORU^R01", "FILTERED"),
    ([{"step": "match", "path": "MSH-9", "in": ["ADT^A01", "ADT^A04"]}], "ADT^A04", "QUEUED"),
    ([{"step": "match", "path": "MSH-9", "in": ["ADT^A01"]}], "ADT^A08", "FILTERED"),
    ([{"step": "match", "path": "PID-3.1", "regex": "^P[0-9]$"}], "ADT^A01", "QUEUED"),
    ([{"step": "match", "path": "PID-3.1", "equals": "P1", "not": True}], "ADT^A01", "FILTERED"),
])
def test_filters(tmp_path: Path, filters: list, kind: str, status: str) -> None:
    result = pipeline(tmp_path, filters=filters).run(hl7("C", kind=kind))
    assert result.status == status
    if status == "FILTERED":
        assert "Filtered out by filter 1" in (result.error or "")


def test_route_by_type_and_by_field(tmp_path: Path) -> None:
    dests = {"a": {"type": "file", "directory": "a"}, "b": {"type": "file", "directory": "b"}}
    by_type = pipeline(tmp_path, transform=[{"step": "route", "routes": {"ADT^A01": ["a"], "ORU": ["b"]}}],
                       destinations=dests)
    assert by_type.run(hl7("C")).outputs[0].destinations == ["a"]
    assert by_type.run(ORU).outputs[0].destinations == ["b"]
    nothing = by_type.run(hl7("C", kind="ADT^A08"))
    assert nothing.status == "FILTERED"
    by_field = pipeline(tmp_path, transform=[{"step": "route", "by": "MSH-4", "routes": {"FAC": ["a", "b"]}}],
                        destinations=dests)
    assert by_field.run(hl7("C")).outputs[0].destinations == ["a", "b"]


def test_split_repeats_the_header_segments(tmp_path: Path) -> None:
    result = pipeline(tmp_path, transform=[{"step": "split", "segment": "OBR"}]).run(ORU)
    assert result.status == "TRANSFORMED" and len(result.outputs) == 2
    first, second = (parse(o.raw) for o in result.outputs)
    assert first.control_id == "L1-1" and second.control_id == "L1-2"
    assert [s.name for s in second.segments] == ["MSH", "PID", "OBR", "OBX", "OBX"]
    assert second.get("OBR-4") == "K" and result.outputs[1].patient_ids == ("P9",)


def test_split_keeps_each_order_with_its_orc(tmp_path: Path) -> None:
    """ORU^R01 order groups begin with their ORC: each child carries its own ORC (before, the first
    ORC was repeated as a header segment in every child, and the second child had two ORCs - the
    first order's numbers ahead of its own)."""
    oru = (b"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401||ORU^R01|L2|P|2.5.1\rPID|1||P9^^^FAC^MR||Doe^Jane\r"
           b"ORC|RE|ORD1\rOBR|1|ORD1|F1|GLU\rOBX|1|NM|GLU||5.1\rORC|RE|ORD2\rOBR|2|ORD2|F2|K\rOBX|1|NM|K||4.0\r")
    result = pipeline(tmp_path, transform=[{"step": "split", "segment": "OBR"}]).run(oru)
    first, second = (parse(o.raw) for o in result.outputs)
    assert [s.name for s in first.segments] == ["MSH", "PID", "ORC", "OBR", "OBX"]
    assert [s.name for s in second.segments] == ["MSH", "PID", "ORC", "OBR", "OBX"]
    assert (first.get("ORC-2"), first.get("OBR-3")) == ("ORD1", "F1")
    assert (second.get("ORC-2"), second.get("OBR-3")) == ("ORD2", "F2")


def test_a_failing_step_is_an_error_naming_the_step(tmp_path: Path) -> None:
    result = pipeline(tmp_path, transform=["tests.engine.channels.sample:boom"]).run(hl7("C"))
    assert result.status == "ERROR"
    assert result.error == "transform 1 (tests.engine.channels.sample:boom) failed: RuntimeError: transformer bug"


def test_trace_shows_every_stage(tmp_path: Path) -> None:
    result = pipeline(tmp_path, transform=[{"step": "set_field", "path": "MSH-5", "value": "X"},
                                           "tests.engine.channels.sample:to_bundle"]).run(hl7("C"), trace=True)
    labels = [label for label, _ in result.stages]
    assert labels[0] == "received" and labels[1].startswith("transform 1 (set_field)")
    assert labels[-2].startswith("output 1 → store") and labels[-1] == "output 1 FHIR bundle"

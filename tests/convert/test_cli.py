"""``ehrgate hl7 convert FILE... [--out DIR]`` (cli/convert.py): no server, no database."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ehrgate.cli import cli

from .conftest import SAMPLES, sample


def test_prints_the_bundle() -> None:
    result = CliRunner().invoke(cli, ["hl7", "convert", str(SAMPLES / "adt_a04.hl7")])
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert bundle["type"] == "transaction"
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["meta"]["source"] == "urn:ehrgate:channel:cli#A04-0001"


def test_writes_one_file_per_message(tmp_path: Path) -> None:
    two = tmp_path / "two.hl7"
    two.write_bytes(sample("adt_a04.hl7") + sample("adt_a08.hl7"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["hl7", "convert", str(two), str(SAMPLES / "siu_s12.hl7"), "--out", str(out),
                                      "--channel", "adt-feed", "--timezone", "America/Chicago"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["siu_s12.json", "two-2.json", "two.json"]
    second = json.loads((out / "two-2.json").read_text())
    assert second["entry"][0]["resource"]["meta"]["source"] == "urn:ehrgate:channel:adt-feed#A08-0001"
    encounter = next(e["resource"] for e in second["entry"] if e["resource"]["resourceType"] == "Encounter")
    assert encounter["period"]["start"] == "2024-04-01T09:00:00-05:00"
    assert "3 converted, 0 failed" in result.stderr


def test_reports_the_field_and_exits_non_zero() -> None:
    result = CliRunner().invoke(cli, ["hl7", "convert", str(SAMPLES / "adt_bad_dob.hl7"), str(SAMPLES / "adt_a28.hl7")])
    assert result.exit_code == 1
    assert "adt_bad_dob.hl7: PID-7: '1983021' is not a valid HL7 date" in result.stderr
    assert json.loads(result.stdout)["type"] == "transaction"  # the good message is still printed
    assert "1 converted, 1 failed" in result.stderr


def test_verbose_lists_what_is_not_mapped() -> None:
    result = CliRunner().invoke(cli, ["hl7", "convert", "-v", str(SAMPLES / "adt_a03_procedure.hl7")])
    assert result.exit_code == 0
    assert "not mapped: ROL x2" in result.stderr and "ROL-1 x4" in result.stderr


def test_bad_options_are_sentences(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["hl7", "convert", "--timezone", "Mars/Olympus", str(SAMPLES / "adt_a04.hl7")])
    assert result.exit_code == 2
    assert "--timezone: Time zone 'Mars/Olympus' is not known" in result.output
    result = CliRunner().invoke(cli, ["hl7", "convert", str(tmp_path / "missing.hl7")])
    assert result.exit_code == 2
    empty = tmp_path / "empty.hl7"
    empty.write_text("not hl7\n")
    result = CliRunner().invoke(cli, ["hl7", "convert", str(empty)])
    assert result.exit_code == 1 and "no HL7 message found" in result.stderr

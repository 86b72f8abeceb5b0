"""``ehrgate load``: bundles and NDJSON into the store, with a summary; the corpus when present."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ehrgate.cli import cli
from tests.conftest import corpus_dir


def _count(data_dir: Path, sql: str) -> int:
    eng = sa.create_engine(f"sqlite:///{data_dir / 'ehrgate.sqlite3'}")
    with eng.connect() as conn:
        n = int(conn.exec_driver_sql(sql).scalar_one())
    eng.dispose()
    return n


def _write_samples(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    tx = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001",
             "resource": {"resourceType": "Patient", "name": [{"family": "Load"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
                          "subject": {"reference": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"},
                          "valueQuantity": {"value": 2.50}},
             "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    (src / "tx.json").write_text(json.dumps(tx).replace("2.5", "2.50"))
    lines = [json.dumps({"resourceType": "Practitioner", "id": f"pr{i}"}) for i in range(5)]
    with gzip.open(src / "nested" / "Practitioner.ndjson.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    (src / "collection.json").write_text(json.dumps({
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {"resourceType": "Organization", "id": "o1", "name": "Org"}}],
    }))
    return src


def test_load_samples(tmp_path: Path) -> None:
    src = _write_samples(tmp_path)
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["load", str(src), "--data-dir", str(data), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Loaded 8 resources" in result.output
    assert _count(data, "SELECT count(*) FROM resource") == 8
    raw = _count(data, "SELECT count(*) FROM resource_version WHERE res_type = 'Observation' AND CAST(raw AS TEXT) LIKE '%2.50%'")
    assert raw == 1


@pytest.mark.parametrize("workers", ["0", "2"])
def test_load_with_and_without_worker_processes(tmp_path: Path, workers: str) -> None:
    src = _write_samples(tmp_path)
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["load", str(src), "--data-dir", str(data), "--quiet", "--workers", workers])
    assert result.exit_code == 0, result.output
    # the 5 NDJSON lines are counted too: "from 2 bundles" alone read as if they had been left out
    assert "Loaded 8 resources from 2 bundles and 5 other inputs (resource files, NDJSON lines) in" in result.output
    assert _count(data, "SELECT count(*) FROM idx_reference WHERE param = 'subject' AND target_type = 'Patient'") == 1


def test_load_rejects_a_negative_worker_count(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["load", str(tmp_path), "--data-dir", str(tmp_path / "d"), "--workers", "-1"])
    assert result.exit_code == 2 and "--workers" in result.output


def test_load_reports_bad_lines_and_continues(tmp_path: Path) -> None:
    src = tmp_path / "bad.ndjson"
    src.write_text('{"resourceType":"Patient","id":"ok1"}\nnot json\n{"resourceType":"Patient","gender":"banana"}\n')
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["load", str(src), "--data-dir", str(data), "--quiet"])
    assert result.exit_code == 2
    assert "bad.ndjson line 2" in result.output
    assert "gender" in result.output
    assert "2 problems:" in result.output and "2 items could not be loaded (see above); the rest was loaded." in result.output
    assert _count(data, "SELECT count(*) FROM resource") == 1


def test_load_says_which_inputs_it_skipped(tmp_path: Path) -> None:
    """A Bulk Data export's log.ndjson is left out on purpose; the summary says so (it was dropped
    without a word) and it is not a problem (exit 0)."""
    src = tmp_path / "export"
    src.mkdir()
    (src / "Patient.ndjson").write_text('{"resourceType":"Patient","id":"p1"}\n')
    (src / "log.ndjson").write_text('{"exportId":"e1","eventId":"kickoff","timestamp":"2024-01-01T00:00:00Z"}\n')
    result = CliRunner().invoke(cli, ["load", str(src), "--data-dir", str(tmp_path / "data"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "log.ndjson: skipped, a Bulk Data export log" in result.output
    assert _count(tmp_path / "data", "SELECT count(*) FROM resource") == 1


def test_load_summary_names_every_type_and_counts_one_problem_in_the_singular(tmp_path: Path) -> None:
    """The summary stopped at twelve types without saying so (a Synthea load's Patients were left
    out) and said "1 problems", "1 items"."""
    src = tmp_path / "many.ndjson"
    types = ("Patient", "Organization", "Practitioner", "Location", "Device", "Person", "Medication",
             "HealthcareService", "PractitionerRole", "CareTeam", "OrganizationAffiliation", "InsurancePlan",
             "BiologicallyDerivedProduct")
    lines = [json.dumps({"resourceType": t, "id": f"{t.lower()}-{i}"}) for n, t in enumerate(types)
             for i in range(20 - n)]
    src.write_text("\n".join(lines + ['{"resourceType":"Patient","gender":"banana"}']) + "\n")
    result = CliRunner().invoke(cli, ["load", str(src), "--data-dir", str(tmp_path / "data"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"Loaded {sum(range(8, 21))} resources from {sum(range(8, 21)) + 1} inputs (resource files, NDJSON lines)" \
        in result.output
    assert "  Patient                      20" in result.output  # the most frequent first, one per line
    assert "  and 1 more type: BiologicallyDerivedProduct 8" in result.output
    assert "1 problem:" in result.output and "Error: 1 item could not be loaded" in result.output


@pytest.mark.corpus
def test_load_synthea_and_us_core(tmp_path: Path) -> None:
    synthea = corpus_dir("fhir", "synthea-r4")
    us_core = corpus_dir("fhir", "us-core-examples")
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["load", str(synthea), "--data-dir", str(data), "--quiet"])
    assert result.exit_code == 0, result.output[-3000:]
    assert _count(data, "SELECT count(*) FROM resource WHERE res_type = 'Patient'") >= 30
    result = CliRunner().invoke(cli, ["load", str(us_core), "--data-dir", str(data), "--quiet"])
    # One upstream example (diagnosticreport-cbc.json) has Narrative without the required div.
    problems = [line for line in result.output.splitlines() if line.startswith("  ") and ".json" in line]
    assert all("diagnosticreport-cbc" in p for p in problems), problems
    assert _count(data, "SELECT count(*) FROM resource") > 5000


def test_load_of_an_empty_directory_says_there_is_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["load", str(empty), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "No input in" in result.output and ".ndjson" in result.output
    assert not (tmp_path / "d" / "ehrgate.sqlite3").exists()

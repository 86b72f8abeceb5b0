"""ehrgate.hl7.batch: FHS/BHS/BTS/FTS files and plain multi-message files (HL7 v2.5 section 2.10.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehrgate.hl7 import BatchError, parse, read_batch, split_messages

SAMPLES = Path(__file__).resolve().parent / "samples"


def load(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_batch_file_with_correct_counts() -> None:
    file = read_batch(load("batch.hl7"))
    assert file.ok and file.problems == []
    assert file.header is not None and file.header.startswith("FHS|") and file.trailer == "FTS|1"
    assert len(file.batches) == 1
    batch = file.batches[0]
    assert batch.header is not None and batch.header.startswith("BHS|") and batch.trailer == "BTS|3"
    assert [parse(m).control_id for m in batch.messages] == ["B1", "B2", "B3"]
    assert all(m.endswith("\r") and m.count("\r") == 3 for m in file.messages)


def test_batch_counts_that_disagree_are_reported() -> None:
    file = read_batch(load("batch_bad_counts.hl7"))
    assert not file.ok
    assert file.problems == [
        "BTS-1 is 5 but batch 1 holds 2 messages (expected them to agree)",
        "Batch 2 has a BHS but no BTS (expected BTS before FTS)",
        "FTS-1 is 1 but the file holds 2 batches (expected them to agree)",
    ]
    assert [len(b.messages) for b in file.batches] == [2, 1]


def test_strict_mode_raises_on_the_first_problem() -> None:
    with pytest.raises(BatchError, match="BTS-1 is 5 but batch 1 holds 2 messages"):
        read_batch(load("batch_bad_counts.hl7"), strict=True)


def test_plain_multi_message_file_with_blank_lines() -> None:
    messages = split_messages(load("multi.hl7"))
    assert [parse(m).control_id for m in messages] == ["B4", "B5", "B6"]
    assert read_batch(load("multi.hl7")).ok


@pytest.mark.parametrize(("text", "problem"), [
    ("PID|1\rMSH|^~\\&|A\r", "Segment 1 ('PID|1') comes before any MSH"),
    ("BHS|^~\\&\rMSH|^~\\&|A\rBTS|x\r", "BTS-1 'x' is not a count"),
    ("MSH|^~\\&|A\rBTS|1\r", "Segment 2 is a BTS without a BHS"),
    ("BTS|0\r", "Segment 1 is a BTS without a BHS"),
    ("FHS|^~\\&\rMSH|^~\\&|A\r", "File has an FHS but no FTS"),
    ("MSH|^~\\&|A\rFTS|1\r", "Segment 2 is an FTS without an FHS"),
    ("FHS|^~\\&\rFHS|^~\\&\rFTS|0\r", "Segment 2 is a second FHS"),
    ("MSH|^~\\&|A\rFHS|^~\\&\rFTS|1\r", "Segment 2 is an FHS after other segments"),
    ("FHS|^~\\&\rFTS|0\rFTS|0\r", "Segment 3 (FTS) comes after FTS"),
    ("BHS|^~\\&\rMSH|^~\\&|A\rBHS|^~\\&\rBTS|0\r", "Segment 3 is a BHS but batch 1 has no BTS yet"),
    ("MSH|^~\\&|A\rBHS|^~\\&\rBTS|0\r", "Segment 2 is a BHS after messages outside any batch"),
    ("BHS|^~\\&\rBTS|0\rMSH|^~\\&|A\r", "Segment 3 is an MSH outside any BHS/BTS batch"),
    ("BHS|^~\\&\rMSH|^~\\&|A\r", "Batch 1 has a BHS but no BTS (expected BTS to close it)"),
])
def test_envelope_problems(text: str, problem: str) -> None:
    file = read_batch(text)
    assert any(p.startswith(problem) for p in file.problems), file.problems


def test_custom_field_separator_in_counts() -> None:
    text = "BHS#^~\\&\rMSH#^~\\&#A\rBTS#2\r"
    assert read_batch(text).problems == ["BTS-1 is 2 but batch 1 holds 1 messages (expected them to agree)"]


def test_bytes_input_is_decoded_per_msh18_with_bom() -> None:
    data = b"\xef\xbb\xbfMSH|^~\\&|A|||||||||||||||UNICODE UTF-8\r\nPID|1||1||J\xc3\xb6rg\r\n"
    (text,) = split_messages(data)
    assert parse(text).get("PID-5") == "Jörg"
    assert split_messages("\ufeffMSH|^~\\&|A\r") == ["MSH|^~\\&|A\r"]


def test_empty_input() -> None:
    file = read_batch(b"")
    assert file.ok and file.messages == [] and file.batches == []

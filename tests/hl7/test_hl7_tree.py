"""ehrgate.hl7.tree and fields: the readable tree that `ehrgate hl7 show` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehrgate.hl7 import format_tree, parse
from ehrgate.hl7.fields import SEGMENTS, field_name, segment_name

SAMPLES = Path(__file__).resolve().parent / "samples"


def test_tree_of_an_adt() -> None:
    tree = format_tree(parse((SAMPLES / "adt_a01.hl7").read_bytes()))
    lines = tree.splitlines()
    assert lines[0] == "MSH  Message Header"
    assert "  MSH-1 Field Separator: |" in lines
    assert "  MSH-9 Message Type: ADT^A01^ADT_A01" in lines
    assert "    MSH-9.2  A01" in lines
    assert "PID  Patient Identification" in lines
    assert "  PID-3(2) Patient Identifier List: 999-00-1234^^^SSA^SS" in lines
    assert "    PID-3(2).5  SS" in lines
    assert "  AL1-5 Allergy Reaction Code: Hives&Rash" in lines  # a leaf is shown decoded
    assert "ZPI" in lines and "  ZPI-2 Prefers morning visits | no calls after 8pm" in lines
    assert not any("PV1-5" in line for line in lines)  # empty fields are left out


def test_tree_labels_are_usable_paths() -> None:
    msg = parse((SAMPLES / "oru_r01.hl7").read_bytes())
    tree = format_tree(msg)
    assert "OBX[3]  Observation/Result" in tree.splitlines()
    assert "  OBX[3]-5 Observation Value: 139" in tree.splitlines()
    assert "    SPM-2.1  SP7781&CITY LAB" in tree.splitlines()
    assert "  OBX[4]-5 Observation Value: Sample slightly hemolyzed\\nResults may be affected" in tree.splitlines()
    assert "      SPM-2.1.2  CITY LAB" in tree.splitlines()
    for line in tree.splitlines():
        label = line.split()[0]
        if "-" in label:
            value = line.split(None, 1)[1] if " " in line.strip() else ""
            assert msg.get(label).replace("\n", "\\n") in value or msg.er7(label) in value


@pytest.mark.parametrize(("segment", "field", "name"), [
    ("MSH", 9, "Message Type"), ("MSH", 18, "Character Set"), ("PID", 3, "Patient Identifier List"),
    ("PID", 39, "Tribal Citizenship"), ("PV1", 19, "Visit Number"), ("PV1", 52, "Other Healthcare Provider"),
    ("OBR", 4, "Universal Service Identifier"), ("OBX", 5, "Observation Value"), ("ORC", 1, "Order Control"),
    ("AL1", 3, "Allergen Code/Mnemonic/Description"), ("DG1", 3, "Diagnosis Code - DG1"),
    ("IN1", 36, "Policy Number"), ("SCH", 1, "Placer Appointment ID"), ("AIL", 3, "Location Resource ID"),
    ("AIP", 3, "Personnel Resource ID"), ("RXA", 5, "Administered Code"), ("TXA", 12, "Unique Document Number"),
    ("NTE", 3, "Comment"), ("SPM", 4, "Specimen Type"), ("ERR", 8, "User Message"), ("MSA", 2, "Message Control ID"),
    ("EVN", 1, "Event Type Code"), ("NK1", 2, "Name"), ("PID", 40, ""), ("ZZZ", 1, ""), ("PID", 0, ""),
])
def test_field_names(segment: str, field: int, name: str) -> None:
    assert field_name(segment, field) == name


def test_segment_names_cover_the_common_segments() -> None:
    wanted = "MSH EVN PID PV1 NK1 OBR OBX ORC AL1 DG1 IN1 SCH AIL AIP RXA TXA NTE SPM ERR MSA".split()
    assert sorted(SEGMENTS) == sorted(wanted)
    assert segment_name("OBX") == "Observation/Result" and segment_name("ZPI") == ""

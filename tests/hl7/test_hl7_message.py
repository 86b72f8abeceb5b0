"""ehrgate.hl7.message / segment / paths / delimiters / charset on the project's own samples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ehrgate.hl7 import (
    Delimiters,
    EncodeError,
    Message,
    ParseError,
    PathError,
    PatientIdentifier,
    decode,
    parse,
)
from ehrgate.hl7.paths import COMPONENT, FIELD, REPETITION, SUBCOMPONENT, parse_path

SAMPLES = Path(__file__).resolve().parent / "samples"


def load(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def normalised(data: bytes) -> bytes:
    """What a round trip should give: BOM dropped, every terminator a single CR, no blank lines."""
    data = data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return b"".join(s + b"\r" for s in data.split(b"\r") if s)


# -- table-driven values per sample (path -> expected decoded value) ----------------------------------

EXPECTED: dict[str, dict[str, str]] = {
    "adt_a01.hl7": {
        "MSH-1": "|", "MSH-2": "^~\\&", "MSH-3": "REGADT", "MSH-4": "GOOD HEALTH HOSPITAL", "MSH-9": "ADT",
        "MSH-9.2": "A01", "MSH-9.3": "ADT_A01", "MSH-10": "ADT0001", "MSH-12": "2.5.1", "MSH-15": "AL",
        "MSH-16": "NE", "PID-3": "MRN12345", "PID-3.4": "GHH", "PID-3(2).1": "999-00-1234",
        "PID-3(2).5": "SS", "PID-3(3).1": "", "PID-5.1": "Everywoman", "PID-5(2).1": "Smith",
        "PID-5.7": "L", "PID-11.5": "27401-1020", "PID-13.4": "", "PID-13.6": "555", "AL1-5": "Hives&Rash",
        "ZPI-2": "Prefers morning visits | no calls after 8pm", "ZPI-3": "VIP^LEVEL2", "ZPI-99": "",
        "NK1-3.3": "HL70063", "PV1-7.2": "Attend", "PV1-17": "", "EVN-5.3": "Ana", "OBX-5": "",
    },
    "oru_r01.hl7": {
        "MSH-4": "CITY LAB", "MSH-4.2": "2.16.840.1.113883.19.4.6", "MSH-18": "UNICODE UTF-8",
        "OBX-5": "95", "OBX[2]-5": "1.1", "OBX[3]-3.2": "Sodium", "OBX[4]-5":
            "Sample slightly hemolyzed\nResults may be affected", "OBX[5]-5": "", "OBR-4.2":
            "Comprehensive metabolic panel", "NTE-3": "Reference ranges are for adults & non-pregnant patients",
        "SPM-2": "SP7781", "SPM-2.1.2": "CITY LAB", "SPM-2.1.3": "", "SPM-4.3": "SCT",
    },
    "custom_v27.hl7": {
        "MSH-2": "^~\\&#", "MSH-12": "2.7.1", "PID-5": "O'Neil", "NTE-3": "Order #42 placed by phone; see chart",
    },
    "odd_delimiters.hl7": {
        "MSH-1": "*", "MSH-2": "$!\\@", "MSH-9": "ADT", "MSH-9.2": "A08", "PID-3": "ID1", "PID-3.4": "AUTH",
        "PID-3.4.2": "x", "PID-3(2).4": "OTHER", "PID-13": "555|1234", "ZZ1-1": "plain & ampersand is data",
        "ZZ1-2": "pipes | are data too",
    },
    "latin1.hl7": {"PID-5": "Lefèvre", "PID-5.2": "Renée", "MSH-18": "8859/1", "MSH-17": "FRA"},
    "utf8_bom.hl7": {"PID-5": "Åström", "PID-5.2": "Björk", "MSH-12": "2.8", "PV1-2": "O"},
    "mixed_terminators.hl7": {"MSH-10": "MIX1", "EVN-1": "A01", "PID-5.2": "Endings", "PV1-2": "I"},
}


@pytest.mark.parametrize(("name", "path", "expected"),
                         [(n, p, v) for n, table in EXPECTED.items() for p, v in table.items()])
def test_sample_values(name: str, path: str, expected: str) -> None:
    assert parse(load(name)).get(path) == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_unmodified_round_trip_is_byte_identical_apart_from_terminators(name: str) -> None:
    data = load(name)
    msg = parse(data)
    assert msg.to_bytes() == normalised(data)
    assert parse(msg.to_bytes()) == msg


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_segment_view_reads_what_the_message_reads(name: str) -> None:
    msg = parse(load(name))
    for path in EXPECTED[name]:
        seg_part, rest = path.split("-", 1)
        occurrence = int(seg_part[4:-1]) if "[" in seg_part else 1
        segment = msg.segment(seg_part[:3], occurrence)
        if segment is not None:
            assert segment.get(rest) == msg.get(path)


def test_header_accessors() -> None:
    msg = parse(load("adt_a01.hl7"))
    assert (msg.message_type, msg.trigger_event, msg.message_structure) == ("ADT", "A01", "ADT_A01")
    assert (msg.control_id, msg.version, msg.processing_id) == ("ADT0001", "2.5.1", "P")
    assert (msg.sending_application, msg.sending_facility) == ("REGADT", "GOOD HEALTH HOSPITAL")
    assert (msg.receiving_application, msg.receiving_facility) == ("EHRGATE", "EHRGATE")
    assert (msg.accept_ack_type, msg.application_ack_type, msg.charset) == ("AL", "NE", "")
    assert msg.timestamp == "20240315083000-0500"
    assert msg.patient_identifiers == [PatientIdentifier("MRN12345", "GHH", "MR"),
                                       PatientIdentifier("999-00-1234", "SSA", "SS")]
    assert repr(msg) == "<Message ADT^A01 control_id='ADT0001' segments=8>"


def test_patient_identifiers_absent_pid() -> None:
    assert parse("MSH|^~\\&|A\rEVN|A01\r").patient_identifiers == []


def test_get_all_and_er7() -> None:
    msg = parse(load("adt_a01.hl7"))
    assert msg.get_all("PID-3.1") == ["MRN12345", "999-00-1234"]
    assert msg.get_all("PID-5.1") == ["Everywoman", "Smith"]
    assert msg.get_all("PV1-99") == [] and msg.get_all("ZZZ-1") == []
    assert msg.er7("PID-3") == "MRN12345^^^GHH^MR~999-00-1234^^^SSA^SS"
    assert msg.er7("PID-3(2)") == "999-00-1234^^^SSA^SS"
    assert msg.er7("PID-3(2).4") == "SSA"
    assert msg.er7("ZPI-2") == "Prefers morning visits \\F\\ no calls after 8pm"
    assert msg.er7("MSH-2") == "^~\\&" and msg.er7("PID-3(9)") == "" and msg.er7("ZZZ-1") == ""
    assert msg["PID-5.2"] == "Eve"


def test_segments_and_iteration() -> None:
    msg = parse(load("oru_r01.hl7"))
    assert [s.name for s in msg] == ["MSH", "PID", "ORC", "OBR", "OBX", "OBX", "OBX", "OBX", "NTE", "SPM"]
    assert len(msg) == 10
    assert [o.get("5") for o in msg.segments_named("OBX")][:3] == ["95", "1.1", "139"]
    third = msg.segment("OBX", 3)
    assert third is not None and third.index == 6 and third.get("3.2") == "Sodium"
    assert msg.segment("OBX", 9) is None and msg.segment("ZZZ") is None
    pid = msg.segment("PID")
    assert pid is not None and len(pid) == 8 and pid.fields[5] == "Everywoman^Eve^E"
    assert pid.parts(3) == [[["MRN12345"], [""], [""], ["GHH"], ["MR"]]] and pid.parts(40) == []
    assert str(pid).startswith("PID|1||") and "PID|1" in repr(pid)
    msh = msg.segment("MSH")
    assert msh is not None and msh.fields[:3] == ["MSH", "|", "^~\\&"] and msh.parts(2) == [[["^~\\&"]]]


# -- setting values --------------------------------------------------------------------------------------

def test_set_escapes_and_serializes() -> None:
    msg = parse(load("adt_a01.hl7"))
    msg.set("PID-5.1", "O'Brien | Smith^Jones")
    assert msg.get("PID-5.1") == "O'Brien | Smith^Jones"
    assert msg.er7("PID-5(1).1") == "O'Brien \\F\\ Smith\\S\\Jones"
    again = parse(msg.to_bytes())
    assert again.get("PID-5.1") == "O'Brien | Smith^Jones" and again.get("PID-5.2") == "Eve"
    assert again.get("PID-5(2).1") == "Smith"  # other repetitions untouched


def test_set_pads_missing_levels() -> None:
    msg = parse("MSH|^~\\&|A|B\rPID|1\r")
    msg.set("PID-13(2).4", "eve@example.org")
    assert msg.to_er7().split("\r")[1] == "PID|1||||||||||||~^^^eve@example.org"
    msg.set("PID-5.1.2", "van")
    assert msg.er7("PID-5") == "&van"
    msg.set("MSH-20", "x")
    assert msg.to_er7().startswith("MSH|^~\\&|A|B||||||||||||||||x\r")


def test_set_primitive_semantics_match_get() -> None:
    msg = parse("MSH|^~\\&|A\rPID|1||||Smith&Prefix^John\r")
    msg.set("PID-5", "Jones")  # a field path writes the first component's first subcomponent
    assert msg.er7("PID-5") == "Jones&Prefix^John"


def test_set_er7_writes_structure_unchanged() -> None:
    msg = parse("MSH|^~\\&|A\rPID|1||a~b\r")
    msg.set_er7("PID-3", "X^^^AUTH^MR~Y^^^AUTH^PI")
    assert msg.get_all("PID-3.1") == ["X", "Y"]
    msg.set_er7("PID-3(2).5", "MR")
    assert msg.er7("PID-3") == "X^^^AUTH^MR~Y^^^AUTH^MR"
    pid = msg.segment("PID")
    assert pid is not None
    pid.set("5.2", "Ann")
    pid.set_er7("7", "19700101")
    assert msg.get("PID-5.2") == "Ann" and msg.get("PID-7") == "19700101"


@pytest.mark.parametrize(("path", "fragment"), [
    ("MSH-1", "delimiters"), ("MSH-2", "delimiters"), ("ZZZ-1", "has 0 ZZZ segment"),
    ("OBX[2]-5", "has 0 OBX"),
])
def test_set_errors(path: str, fragment: str) -> None:
    msg = parse("MSH|^~\\&|A\rPID|1\r")
    with pytest.raises(PathError, match=fragment):
        msg.set(path, "x")


def test_set_without_declared_separator_fails_clearly() -> None:
    msg = parse("MSH|^~\\|A\rPID|1\r")  # no subcomponent separator declared
    with pytest.raises(PathError, match="subcomponent separator"):
        msg.set_er7("PID-5.1.2", "x")
    msg.set("PID-5.1", "a&b")  # '&' is plain data here
    assert msg.get("PID-5") == "a&b"


def test_segments_can_be_added_and_removed() -> None:
    msg = parse(load("adt_a01.hl7"))
    msg.get("PID-5")  # split caches must follow the positions
    seg = msg.append_segment("ZEH|1|hello")
    assert seg.name == "ZEH" and msg.get("ZEH-2") == "hello"
    msg.insert_segment(1, "ZFI|first")
    assert msg.segments[1].get("1") == "first" and msg.get("PID-5") == "Everywoman"
    msg.remove_segment(1)
    assert msg.get("PID-5") == "Everywoman" and msg.segment("ZFI") is None
    with pytest.raises(ParseError):
        msg.append_segment("MSH|^~\\&|x")
    with pytest.raises(ParseError):
        msg.append_segment("bad segment")
    with pytest.raises(ParseError):
        msg.append_segment("ZZ1|a\rZZ2|b")
    with pytest.raises(PathError):
        msg.insert_segment(0, "ZZ1|a")
    with pytest.raises(PathError):
        msg.remove_segment(0)


def test_copy_is_independent() -> None:
    msg = parse(load("adt_a01.hl7"))
    twin = msg.copy()
    twin.set("PID-5", "Changed")
    assert msg.get("PID-5") == "Everywoman" and twin.get("PID-5") == "Changed" and msg != twin
    assert msg == parse(load("adt_a01.hl7")) and msg != "not a message"


# -- paths ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "parts"), [
    ("PID-5", ("PID", 1, 5, 1, 1, 1, FIELD)),
    ("PID-5.1", ("PID", 1, 5, 1, 1, 1, COMPONENT)),
    ("PID-5.1.2", ("PID", 1, 5, 1, 1, 2, SUBCOMPONENT)),
    ("PID-3(2)", ("PID", 1, 3, 2, 1, 1, REPETITION)),
    ("OBX[3]-5(2).4.1", ("OBX", 3, 5, 2, 4, 1, SUBCOMPONENT)),
    ("Z01-1", ("Z01", 1, 1, 1, 1, 1, FIELD)),
])
def test_paths(path: str, parts: tuple[object, ...]) -> None:
    compiled = parse_path(path)
    assert tuple(compiled) == parts
    assert str(compiled) == path


@pytest.mark.parametrize("bad", ["PID", "PID-", "pid-5", "PID-0", "PID-5.0", "OBX[0]-1", "PID-5..1", "PID.5.1",
                                 "PID-3(x)", "PIDX-1", "PID-５", ""])
def test_bad_paths(bad: str) -> None:
    with pytest.raises(PathError, match="Path"):
        parse("MSH|^~\\&|A\r").get(bad)


# -- parse errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    (b"", "Message is empty"),
    (b"\r\n\r\n", "Message is empty"),
    (b"EVN|A01\rMSH|^~\\&|\r", "Segment 1 is 'EVN', expected 'MSH'"),
    (b"MSH", "too short"),
    (b"MSH|", "too short"),
    (b"MSH||A|B", "MSH-2 encoding characters are empty"),
    (b"MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r", "Segment 3 is a second 'MSH'"),
    (b"MSH|^~\\&|A\rpid|1\r", "Segment 2 starts 'pid|1'"),
    (b"MSH|^~\\&|A\rPID^1\r", "Segment 2 starts 'PID^1'"),
    (b"MSH|^~\\&|A\r  PID|1\r", "Segment 2 starts '  PID|1'"),
    (b"MSH|^~\\\\&|A\r", "repeats another delimiter"),
    (b"MSH|^~\\&#xy|A\r", "7 characters long"),
    (b"MSHA^~\\&A", "field separator 'A' is not usable"),
    (b"MSH|0000|", "component separator '0'"),
    (b"MSH|^~ &|", "escape character ' '"),
])
def test_parse_errors_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)) as info:
        parse(data)
    assert info.value.code in (100, 101, 102)


def test_parse_error_codes_and_locations() -> None:
    with pytest.raises(ParseError) as info:
        parse(b"MSH||A")
    assert info.value.code == 101 and info.value.location is not None
    assert info.value.location.to_er7() == "MSH^1^2"


def test_parse_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        parse(123)  # type: ignore[arg-type]


def test_blank_and_whitespace_lines_are_ignored() -> None:
    msg = parse(b"\r\n  \r\nMSH|^~\\&|A\r\n\r\n   \nPID|1\n\n")
    assert [s.name for s in msg] == ["MSH", "PID"] and msg.to_er7() == "MSH|^~\\&|A\rPID|1\r"


def test_segment_without_fields() -> None:
    msg = parse(b"MSH|^~\\&|A\rPD1\rPV1|1|I\rPD1\r")
    assert msg.get("PV1-2") == "I" and msg.get("PD1-1") == "" and msg.segment("PD1", 2) is not None
    assert msg.to_er7() == "MSH|^~\\&|A\rPD1\rPV1|1|I\rPD1\r"
    msg.set("PD1-3", "x")
    assert msg.to_er7().split("\r")[1] == "PD1|||x"


# -- delimiters and character sets -------------------------------------------------------------------

def test_delimiters_from_header() -> None:
    assert Delimiters.from_header("|", "^~\\&") == Delimiters()
    five = Delimiters.from_header("|", "^~\\&#")
    assert five.truncation == "#" and five.encoding_characters == "^~\\&#"
    three = Delimiters.from_header("|", "^~\\")
    assert three.subcomponent == "" and three.encoding_characters == "^~\\"
    odd = parse("MSH|^~\\}|HAPI\rPID|1||a}b^c&d\r")  # '}' as subcomponent separator, '&' is data
    assert odd.get("PID-3.1.2") == "b" and odd.get("PID-3.2") == "c&d"
    escape_brace = parse("MSH|^~}|X\rNTE|1||a}F}b\r")  # '}' as escape character, no subcomponents
    assert escape_brace.get("NTE-3") == "a|b"


def test_truncation_character_escape() -> None:
    msg = parse(load("custom_v27.hl7"))
    msg.set("NTE-3", "lot #7")
    assert msg.er7("NTE-3") == "lot \\P\\7" and parse(msg.to_bytes()).get("NTE-3") == "lot #7"


def test_declared_latin1_is_decoded_and_re_encoded() -> None:
    data = load("latin1.hl7")
    msg = parse(data)
    assert msg.codec == "latin-1" and msg.to_bytes() == normalised(data)
    msg.set("PID-5.1", "Łukasz")
    with pytest.raises(EncodeError, match="cannot be encoded as 'latin-1'"):
        msg.to_bytes()


def test_undeclared_non_utf8_falls_back_to_latin1() -> None:
    data = "MSH|^~\\&|A|B|||20240101||ADT^A01|X|P|2.3\rPID|1||1||Müller\r".encode("latin-1")
    msg = parse(data)
    assert msg.get("PID-5") == "Müller" and msg.codec == "latin-1" and msg.to_bytes() == data


def test_declared_utf8_with_latin1_bytes_does_not_crash() -> None:
    data = ("MSH|^~\\&|A|B|||20240101||ADT^A01|X|P|2.5||||||UNICODE UTF-8\rPID|1||1||Müller\r").encode("latin-1")
    msg = parse(data)
    assert msg.charset == "UNICODE UTF-8" and msg.get("PID-5") == "Müller" and msg.codec == "latin-1"


def test_ascii_declared_but_utf8_sent() -> None:
    data = "MSH|^~\\&|A|B|||20240101||ADT^A01|X|P|2.5||||||ASCII\rPID|1||1||Zoë\r".encode()
    msg = parse(data)
    assert msg.charset == "ASCII" and msg.get("PID-5") == "Zoë" and msg.to_bytes() == data


def test_charset_override_and_str_input() -> None:
    data = "MSH|^~\\&|A\rPID|1||1||Ærø\r".encode("cp1252")
    assert parse(data, charset="CP1252").get("PID-5") == "Ærø"
    text_msg = parse("\ufeffMSH|^~\\&|A|||||||||||||||8859/1\rPID|1||1||Ærø\r")
    assert text_msg.codec == "latin-1" and text_msg.to_bytes().endswith("Ærø\r".encode("latin-1"))
    assert parse("MSH|^~\\&|A\r", charset="8859/1").codec == "latin-1"


@pytest.mark.parametrize(("charset", "codec"), [
    ("", None), ("ASCII", "utf-8"), ("8859/1", "latin-1"), ("8859/15", "iso8859-15"),
    ("UNICODE UTF-8", "utf-8"), ("ISO IR87", "iso2022_jp"), ("GB 18030-2000", "gb18030"),
    ("windows-1252", "cp1252"), ("UNICODE UTF-16", None), ("NO SUCH SET", None),
])
def test_codec_for(charset: str, codec: str | None) -> None:
    from ehrgate.hl7.charset import codec_for
    assert codec_for(charset) == codec


@pytest.mark.parametrize(("codec", "charset"), [
    ("latin-1", "8859/1"), ("iso8859-1", "8859/1"), ("utf-8", "UNICODE UTF-8"), ("UTF8", "UNICODE UTF-8"),
    ("iso8859-15", "8859/15"), ("cp1252", None), ("no-such-codec", None),
])
def test_charset_for_names_a_codec_as_msh18(codec: str, charset: str | None) -> None:
    from ehrgate.hl7.charset import charset_for
    assert charset_for(codec) == charset


def test_decode_reports_codec() -> None:
    assert decode(b"MSH|^~\\&|A\r") == ("MSH|^~\\&|A\r", None)
    assert decode(b"\xef\xbb\xbfMSH|^~\\&|\xc3\xa9\r")[1] == "utf-8"
    assert decode(b"MSH|^~\\&|\xe9\r") == ("MSH|^~\\&|é\r", "latin-1")


def test_header_charset_edge_cases() -> None:
    from ehrgate.hl7.charset import header_charset
    assert header_charset(b"") == "" and header_charset(b"MSH\r") == "" and header_charset(b"PID|1") == ""
    long_header = b"MSH|^~\\&|" + b"x" * 3000 + b"|b|c|d|e|f|g|h|i|j|k|l|m|n|o|8859/1~UNICODE UTF-8\nPID|"
    assert header_charset(long_header) == "8859/1"


def test_message_is_unhashable_and_comparable() -> None:
    msg = parse("MSH|^~\\&|A\r")
    assert isinstance(msg, Message)
    with pytest.raises(TypeError):
        hash(msg)

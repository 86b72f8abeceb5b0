"""ehrgate.hl7.ack: original and enhanced acknowledgment (HL7 v2.5 section 2.9), MSA, ERR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ehrgate.hl7 import (
    AckCode,
    AckError,
    AckMode,
    ErrorCode,
    ErrorLocation,
    HL7Error,
    ParseError,
    Severity,
    accept_ack,
    acknowledgment_mode,
    application_ack,
    build_ack,
    format_timestamp,
    parse,
    reject_unparseable,
    wants_accept_ack,
    wants_application_ack,
)

SAMPLES = Path(__file__).resolve().parent / "samples"
TS = "20240401120000"


def message(msh15: str = "", msh16: str = "", version: str = "2.5.1", delimiters: str = "|^~\\&") -> str:
    fs, rest = delimiters[0], delimiters[1:]
    fields = ["MSH", rest, "SENDAPP^1.2^ISO", "SENDFAC", "RECVAPP", "RECVFAC", "20240401115959", "",
              "ADT^A01^ADT_A01", "CTRL-1", "T", version, "", "", msh15, msh16, "", "UNICODE UTF-8"]
    comp = rest[0]
    fields[2:] = [f.replace("^", comp) for f in fields[2:]]
    return fs.join(fields) + "\rPID|1||123^^^H^MR\r".replace("|", fs).replace("^", comp)


def test_ack_header_swaps_sender_and_receiver_and_echoes_control_id() -> None:
    original = parse(message())
    ack = build_ack(original, "AA", control_id="ACK-9", timestamp=TS)
    assert ack.er7("MSH-3") == "RECVAPP" and ack.get("MSH-4") == "RECVFAC"
    assert ack.er7("MSH-5") == "SENDAPP^1.2^ISO" and ack.get("MSH-6") == "SENDFAC"
    assert ack.get("MSH-7") == TS and ack.get("MSH-10") == "ACK-9"
    assert ack.er7("MSH-9") == "ACK^A01^ACK" and ack.get("MSH-11") == "T" and ack.get("MSH-12") == "2.5.1"
    assert ack.get("MSH-18") == "UNICODE UTF-8"
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "CTRL-1"
    assert ack.segment("ERR") is None
    assert ack.to_er7() == ("MSH|^~\\&|RECVAPP|RECVFAC|SENDAPP^1.2^ISO|SENDFAC|20240401120000||ACK^A01^ACK|ACK-9|"
                            "T|2.5.1||||||UNICODE UTF-8\rMSA|AA|CTRL-1\r")


def test_original_mode() -> None:
    original = parse(message())
    assert acknowledgment_mode(original) is AckMode.ORIGINAL
    for outcome, code in (("accept", "AA"), ("error", "AE"), ("reject", "AR")):
        ack = accept_ack(original, outcome, control_id="A", timestamp=TS)  # type: ignore[arg-type]
        assert ack is not None and ack.get("MSA-1") == code
        assert application_ack(original, outcome, control_id="A", timestamp=TS) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("msh15", "outcome", "expected"), [
    ("AL", "accept", "CA"), ("AL", "error", "CE"), ("AL", "reject", "CR"),
    ("NE", "accept", None), ("NE", "reject", None),
    ("ER", "accept", None), ("ER", "error", "CE"), ("ER", "reject", "CR"),
    ("SU", "accept", "CA"), ("SU", "error", None),
    ("", "accept", "CA"),  # enhanced mode (MSH-16 set), MSH-15 empty: read as AL
])
def test_enhanced_mode_accept_ack_follows_msh15(msh15: str, outcome: str, expected: str | None) -> None:
    original = parse(message(msh15, "AL"))
    assert acknowledgment_mode(original) is AckMode.ENHANCED
    ack = accept_ack(original, outcome, control_id="C1", timestamp=TS)  # type: ignore[arg-type]
    assert (ack.get("MSA-1") if ack else None) == expected
    assert wants_accept_ack(original, outcome) is (expected is not None)  # type: ignore[arg-type]
    if ack is not None:
        assert ack.get("MSH-15") == "NE" and ack.get("MSH-16") == "NE"  # an ACK is never acknowledged


@pytest.mark.parametrize(("msh16", "outcome", "expected"), [
    ("AL", "accept", "AA"), ("AL", "error", "AE"), ("AL", "reject", "AR"),
    ("NE", "accept", None), ("ER", "accept", None), ("ER", "error", "AE"),
    ("SU", "accept", "AA"), ("SU", "reject", None),
])
def test_enhanced_mode_application_ack_follows_msh16(msh16: str, outcome: str, expected: str | None) -> None:
    original = parse(message("AL", msh16))
    ack = application_ack(original, outcome, control_id="C2", timestamp=TS)  # type: ignore[arg-type]
    assert (ack.get("MSA-1") if ack else None) == expected
    assert wants_application_ack(original, outcome) is (expected is not None)  # type: ignore[arg-type]


def test_err_segment_v25_and_later() -> None:
    original = parse(message())
    errors = [
        AckError(ErrorCode.REQUIRED_FIELD_MISSING, "PID-7 is empty (expected a date of birth)",
                 ErrorLocation("PID", 1, 7)),
        AckError(ErrorCode.TABLE_VALUE_NOT_FOUND, "PID-8 'Q' is not in table 0001 | expected F, M, O, U",
                 ErrorLocation("PID", 1, 8, 1, 1), Severity.WARNING),
    ]
    ack = build_ack(original, AckCode.AE, control_id="E1", timestamp=TS, errors=errors)
    assert ack.get("MSA-1") == "AE" and ack.get("MSA-3") == ""
    first, second = ack.segments_named("ERR")
    assert first.er7("2") == "PID^1^7" and first.er7("3") == "101^Required field missing^HL70357"
    assert first.get("4") == "E" and first.get("8") == "PID-7 is empty (expected a date of birth)"
    assert second.er7("2") == "PID^1^8^1^1" and second.get("3") == "103" and second.get("4") == "W"
    assert second.get("8") == "PID-8 'Q' is not in table 0001 | expected F, M, O, U"
    assert "\\F\\" in second.er7("8")


def test_err_segment_before_v25_uses_eld_and_msa() -> None:
    original = parse(message(version="2.3"))
    error = AckError(ErrorCode.DATA_TYPE_ERROR, "PID-7 '1983021' is not a valid HL7 date", ErrorLocation("PID", 1, 7))
    ack = build_ack(original, "AE", control_id="E2", timestamp=TS, errors=[error, error])
    assert ack.er7("MSH-9") == "ACK^A01"
    assert ack.get("MSA-3") == "PID-7 '1983021' is not a valid HL7 date"
    assert ack.er7("MSA-6") == "102^Data type error^HL70357"
    assert ack.er7("ERR-1") == "PID^1^7^102&Data type error&HL70357~PID^1^7^102&Data type error&HL70357"


def test_version_21_message_type_has_no_trigger() -> None:
    ack = build_ack(parse(message(version="2.1")), "AA", control_id="X", timestamp=TS)
    assert ack.er7("MSH-9") == "ACK"


def test_ack_keeps_custom_delimiters() -> None:
    original = parse(message(delimiters="*$!\\@"))
    ack = build_ack(original, "AE", control_id="D1", timestamp=TS,
                    errors=[AckError(ErrorCode.APPLICATION_INTERNAL_ERROR, "a*b$c")])
    assert ack.to_er7().startswith("MSH*$!\\@*RECVAPP*RECVFAC*SENDAPP$1.2$ISO*")
    assert ack.get("ERR-8") == "a*b$c" and ack.get("MSA-2") == "CTRL-1"


def test_ack_without_escape_character_degrades_text() -> None:
    original = parse("MSH|^~|A|B|C|D|1||ADT^A01|Z1|P|2.5\r")
    ack = build_ack(original, "AR", control_id="Q", timestamp=TS,
                    errors=[AckError(ErrorCode.SEGMENT_SEQUENCE_ERROR, "bad | value ^ here\nand more")])
    assert ack.get("ERR-8") == "bad   value   here and more"


def test_timestamp_formatting() -> None:
    assert format_timestamp("20240101") == "20240101"
    assert format_timestamp(datetime(2024, 4, 1, 12, 0, 5, tzinfo=UTC)) == "20240401120005+0000"
    minus_five = timezone(timedelta(hours=-5))
    assert format_timestamp(datetime(2024, 4, 1, 7, 0, 5, tzinfo=minus_five)) == "20240401070005-0500"
    assert format_timestamp(datetime(2024, 4, 1, 7, 0, 5)) == "20240401070005"


def test_ack_error_from_exception() -> None:
    err = AckError.from_exception(ParseError("Segment 1 is 'EVN', expected 'MSH'"))
    assert err.code is ErrorCode.SEGMENT_SEQUENCE_ERROR and err.diagnostic.startswith("Segment 1")
    assert AckError.from_exception(HL7Error("odd", code=999)).code is ErrorCode.APPLICATION_INTERNAL_ERROR
    assert ErrorCode.UNSUPPORTED_VERSION_ID.text == "Unsupported version id"
    assert [int(c) for c in ErrorCode] == [0, 100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207]


@pytest.mark.parametrize("payload", [b"", b"garbage", b"\x00\xff\xfe", b"GET / HTTP/1.1\r\n\r\n", b"MSH", b"MSH|"])
def test_reject_unparseable_garbage(payload: bytes) -> None:
    ack = reject_unparseable(payload, control_id="R1", timestamp=TS)
    assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "" and ack.get("MSH-12") == "2.5.1"
    assert ack.get("ERR-3") == "100" and "not an HL7 v2 message" in ack.get("ERR-8")
    assert parse(ack.to_bytes()) == ack


def test_reject_unparseable_salvages_the_header() -> None:
    raw = message().encode() + b"pid|lowercase is not a segment\r"
    with pytest.raises(ParseError) as info:
        parse(raw)
    ack = reject_unparseable(raw, control_id="R2", timestamp=TS, error=info.value)
    assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "CTRL-1" and ack.er7("MSH-9") == "ACK^A01^ACK"
    assert ack.get("MSH-3") == "RECVAPP" and ack.er7("MSH-5") == "SENDAPP^1.2^ISO" and ack.get("MSH-11") == "T"
    assert ack.get("ERR-3") == "100" and "Segment 3" in ack.get("ERR-8")


def test_reject_unparseable_with_bad_delimiters_and_odd_version() -> None:
    ack = reject_unparseable("\ufeffMSH|^^^^|A|B|C|D|1||ADT^A01|Z9|P|2.5\r", control_id="R3", timestamp=TS,
                             diagnostic="MSH-2 is broken")
    assert ack.get("MSA-2") == "" and ack.get("ERR-8") == "MSH-2 is broken"
    odd = reject_unparseable(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|Z9|P|vX\x1c\r", control_id="R4", timestamp=TS)
    assert odd.get("MSH-12") == "2.5.1" and odd.get("MSA-2") == "Z9" and b"\x1c" not in odd.to_bytes()


def test_reject_unparseable_keeps_utf8_names_intact() -> None:
    raw = "MSH|^~\\&|APP|Bürgerspital|EHRGATE|HUB|1||ADT^A01|U9|P|2.5||||||UNICODE UTF-8\rpid|x\r".encode()
    ack = reject_unparseable(raw, control_id="R5", timestamp=TS)
    assert ack.get("MSH-6") == "Bürgerspital" and "Bürgerspital".encode() in ack.to_bytes()
    assert ack.get("MSH-18") == "UNICODE UTF-8"

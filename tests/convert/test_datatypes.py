"""Datatype converters (datatypes.py, codesystems.py) against the IG datatype maps."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ehrgate.convert import ConversionError, ConversionOptions
from ehrgate.convert.codesystems import code_system_uri
from ehrgate.convert.datatypes import (
    Ctx,
    address,
    codeable,
    contact_point,
    decimal,
    hd_system,
    human_name,
    identifier,
)
from ehrgate.convert.dtm import date, datetime_, instant, shifted
from ehrgate.convert.errors import parse_where
from ehrgate.convert.values import Value
from ehrgate.hl7 import Delimiters

UTC = Ctx(ConversionOptions(), "urn:ehrgate:id:SENDER")
NEW_YORK = Ctx(ConversionOptions(timezone="America/New_York"))


def v(text: str, where: str = "XXX-1") -> Value:
    return Value(text.split("^"), Delimiters(), where)


DATETIMES: list[tuple[str, Ctx, str]] = [
    ("2024", UTC, "2024"),
    ("202403", UTC, "2024-03"),
    ("20240315", UTC, "2024-03-15"),
    ("2024031508", UTC, "2024-03-15T08:00:00Z"),
    ("202403150830", UTC, "2024-03-15T08:30:00Z"),
    ("20240315083015", UTC, "2024-03-15T08:30:15Z"),
    ("20240315083015.1234", UTC, "2024-03-15T08:30:15.1234Z"),
    ("20240315083015-0500", UTC, "2024-03-15T08:30:15-05:00"),
    ("20240315083015+0530", UTC, "2024-03-15T08:30:15+05:30"),
    ("20240315083015+0000", UTC, "2024-03-15T08:30:15Z"),
    ("20240115083015", NEW_YORK, "2024-01-15T08:30:15-05:00"),
    ("20240715083015", NEW_YORK, "2024-07-15T08:30:15-04:00"),
    ("20110613122406637", UTC, "2011-06-13T12:24:06.637Z"),
]


@pytest.mark.parametrize(("raw", "ctx", "expected"), DATETIMES, ids=[d[0] for d in DATETIMES])
def test_dtm_keeps_precision_and_offset(raw: str, ctx: Ctx, expected: str) -> None:
    assert datetime_(raw, "PID-7", ctx) == expected


@pytest.mark.parametrize("raw", ["1983021", "20240230", "2024131", "20240315250000", "Aug 15, 1942", "0000",
                                 "20240315083015-2500"])
def test_invalid_dates_name_the_field(raw: str) -> None:
    with pytest.raises(ConversionError) as info:
        datetime_(raw, "PID-7", UTC)
    assert str(info.value) == f"PID-7: {raw!r} is not a valid HL7 date (expected YYYY[MM[DD[HH[MM[SS]]]]])"


def test_date_and_instant() -> None:
    assert date("19620320101500", "PID-7") == "1962-03-20"
    assert instant("20240315", "MSH-7", UTC) == "2024-03-15T00:00:00Z"
    assert instant("202403150830-0500", "MSH-7", UTC) == "2024-03-15T08:30:00-05:00"
    assert shifted("20240520093000-0400", "SCH-11", UTC, 45) == "2024-05-20T10:15:00-04:00"
    assert shifted("20240310013000", "SCH-11", NEW_YORK, 60) == "2024-03-10T03:30:00-04:00"


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="Time zone 'Mars/Olympus' is not known"):
        Ctx(ConversionOptions(timezone="Mars/Olympus"))


NUMBERS: list[tuple[str, Any]] = [("182", 182), ("-12.5", -12.5), ("1.50", Decimal("1.50")), ("+7", 7),
                                  (".5", 0.5), ("007", 7), ("3.", 3)]


@pytest.mark.parametrize(("raw", "expected"), NUMBERS)
def test_numbers_keep_their_digits(raw: str, expected: Any) -> None:
    value = decimal(raw, "OBX-5")
    assert value == expected and type(value) is type(expected)


def test_bad_number_names_the_field() -> None:
    with pytest.raises(ConversionError, match=r"^OBX\[3\]-5: 'abc' is not a valid HL7 number"):
        decimal("abc", "OBX[3]-5")


HD: list[tuple[str, str]] = [
    ("GHH", "urn:ehrgate:id:GHH"),
    ("SIMULATOR MRN", "urn:ehrgate:id:SIMULATOR%20MRN"),
    ("&2.16.840.1.113883.19.5&ISO", "urn:oid:2.16.840.1.113883.19.5"),
    ("&6b3c0a5e-2b1c-4a0e-9d5e-0c7a2c1f5b11&UUID", "urn:uuid:6b3c0a5e-2b1c-4a0e-9d5e-0c7a2c1f5b11"),
    ("&http://example.org/mrn&URI", "http://example.org/mrn"),
    ("2.16.840.1.113883.19.5", "urn:oid:2.16.840.1.113883.19.5"),
    ("", ""),
]


@pytest.mark.parametrize(("hd", "expected"), HD)
def test_assigning_authority_to_system(hd: str, expected: str) -> None:
    assert hd_system(Value(hd.split("&"), Delimiters(), "CX.4"), UTC) == expected


def test_identifier_systems_option_maps_namespaces() -> None:
    ctx = Ctx(ConversionOptions(identifier_systems={"GHH": "http://ghh.example.org/mrn"}))
    assert identifier(v("123^^^GHH^MR"), ctx) == {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "http://ghh.example.org/mrn", "value": "123"}


def test_identifier_without_authority_takes_the_senders() -> None:
    assert identifier(v("123"), UTC) == {"system": "urn:ehrgate:id:SENDER", "value": "123"}
    assert identifier(v("^^^GHH"), UTC) is None


def test_human_name() -> None:
    assert human_name(v("Everywoman^Eve^E^Jr^Dr^PhD^L"), UTC) == {
        "use": "official", "family": "Everywoman", "given": ["Eve", "E"], "prefix": ["Dr"], "suffix": ["Jr", "PhD"]}
    assert human_name(v("^^^^^^L"), UTC) is None


def test_address() -> None:
    assert address(v("1 Main St^Suite 2^Town^NC^27401^USA^B^^Guilford"), UTC) == {
        "use": "work", "line": ["1 Main St", "Suite 2"], "city": "Town", "district": "Guilford", "state": "NC",
        "postalCode": "27401", "country": "USA"}


TELECOM: list[tuple[str, str, dict[str, Any] | None]] = [
    ("(555)555-1212", "home", {"system": "phone", "value": "(555)555-1212", "use": "home"}),
    ("^WPN^PH^^1^555^5551212^99", "", {"system": "phone", "value": "+1 555 5551212 X99", "use": "work"}),
    ("^PRN^CP^^^555^5551212", "home", {"system": "phone", "value": "555 5551212", "use": "home"}),
    ("^^CP^^^555^5551212", "home", {"system": "phone", "value": "555 5551212", "use": "mobile"}),
    ("^NET^Internet^a@b.org", "home", {"system": "email", "value": "a@b.org"}),
    ("^^FX^^^555^5550000", "", {"system": "fax", "value": "555 5550000"}),
    ("^PRN^PH", "home", None),
    # XTN-18 preference order → rank, a positiveInt: a number past its range is left out
    ("^PRN^PH^^^555^5551212^^^^^^^^^^^2", "", {"system": "phone", "value": "555 5551212", "use": "home", "rank": 2}),
    ("^PRN^PH^^^555^5551212^^^^^^^^^^^99999999999", "", {"system": "phone", "value": "555 5551212", "use": "home"}),
    # XTN-13/14 effective start / expiration → period (XTN[ContactPoint])
    ("^PRN^PH^^^555^5551212^^^^^^20200101^20231231", "", {"system": "phone", "value": "555 5551212", "use": "home",
                                                          "period": {"start": "2020-01-01", "end": "2023-12-31"}}),
]


@pytest.mark.parametrize(("xtn", "default", "expected"), TELECOM)
def test_contact_point(xtn: str, default: str, expected: dict[str, Any] | None) -> None:
    found = contact_point(v(xtn), UTC, default_use=default)
    assert (found and {k: x for k, x in found.items() if k != "extension"}) == expected


def test_contact_point_parts_and_unformatted_number() -> None:
    found = contact_point(v("555-1212^WPN^PH^^1^555^5551212^99^^^^15555551212"), UTC)
    assert found is not None and found["value"] == "15555551212"
    assert [(e["url"].rsplit("-", 1)[1], e["valueString"]) for e in found["extension"]] == [
        ("country", "1"), ("area", "555"), ("local", "5551212"), ("extension", "99")]


def test_codeable_concept() -> None:
    assert codeable(v("2345-7^Glucose^LN^GLU^Glucose^L^2.77^^Glucose [Mass/volume]"), UTC) == {
        "coding": [{"system": "http://loinc.org", "version": "2.77", "code": "2345-7", "display": "Glucose"},
                   {"system": "urn:ehrgate:codesystem:L", "code": "GLU", "display": "Glucose"}],
        "text": "Glucose [Mass/volume]"}
    assert codeable(v("^Free text only"), UTC) == {"text": "Free text only"}
    assert codeable(v("E^^"), UTC, "0007") == {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0007", "code": "E"}]}


SYSTEMS = [("LN", "http://loinc.org"), ("SCT", "http://snomed.info/sct"), ("CVX", "http://hl7.org/fhir/sid/cvx"),
           ("RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"), ("I10", "http://hl7.org/fhir/sid/icd-10"),
           ("I10C", "http://hl7.org/fhir/sid/icd-10-cm"), ("UCUM", "http://unitsofmeasure.org"),
           ("HL70001", "http://terminology.hl7.org/CodeSystem/v2-0001"),
           ("HL7 0078", "http://terminology.hl7.org/CodeSystem/v2-0078"),
           ("99ZZZ", "urn:ehrgate:codesystem:99ZZZ"), ("", "")]


@pytest.mark.parametrize(("name", "uri"), SYSTEMS)
def test_code_system_names(name: str, uri: str) -> None:
    assert code_system_uri(name) == uri


def test_error_locations_are_parsed_from_the_field_name() -> None:
    loc = parse_where("OBX[3]-5(2).1")
    assert loc is not None
    assert (loc.segment, loc.sequence, loc.field, loc.repetition, loc.component) == ("OBX", 3, 5, 2, 1)
    assert parse_where("PID-7").to_er7() == "PID^1^7"  # type: ignore[union-attr]
    assert parse_where("no location") is None


def test_text_keeps_unescaped_delimiters_and_reads_formatting_commands() -> None:
    """ST/TX/FT text: a '&' or '^' left unescaped is text; FT formatting commands (HL7 v2.5.1 section
    2.7.6) become plain text only when asked, escapes are decoded either way."""
    d = Delimiters()
    assert Value(["Ham & eggs"], d, "OBX-5").text() == "Ham & eggs"
    assert Value(["a", "b&c"], d, "OBX-5").text() == "a^b&c"
    ft = Value(["\\H\\Note:\\N\\\\.sp2\\x \\T\\ y\\.ce\\z\\.sk 3\\w\\.in+4\\\\E\\H\\E\\"], d, "OBX-5")
    assert ft.text(formatted=True) == "Note:\n\nx & y\nz   w\\H\\"
    assert ft.text() == "\\H\\Note:\\N\\\\.sp2\\x & y\\.ce\\z\\.sk 3\\w\\.in+4\\\\H\\"


def test_shift_past_the_calendar_names_the_field() -> None:
    with pytest.raises(ConversionError, match=r"^PR1-5: '20240520093000' plus 6e\+09 minutes is past the year 9999"):
        shifted("20240520093000", "PR1-5", UTC, 6e9)

"""The engine's entry point (step.py) and the package's public surface."""

from __future__ import annotations

import ehrgate.convert as convert_pkg
from ehrgate.convert import ConversionError, ConversionOptions, hl7_to_fhir
from ehrgate.hl7 import AckError, build_ack, parse

from .conftest import pick, sample


def test_public_surface() -> None:
    assert convert_pkg.__all__ == sorted(convert_pkg.__all__)
    assert set(convert_pkg.__all__) == {"ConversionError", "ConversionOptions", "ConversionResult", "OutboundError",
                                        "appointment_to_siu", "convert", "hl7_to_fhir", "patient_to_adt"}


def test_channel_and_message_reference_are_recorded() -> None:
    result = hl7_to_fhir(parse(sample("oru_r01.hl7")), channel="lab-in", message_ref="messages/42")
    assert pick(result.bundle, "Observation.meta.source") == "urn:ehrgate:channel:lab-in#ORU-0001"
    assert pick(result.bundle, "Provenance.entity[0].what.identifier") == {
        "system": "urn:ehrgate:message-store", "value": "messages/42"}
    assert pick(result.bundle, "Provenance.entity[0].role") == "source"
    assert result.message_type == "ORU^R01" and result.control_id == "ORU-0001"


def test_channel_options_are_kept() -> None:
    options = ConversionOptions(timezone="Europe/London", identifier_systems={"GHH": "http://ghh.example/mrn"})
    result = hl7_to_fhir(parse(sample("adt_a04.hl7")), channel="adt-in", message_ref="m/1", options=options)
    assert pick(result.bundle, "Patient.identifier[0].system") == "http://ghh.example/mrn"
    assert pick(result.bundle, "Encounter.period.start") == "2024-04-01T09:00:00+01:00"


def test_empty_message_time_uses_the_received_time() -> None:
    raw = sample("adt_a28.hl7").replace(b"|20240501120000||ADT^A28", b"|||ADT^A28")
    try:
        hl7_to_fhir(parse(raw), channel="c", message_ref="m")
    except ConversionError as exc:
        assert str(exc).startswith("MSH-7: missing")
    else:
        raise AssertionError("MSH-7 empty and no received time must fail")
    result = hl7_to_fhir(parse(raw), channel="c", message_ref="m",
                         options=ConversionOptions(received_at="2024-05-01T12:00:03Z"))
    assert pick(result.bundle, "Provenance.recorded") == "2024-05-01T12:00:03Z"


def test_conversion_error_renders_as_an_err_segment() -> None:
    message = parse(sample("adt_bad_dob.hl7"))
    try:
        hl7_to_fhir(message, channel="c", message_ref="m")
    except ConversionError as exc:
        ack = build_ack(message, "AE", control_id="ACK1", timestamp="20240401090001",
                        errors=[AckError.from_exception(exc)])
    else:
        raise AssertionError("expected a ConversionError")
    assert ack.get("MSA-1") == "AE"
    assert ack.get("ERR-2.1") == "PID" and ack.get("ERR-2.3") == "7"
    assert ack.get("ERR-3.1") == "102"
    assert "is not a valid HL7 date" in ack.get("ERR-8")


def test_unsupported_message_types_are_conversion_errors() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20240101||DFT^P03|X1|P|2.5.1\rPID|1||1^^^B\r"
    try:
        hl7_to_fhir(parse(raw), channel="c", message_ref="m")
    except ConversionError as exc:
        assert exc.code == 200
        assert str(exc).startswith("MSH-9: 'DFT^P03' is not a message type this conversion handles")
    else:
        raise AssertionError("expected a ConversionError")

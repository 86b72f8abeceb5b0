"""Pins the public surface of ehrgate.hl7 (httpx-style): a change here is an API change."""

from __future__ import annotations

import ehrgate.hl7 as hl7pkg
from ehrgate.hl7 import errors


def test_public_names_are_sorted_and_exported() -> None:
    assert hl7pkg.__all__ == sorted(hl7pkg.__all__, key=lambda n: (not n.isupper(), n[0].islower(), n))
    for name in hl7pkg.__all__:
        assert hasattr(hl7pkg, name), name


def test_public_surface() -> None:
    assert set(hl7pkg.__all__) == {
        "END_BLOCK", "START_BLOCK", "AckCode", "AckError", "AckMode", "AckTimeout", "Batch", "BatchError",
        "BatchFile", "ConnectionClosed", "Delimiters", "EncodeError", "ErrorCode", "ErrorLocation", "Frame",
        "FrameTooLarge", "Garbage", "HL7Error", "MLLPClient", "MLLPDecoder", "MLLPError", "MLLPServer",
        "Message", "Outcome", "Oversize", "ParseError", "PathError", "PatientIdentifier", "Peer", "Segment",
        "Severity", "Truncated", "accept_ack", "acknowledgment_mode", "application_ack", "build_ack", "decode",
        "escape", "format_timestamp", "format_tree", "frame", "parse", "read_batch", "reject_unparseable",
        "send_message", "split_messages", "start_mllp_server", "unescape", "wants_accept_ack",
        "wants_application_ack",
    }


def test_error_tree_is_documented_and_rooted() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, Exception):
            assert issubclass(cls, errors.HL7Error)
            assert name in doc, f"{name} missing from the hierarchy drawn in errors.py"
    assert issubclass(errors.AckTimeout, TimeoutError) and issubclass(errors.ParseError, ValueError)

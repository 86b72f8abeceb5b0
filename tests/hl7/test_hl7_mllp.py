"""ehrgate.hl7.mllp: framing and the incremental decoder (HL7 v2 Appendix C)."""

from __future__ import annotations

import pytest

from ehrgate.hl7 import (
    END_BLOCK,
    START_BLOCK,
    Frame,
    Garbage,
    MLLPDecoder,
    MLLPError,
    Oversize,
    Truncated,
    frame,
)


def test_framing_bytes_are_named() -> None:
    assert START_BLOCK == b"\x0b" and END_BLOCK == b"\x1c\r"
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\r"


@pytest.mark.parametrize("payload", [b"a\x0bb", b"a\x1cb"])
def test_frame_refuses_framing_bytes_in_payload(payload: bytes) -> None:
    with pytest.raises(MLLPError, match="offset 1"):
        frame(payload)


def test_several_frames_in_one_chunk() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(frame(b"one") + frame(b"two") + frame(b"")) == [Frame(b"one"), Frame(b"two"), Frame(b"")]
    assert not decoder.in_frame


def test_split_inside_the_end_block() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0bMSH|a\x1c") == []
    assert decoder.feed(b"\r\x0bMSH|b") == [Frame(b"MSH|a")]
    assert decoder.in_frame
    assert decoder.feed(b"\x1c") == []
    assert decoder.feed(b"\r") == [Frame(b"MSH|b")]


def test_byte_at_a_time() -> None:
    decoder = MLLPDecoder()
    events = [e for b in frame(b"MSH|1") + b"\r\n" + frame(b"MSH|2") for e in decoder.feed(bytes([b]))]
    assert events == [Frame(b"MSH|1"), Frame(b"MSH|2")]


def test_whitespace_between_frames_is_not_garbage() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\r\n " + frame(b"x") + b"\n\r\n") == [Frame(b"x")]


def test_garbage_outside_frames_is_reported_in_order() -> None:
    decoder = MLLPDecoder()
    events = decoder.feed(b"junk" + frame(b"a") + b"more junk" + frame(b"b") + b"tail")
    assert events == [Garbage(b"junk"), Frame(b"a"), Garbage(b"more junk"), Frame(b"b"), Garbage(b"tail")]


def test_fs_followed_by_lf_or_the_next_start_block_still_ends_the_frame() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0ba\x1c\x0bb\x1c\r") == [Frame(b"a"), Frame(b"b")]
    assert decoder.feed(b"\x0bc\x1c\n\x0bd\x1c") == [Frame(b"c")]
    assert decoder.feed(b"\x0be\x1c\r") == [Frame(b"d"), Frame(b"e")]


@pytest.mark.parametrize("cut", [None, 12, 13, 14])
def test_a_stray_fs_inside_a_message_does_not_end_its_frame(cut: int | None) -> None:
    """An FS followed by other data is part of the payload: ending the frame there answered the first
    half of the message as if it were all of it, and closed the connection on the rest ("bytes
    outside any frame") - wherever the reads are cut."""
    data = b"\x0bMSH|^~\\&|A\x1c|B\rPID|1\x1c\r\x0bMSH|2\x1c\r"
    decoder = MLLPDecoder()
    events = decoder.feed(data) if cut is None else decoder.feed(data[:cut]) + decoder.feed(data[cut:])
    assert events == [Frame(b"MSH|^~\\&|A\x1c|B\rPID|1"), Frame(b"MSH|2")]


def test_start_block_inside_a_frame_truncates_it() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0bpartial\x0bwhole\x1c\r") == [Truncated(b"partial"), Frame(b"whole")]


def test_oversize_frame_is_dropped_but_the_stream_continues() -> None:
    decoder = MLLPDecoder(max_message_bytes=10, head_bytes=4)
    events = decoder.feed(b"\x0b" + b"A" * 6)
    events += decoder.feed(b"B" * 100)
    events += decoder.feed(b"\x1c\r" + frame(b"ok"))
    assert events == [Oversize(106, 10, b"AAAA"), Frame(b"ok")]
    exact = MLLPDecoder(max_message_bytes=3)
    assert exact.feed(frame(b"abc") + frame(b"abcd")) == [Frame(b"abc"), Oversize(4, 3, b"abc")]


def test_close_reports_an_open_frame() -> None:
    decoder = MLLPDecoder()
    decoder.feed(b"\x0bhalf a message")
    assert decoder.close() == [Truncated(b"half a message")]
    assert decoder.close() == []
    pending_end = MLLPDecoder()
    pending_end.feed(b"\x0bwhole\x1c")
    assert pending_end.close() == [Frame(b"whole")]


def test_invalid_limit() -> None:
    with pytest.raises(ValueError, match="max_message_bytes 0"):
        MLLPDecoder(0)


def test_utf8_payload_passes_through_untouched() -> None:
    payload = "MSH|^~\\&|A\rPID|1||1||Ñoño^José\r".encode()
    assert MLLPDecoder().feed(frame(payload)) == [Frame(payload)]


def _in_two_reads(decoder: MLLPDecoder, data: bytes) -> list[object]:
    """The general path: the same bytes, split after the first one."""
    return decoder.feed(data[:1]) + decoder.feed(data[1:]) + decoder.close()


@pytest.mark.parametrize("chunk", [
    b"\x0bMSH|a\x1c\r",  # the usual read: one whole frame (the fast path)
    b"\x0b\x1c\r",  # an empty frame
    b"\x0bMSH|a\x1c\r\x0bMSH|b\x1c\r",  # two frames
    b"\x0bMSH|a\x0bMSH|b\x1c\r",  # a start block inside: truncated
    b"\x0bMSH|a\x1cMSH|b\x1c\r",  # FS without CR inside
    b"\x0bMSH|abcdefgh\x1c\r",  # over the limit below
    b"\x0bMSH|abcdefg\x1c\r",  # exactly at the limit
    b"\x0bMSH|a\x1c\rjunk\x1c\r",  # garbage after the frame
    b"x\x0bMSH|a\x1c\r",  # garbage before
])
def test_whole_frame_reads_decode_as_byte_at_a_time(chunk: bytes) -> None:
    """A read that holds exactly one frame takes a short path; it must give the events the general
    path gives for the same bytes in two reads, and leave the decoder ready for the next frame."""
    fast = MLLPDecoder(max_message_bytes=11)
    assert fast.feed(chunk) + fast.close() == _in_two_reads(MLLPDecoder(max_message_bytes=11), chunk)
    assert fast.feed(b"\x0bMSH|z\x1c\r") == [Frame(b"MSH|z")]


def test_whole_frame_read_after_a_split_frame() -> None:
    """A chunk that looks like one whole frame is not one while a frame is open or an FS is pending."""
    d = MLLPDecoder()
    assert d.feed(b"\x0bMSH|a") == []
    assert d.feed(b"\x0bMSH|b\x1c\r") == [Truncated(b"MSH|a"), Frame(b"MSH|b")]
    assert d.feed(b"\x0bMSH|c\x1c") == []
    assert d.feed(b"\x0bMSH|d\x1c\r") == [Frame(b"MSH|c"), Frame(b"MSH|d")]

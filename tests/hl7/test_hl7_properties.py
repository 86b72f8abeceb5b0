"""Property-based tests (hypothesis): round trips, chunking invariance, and fuzzing for clean errors.

Kept bounded (modest max_examples, no deadline on this slow shared machine) so the whole hl7 suite
stays well under a minute.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrgate.hl7 import (
    Delimiters,
    Frame,
    Garbage,
    HL7Error,
    MLLPDecoder,
    Oversize,
    ParseError,
    Truncated,
    escape,
    format_tree,
    frame,
    parse,
    read_batch,
    reject_unparseable,
    unescape,
)

BOUNDED = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Candidate delimiter characters: printable ASCII punctuation.
PUNCTUATION = "|^~\\&#!$%*+/:;=?@`{}'\"<>,"


@st.composite
def delimiters(draw: st.DrawFn) -> Delimiters:
    chars = draw(st.permutations(PUNCTUATION))
    five = draw(st.booleans())
    return Delimiters(chars[0], chars[1], chars[2], chars[3], chars[4], chars[5] if five else "")


TEXT = st.text(st.characters(codec="utf-8"), max_size=12)  # the utf-8 codec excludes surrogates
SEGMENT_ID = st.from_regex(r"\A(?:Z[A-Z0-9]{2}|PID|OBX|NTE|PV1)\Z")
Field = list[list[list[str]]]


def field_values() -> st.SearchStrategy[Field]:
    subs = st.lists(TEXT, min_size=1, max_size=3)
    comps = st.lists(subs, min_size=1, max_size=3)
    return st.lists(comps, min_size=1, max_size=3)


@st.composite
def messages(draw: st.DrawFn) -> tuple[Delimiters, list[tuple[str, list[Field]]]]:
    d = draw(delimiters())
    segments = draw(st.lists(st.tuples(SEGMENT_ID, st.lists(field_values(), min_size=1, max_size=5)),
                             min_size=1, max_size=5))
    return d, segments


def serialize(d: Delimiters, segments: list[tuple[str, list[Field]]]) -> str:
    """The generator's own ER7 writer: escape every primitive, join level by level."""
    def field_er7(field: Field) -> str:
        return d.repetition.join(d.component.join(d.subcomponent.join(escape(s, d) for s in comps)
                                                  for comps in rep) for rep in field)
    lines = [d.field.join(["MSH", d.encoding_characters, "GEN", "", "", "", "", "", "ZZZ^Z01", "1", "P", "2.8"])]
    lines += [d.field.join([name] + [field_er7(f) for f in fields]) for name, fields in segments]
    return "\r".join(lines) + "\r"


@BOUNDED
@given(messages())
def test_generated_messages_round_trip(generated: tuple[Delimiters, list[tuple[str, list[Field]]]]) -> None:
    d, segments = generated
    text = serialize(d, segments)
    msg = parse(text)
    assert msg.to_er7() == text and msg.delimiters == d
    assert parse(msg.to_bytes()) == msg
    occurrence: dict[str, int] = {}
    for index, (name, fields) in enumerate(segments, start=1):
        occurrence[name] = occurrence.get(name, 0) + 1
        seg = msg.segments[index]
        prefix = f"{name}[{occurrence[name]}]"
        for f, field in enumerate(fields, start=1):
            for r, rep in enumerate(field, start=1):
                for c, comps in enumerate(rep, start=1):
                    for s, value in enumerate(comps, start=1):
                        path = f"{prefix}-{f}({r}).{c}.{s}"
                        assert msg.get(path) == value, path
                        assert seg.get(f"{f}({r}).{c}.{s}") == value
            assert len(msg.get_all(f"{prefix}-{f}")) == len(field) or not msg.er7(f"{prefix}-{f}")
    format_tree(msg)


@BOUNDED
@given(delimiters(), st.lists(st.tuples(st.integers(1, 6), st.integers(1, 3), st.integers(1, 3),
                                        st.integers(1, 3), TEXT), max_size=12))
def test_set_then_serialize_then_get(d: Delimiters, writes: list[tuple[int, int, int, int, str]]) -> None:
    msg = parse(d.field.join(["MSH", d.encoding_characters, "A"]) + "\r")
    msg.append_segment("ZPX")
    expected: dict[str, str] = {}
    for field, rep, comp, sub, value in writes:
        path = f"ZPX-{field}({rep}).{comp}.{sub}"
        msg.set(path, value)
        expected[path] = value
    again = parse(msg.to_bytes())
    for path, value in expected.items():
        assert again.get(path) == value, path


@settings(max_examples=300, deadline=None)
@given(delimiters(), st.text(max_size=40))
def test_escape_round_trip(d: Delimiters, text: str) -> None:
    encoded = escape(text, d)
    assert unescape(encoded, d) == text
    for char in (d.field, d.component, d.repetition, d.subcomponent, d.truncation, "\r", "\n"):
        if char:
            assert char not in encoded


PAYLOAD = st.binary(max_size=60).map(lambda b: b.replace(b"\x0b", b"v").replace(b"\x1c", b"f"))


@BOUNDED
@given(st.lists(PAYLOAD, max_size=6), st.lists(st.sampled_from([b"", b"\r", b"\n", b"\r\n"]), max_size=6),
       st.lists(st.integers(0, 500), max_size=10))
def test_decoder_is_independent_of_chunking(payloads: list[bytes], gaps: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) + (gaps[i] if i < len(gaps) else b"") for i, p in enumerate(payloads))
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    decoder = MLLPDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.close()
    assert events == [Frame(p) for p in payloads]


@BOUNDED
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8), st.integers(1, 64))
def test_decoder_fuzz(stream: bytes, cuts: list[int], limit: int) -> None:
    def run(chunks: list[bytes]) -> tuple[list[Any], bytes]:
        decoder = MLLPDecoder(max_message_bytes=limit)
        events = [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.close()
        for event in events:
            assert isinstance(event, (Frame, Garbage, Oversize, Truncated))
            if isinstance(event, Frame):
                assert len(event.payload) <= limit and b"\x0b" not in event.payload
        garbage = b"".join(e.data for e in events if isinstance(e, Garbage))
        frames = [e for e in events if not isinstance(e, Garbage)]
        return frames, bytes(b for b in garbage if b not in b" \t\r\n")

    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert run(chunks) == run([stream])


HEADERS = st.sampled_from([b"", b"MSH|^~\\&|", b"MSH|^~\\&#|A|B|C|D|2024||ADT^A01|1|P|2.7\r", b"\xef\xbb\xbfMSH|"])


@settings(max_examples=300, deadline=None)
@given(HEADERS, st.binary(max_size=300))
def test_parser_fuzz_raises_only_parse_errors(header: bytes, body: bytes) -> None:
    data = header + body
    try:
        msg = parse(data)
    except ParseError:
        pass
    else:
        format_tree(msg)
        for segment in msg.segments:
            for n in range(len(segment.fields)):
                segment.parts(n)
        msg.get("PID-3(2).4.1"), msg.get_all("MSH-9"), msg.patient_identifiers
        assert parse(msg.to_er7()) == msg
    read_batch(data)
    ack = reject_unparseable(data, control_id="F1", timestamp="20240101")
    assert parse(ack.to_bytes()).get("MSA-1") == "AR"


@BOUNDED
@given(st.text(max_size=30))
def test_paths_fuzz_raise_only_path_errors(path: str) -> None:
    msg = parse("MSH|^~\\&|A\rPID|1||x\r")
    try:
        msg.get(path)
    except HL7Error:
        pass

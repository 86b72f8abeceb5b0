"""The receipt hot path's shortcuts give exactly what the general code gives: ``describe`` reads the
same header values as ``Message.get``, and a cached ACK template renders the same bytes as the
ACK builder - over the sample messages, the shared corpus (when present) and generated messages
with arbitrary delimiters, escapes, repetitions and components."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrgate.engine.acks import Acks
from ehrgate.engine.info import MessageInfo, describe
from ehrgate.hl7 import (
    AckMode,
    Delimiters,
    HL7Error,
    Message,
    accept_ack,
    acknowledgment_mode,
    application_ack,
    build_ack,
    escape,
    parse,
    split_messages,
)

from ..conftest import CORPUS
from ..hl7.test_hl7_properties import delimiters, field_values

SAMPLES = Path(__file__).resolve().parents[1] / "hl7" / "samples"


def reference(raw: bytes, order_by: str | None = None) -> MessageInfo:
    """``describe`` as it was written first, on the public Message API (the oracle)."""
    try:
        msg = parse(raw)
        kind = msg.message_type
        if msg.trigger_event:
            kind += "^" + msg.trigger_event
        ids: list[str] = []
        for pid in msg.patient_identifiers:
            if pid.value and pid.value not in ids:
                ids.append(pid.value[:128])
        key = msg.get(order_by) if order_by else ""
        sender = msg.sending_application + ("^" + msg.sending_facility if msg.sending_facility else "")
        return MessageInfo(kind[:40], msg.control_id[:64], sender[:128], tuple(ids), key[:128], None, msg)
    except HL7Error as exc:
        return MessageInfo(error=exc.message)


def builder_ack(msg: Message, *, application: bool, control_id: str, stamp: str) -> bytes:
    ack = application_ack(msg, "accept", control_id=control_id, timestamp=stamp) if application else None
    if ack is None:
        ack = accept_ack(msg, "accept", control_id=control_id, timestamp=stamp)
    if ack is None:
        ack = build_ack(msg, "CA", control_id=control_id, timestamp=stamp)
    return ack.to_bytes()


def check_ack(acks: Acks, msg: Message, application: bool) -> None:
    """The fast ACK equals the builder's given the same control ID and time."""
    n = getattr(acks, "_n", 0) + 1
    stamp, cid = f"2024040112{n % 60:02d}00+0000", f"ACK{n}"
    acks._n = n  # type: ignore[attr-defined]
    acks.timestamp = lambda: stamp  # type: ignore[method-assign]
    acks.control_id = lambda: cid  # type: ignore[method-assign]
    fast, code = acks.accepted(msg, application=application)
    assert fast == builder_ack(msg, application=application, control_id=cid, stamp=stamp)
    assert code == parse(fast).get("MSA-1")


def corpus_messages() -> list[bytes]:
    files = sorted(SAMPLES.glob("*.hl7"))
    root = CORPUS / "hl7v2"
    if root.is_dir():
        files += sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".hl7", ".txt", ".er7"))
    out = []
    for f in files:
        try:
            out += [t.encode("utf-8") for t in split_messages(f.read_bytes())]
        except HL7Error:
            out.append(f.read_bytes())
    return out


def test_describe_and_acks_match_the_general_code_on_every_sample_and_corpus_message() -> None:
    acks = Acks()
    raws = corpus_messages()
    assert len(raws) > 5
    for raw in raws:
        fast, slow = describe(raw, "PID-3.1"), reference(raw, "PID-3.1")
        assert fast == slow, raw[:200]
        if fast.message is not None:
            for application in (False, True, False):  # the second False uses the cached template
                try:
                    check_ack(acks, fast.message, application)
                except HL7Error:
                    pass  # the builder refuses it too (text the character set cannot carry)
    assert sum(t is not None for t in acks._templates.values()) > 5  # the templates were used


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    d: Delimiters = draw(delimiters())

    def field() -> str:
        value = draw(field_values())
        return d.repetition.join(d.component.join(d.subcomponent.join(escape(s, d) for s in comps) for comps in rep)
                                 for rep in value)

    modes = st.sampled_from(["", "AL", "NE", "ER", "SU"])
    msh = ["MSH", d.encoding_characters, field(), field(), "EHRGATE", "HUB", "20240401", "", field(), field(), "P",
           draw(st.sampled_from(["2.3", "2.4", "2.5.1", "2.8"])), "", "", draw(modes), draw(modes)]
    pid = ["PID", "1", "", field(), "", "Doe" + d.component + "Jo"]
    return (d.field.join(msh) + "\r" + d.field.join(pid) + "\r").encode("utf-8")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers(), st.text(st.characters(codec="utf-8"), max_size=8))
def test_generated_headers(raw: bytes, other_id: str) -> None:
    assert describe(raw) == reference(raw)
    info = describe(raw)
    if info.message is None:
        return
    acks = Acks()
    msg = info.message
    try:
        check_ack(acks, msg, False)
        sibling = msg.copy()
        sibling.set("MSH-10", other_id)  # same kind, another control ID: rendered from the template
        check_ack(acks, sibling, False)
        check_ack(acks, msg, True)
        check_ack(acks, sibling, True)
    except HL7Error:
        pass


@pytest.mark.parametrize("raw", [
    b"", b"garbage", b"MSH|^~\\&|A\rPID|1||X~Y~X^^^Z\r", b"MSH|^~\\&|A|B|C|D|1||ADT|1\rPID",
    # an escape, and nothing else, in each field describe reads (its shortcut takes plain text only)
    b"MSH|^~\\&|A\\T\\B|GOOD\\F\\HEALTH|C|D|1||ADT\\S\\X^A\\E\\01|C\\T\\1\rPID|1||M\\T\\1~N\\S\\2^^^Z\r",
    b"MSH|^~\\&|A&B|G&H|C|D|1||ADT&X^A01&Y|C&1\rPID|1||M&1~N2\r",  # subcomponents
    b"MSH|^~\\|A&B|G|C|D|1||ADT^A01|C1\rPID|1||M&1~N2\r",  # '&' undeclared: text
    b"MSH|^|A~B|G|C|D|1||ADT~X^A01|C1\rPID|1||M1~N2^X\r"])  # only a component separator
def test_edge_cases(raw: bytes) -> None:
    assert describe(raw) == reference(raw)


def test_an_error_text_the_character_set_cannot_carry_still_gives_an_ae() -> None:
    """An error text (a destination's, a step's) with a character MSH-18's character set lacks made
    the ACK builder raise, and the listener answered AR 'cannot be encoded' for a message that was
    stored and processed: the sender read 'rejected' where the outcome was an application error."""
    from ehrgate.hl7 import AckError, ErrorCode

    latin = parse("MSH|^~\\&|A|B|C|D|20240401||ADT^A01|E1|P|2.5.1||||||8859/1\rPID|1||1||Müller\r".encode("latin-1"))
    ack, code = Acks().outcome(latin, "error", [AckError(ErrorCode.APPLICATION_INTERNAL_ERROR,
                                                         "peer: Ungültig – €10 fehlt")], application=True)
    assert code == "AE"
    got = parse(ack)
    assert got.get("MSA-1") == "AE" and got.get("MSA-2") == "E1" and got.get("MSH-18") == "8859/1"
    assert got.get("ERR-8") == "peer: Ungültig ? ?10 fehlt"


def general_mode(msg: Message) -> AckMode:
    """``acknowledgment_mode`` as it was written first, on ``get`` (the oracle of its shortcut)."""
    return AckMode.ENHANCED if msg.accept_ack_type or msg.application_ack_type else AckMode.ORIGINAL


def test_acknowledgment_mode_matches_get_on_every_sample_and_corpus_message() -> None:
    seen = set()
    for raw in corpus_messages():
        try:
            msg = parse(raw)
        except HL7Error:
            continue
        seen.add(acknowledgment_mode(msg))
        assert acknowledgment_mode(msg) is general_mode(msg), raw[:200]
    assert AckMode.ORIGINAL in seen


@pytest.mark.parametrize(("tail", "enhanced"), [
    ("", False), ("|", False), ("||", False), ("|||", False), ("|||||", False), ("|||8859/1", False),
    ("|AL", True), ("||AL", True), ("|AL|NE", True), ("||NE|", True), ("|\\E\\", True), ("||\\T\\", True),
    # the first component, repetition or subcomponent is what ``get`` reads: empty here
    ("|^AL", False), ("||^AL", False), ("|~AL", False), ("||&AL", False), ("|^", False), ("|^|^", False)])
def test_acknowledgment_mode_of_msh_15_and_16_forms(tail: str, enhanced: bool) -> None:
    """MSH-15/16 empty, absent, or holding a value whose first component is empty ('^AL' reads as
    empty through ``get``) or an escape: the shortcut answers what ``get`` says."""
    msg = parse(f"MSH|^~\\&|A|B|C|D|20240401||ADT^A01|1|P|2.5.1||{tail}\r".encode())  # MSH-14 onwards
    assert acknowledgment_mode(msg) is general_mode(msg)
    assert (acknowledgment_mode(msg) is AckMode.ENHANCED) is enhanced


@given(headers())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_acknowledgment_mode_of_generated_headers(raw: bytes) -> None:
    try:
        msg = parse(raw)
    except HL7Error:
        return
    assert acknowledgment_mode(msg) is general_mode(msg)

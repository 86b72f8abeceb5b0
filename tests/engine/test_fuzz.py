"""Bounded fuzzing of the engine's ingest over real MLLP connections (hypothesis).

Each example is a byte stream - valid messages (original and enhanced mode), mutated messages,
random payloads, oversize frames, bytes inside and between frames, garbage - cut into random
chunks and sent on a fresh connection to a running channel: ``ehrgate serve`` in a child process
(SQLite), which also keeps the engine's own use of ``random`` away from hypothesis's generation.
The properties: the server never dies and logs no error; every complete frame is answered with an
HL7 ACK, in order (enhanced mode: none, one or two, as MSH-15/16 ask), or, after bytes outside any
frame, the connection is closed; a bystander connection opened first keeps getting its AAs after
every example; the listener accepts new connections at the end.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrgate.engine.info import describe
from ehrgate.hl7 import AckMode, Frame, Garbage, MLLPDecoder, Oversize, acknowledgment_mode, frame, parse

from .conftest import hl7

pytestmark = pytest.mark.slow
MAX_BYTES = 4096


@contextmanager
def engine_process(tmp: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    """``ehrgate serve`` with one MLLP channel: (port, process, its log file)."""
    config = tmp / "ehrgate.yaml"
    config.write_text(
        "channels:\n"
        "  fuzz:\n"
        f"    source: {{type: mllp, host: 127.0.0.1, port: 0, max_message_bytes: {MAX_BYTES}, idle_timeout: 30}}\n"
        "    ack_timeout: 5\n"
        "    destinations: {out: {type: file, directory: out}}\n")
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    env.update(EHRGATE_ENGINE_POLL_MS="50", EHRGATE_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ehrgate", "serve", "--port", "0", "--config", str(config),
                                 "--data-dir", str(tmp / "data")], stdout=subprocess.PIPE, stderr=err, env=env,
                                cwd=tmp)
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            m = re.search(r"MLLP channel 'fuzz' listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port is not None, log.read_text()[-2000:]
        yield port, proc, log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.settimeout(20)
    return sock


def read_frames(sock: socket.socket, count: int | None = None) -> tuple[list[bytes], bool]:
    """Frames until ``count`` of them, or until the peer closes: (frames, closed)."""
    decoder = MLLPDecoder()
    frames: list[bytes] = []
    while count is None or len(frames) < count:
        data = sock.recv(65536)
        if not data:
            return frames, True
        frames += [e.payload for e in decoder.feed(data) if isinstance(e, Frame)]
    return frames, False


def bystander_roundtrip(sock: socket.socket, n: int) -> None:
    sock.sendall(frame(hl7(f"BY{n}-{time.monotonic_ns()}")))
    [ack], _ = read_frames(sock, 1)
    assert parse(ack).get("MSA-1") == "AA"


# -- the streams ---------------------------------------------------------------------------------

def enhanced(raw: bytes, accept: str, application: str) -> bytes:
    head, rest = raw.split(b"\r", 1)
    fields = head.split(b"|") + [b""] * 8
    fields[14], fields[15] = accept.encode(), application.encode()
    return b"|".join(fields[:18]).rstrip(b"|") + b"\r" + rest


@st.composite
def good(draw: st.DrawFn) -> bytes:
    raw = hl7(draw(st.text("ABC123-", min_size=1, max_size=8)), name=draw(st.sampled_from(["Doe^Jo", "Müller^Jürgen"])))
    if draw(st.booleans()):
        modes = st.sampled_from(["", "AL", "NE", "ER", "SU"])
        raw = enhanced(raw, draw(modes), draw(modes))
    return raw


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(good()))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(max_size=6))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


PAYLOADS = st.one_of(good(), mutated(), st.binary(max_size=200),
                     st.just(b"MSH|^~\\&|BIG|" + b"x" * (MAX_BYTES + 100)),
                     st.builds(lambda b: b"MSH" + b, st.binary(max_size=60)))
PIECES = st.one_of(
    PAYLOADS.map(lambda p: VT + p + FS + b"\r"),   # a frame (its payload may hold VT/FS itself)
    PAYLOADS.map(lambda p: VT + p + FS),           # FS without CR
    st.sampled_from([b"\r\n", b"\n", b" "]),       # whitespace between frames (skipped)
    PAYLOADS.map(lambda p: VT + p[: len(p) // 2]),  # a frame cut short by the next start block
)
VT, FS = b"\x0b", b"\x1c"


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """(chunks to send, garbage to send last or b'')."""
    data = b"".join(draw(st.lists(PIECES, min_size=1, max_size=6)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    garbage = draw(st.one_of(st.just(b""), st.text("xyz!?0123 ", min_size=1, max_size=20).map(
        lambda t: b"NOT-MLLP " + t.encode())))
    return [c for c in chunks if c], garbage


def replies_for(payload: bytes) -> tuple[int, int]:
    """(fewest, most) frames the engine sends for one frame's payload."""
    if payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:3] != b"MSH":
        return 1, 1
    info = describe(payload)
    if info.message is None or acknowledgment_mode(info.message) is AckMode.ORIGINAL:
        return 1, 1
    return 0, 2


def expected(chunks: list[bytes], garbage: bytes) -> tuple[int, int, bool]:
    """(fewest, most) reply frames, and whether the server closes because of garbage."""
    decoder = MLLPDecoder(MAX_BYTES)
    low = high = 0
    events = [e for c in chunks for e in decoder.feed(c)]
    closes = False
    if garbage:
        events += decoder.feed(garbage)
    for event in events:
        if isinstance(event, Garbage):
            closes = True
            break
        if isinstance(event, Oversize):
            low, high = low + 1, high + 1
        elif isinstance(event, Frame):
            a, b = replies_for(event.payload)
            low, high = low + a, high + b
    return low, high, closes


def test_fuzzed_streams_never_break_the_engine(tmp_path: Path) -> None:
    with engine_process(tmp_path) as (port, proc, log):
        bystander = connect(port)
        bystander_roundtrip(bystander, 0)
        rounds = [0]

        @settings(max_examples=int(os.environ.get("EHRGATE_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(streams())
        def one_stream(stream: tuple[list[bytes], bytes]) -> None:
            chunks, garbage = stream
            low, high, closes = expected(chunks, garbage)
            sock = connect(port)
            try:
                try:
                    for chunk in chunks:
                        sock.sendall(chunk)
                    if garbage:
                        sock.sendall(garbage)
                    sock.shutdown(socket.SHUT_WR)
                except OSError:  # the server closed first: only after bytes outside any frame
                    assert closes, "the server closed the connection without bytes outside a frame"
                try:
                    frames, closed = read_frames(sock)
                except ConnectionResetError:  # closed with our bytes unread (after garbage): no FIN
                    assert closes, "connection reset without bytes outside a frame"
                    frames, closed = [], True
            finally:
                sock.close()
            assert closed
            if closes:
                assert len(frames) <= high
            else:
                assert low <= len(frames) <= high, (low, len(frames), high)
            for payload in frames:
                ack = parse(payload)
                assert ack.message_type == "ACK" and ack.get("MSA-1") in ("AA", "AE", "AR", "CA", "CE", "CR")
            rounds[0] += 1
            bystander_roundtrip(bystander, rounds[0])
            assert proc.poll() is None, "the server died"

        one_stream()
        bystander_roundtrip(bystander, -1)
        bystander.close()
        with connect(port) as fresh:  # still accepting
            bystander_roundtrip(fresh, -2)
        assert proc.poll() is None
    problems = [line for line in log.read_text(errors="replace").splitlines()
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]
    assert not problems, problems[:5]

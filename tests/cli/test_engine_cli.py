"""``ehrgate hl7 | channel | messages``: every command, against the same database the server uses,
with the server running (a real process) or not."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ehrgate.cli import cli
from ehrgate.hl7 import Peer, accept_ack, parse, start_mllp_server

ADT = (b"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401120000||ADT^A01^ADT_A01|CLI1|P|2.5.1\r"
       b"PID|1||MRN-501^^^FAC^MR||Quill^Ada||19800101|F\r")
ORU = (b"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401120000||ORU^R01|CLI2|P|2.5.1\r"
       b"PID|1||MRN-502^^^FAC^MR||Okafor^Chidi\rOBR|1||A1|GLU\rOBX|1|NM|GLU||5.1\r")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    (tmp_path / "two.hl7").write_bytes(ADT + b"\r\n" + ORU)
    (tmp_path / "bad.hl7").write_bytes(b"MSH|^~\\&|A\rnot a segment\r")
    return tmp_path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "ehrgate.yaml"
    cfg.write_text(
        "channels:\n"
        "  adt-in:\n"
        "    source: {type: mllp, port: 0}\n"
        "    filter: [{step: match, path: MSH-9, in: [ADT^A01]}]\n"
        "    transform: [{step: set_field, path: MSH-5, value: REVIEWED}]\n"
        "    destinations:\n"
        "      out: {type: file, directory: out}\n")
    return cfg


def test_hl7_show_prints_a_tree(samples: Path) -> None:
    code, out, _ = invoke("hl7", "show", str(samples / "two.hl7"))
    assert code == 0
    assert "== " in out and "message 2" in out
    assert "PID-5 Patient Name: Quill^Ada" in out and "OBX-5" in out
    code, out, _ = invoke("hl7", "show", str(samples / "bad.hl7"))
    assert code == 1 and "cannot be parsed: Segment 2 starts 'not a segmen'" in out


def mllp_listener(reply: Callable[[bytes], bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """Our MLLP listener in a thread answering ``reply(message)``; yields (port, messages received)."""
    got: list[bytes] = []
    ready = threading.Event()
    box: dict[str, object] = {}

    async def handler(raw: bytes, peer: Peer) -> bytes:
        got.append(raw)
        return reply(raw)

    async def serve() -> None:
        server = await start_mllp_server(handler, "127.0.0.1", 0)
        box["port"], box["loop"], box["stop"] = server.port, asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await box["stop"].wait()  # type: ignore[attr-defined]
        server.close()
        await server.wait_closed()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield int(box["port"]), got  # type: ignore[call-overload]
    box["loop"].call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
    thread.join(10)


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[bytes]]]:
    """AA for ADT, AE for anything else."""
    def reply(raw: bytes) -> bytes:
        msg = parse(raw)
        ack = accept_ack(msg, "accept" if msg.message_type == "ADT" else "error", control_id="X", timestamp="20240401")
        assert ack is not None
        return ack.to_bytes()

    yield from mllp_listener(reply)


def test_hl7_send_prints_ack_codes(samples: Path, receiver: tuple[int, list[bytes]]) -> None:
    port, got = receiver
    code, out, _ = invoke("hl7", "send", str(samples / "two.hl7"), "--to", f"127.0.0.1:{port}", "-v")
    assert code == 1  # the ORU got AE
    assert f"{samples / 'two.hl7'}#1 AA" in out and f"{samples / 'two.hl7'}#2 AE" in out
    # each line names the control ID the ACK answers (what `messages search --control-id` finds)
    assert f"{samples / 'two.hl7'}#1 AA (control ID CLI1)" in out and "(control ID CLI2)" in out
    assert out.strip().endswith(f"2 message(s) sent to 127.0.0.1:{port}, ACK codes: AA 1, AE 1")
    assert len(got) == 2
    code, _, err = invoke("hl7", "send", str(samples / "two.hl7"), "--to", "127.0.0.1:1")
    assert code == 2 and "Cannot connect to 127.0.0.1:1" in err
    code, _, err = invoke("hl7", "send", str(samples / "two.hl7"), "--to", "nowhere")
    assert code == 2 and "is not host:port" in err


def test_channel_test_prints_every_stage(samples: Path, config: Path) -> None:
    code, out, _ = invoke("channel", "test", "adt-in", str(samples / "two.hl7"), "--config", str(config))
    assert code == 0
    assert "message 1: QUEUED" in out and "-- transform 1 (set_field)" in out and "|REVIEWED|" in out
    assert "message 2: FILTERED - Filtered out by filter 1 (match)" in out
    code, _, err = invoke("channel", "test", "nope", str(samples / "two.hl7"), "--config", str(config))
    assert code == 2 and "Channel 'nope' is not declared" in err


LATIN1 = ("MSH|^~\\&|LAB|FAC|EHR|HUB|20240401120000||ADT^A01^ADT_A01|CLI3|P|2.5.1|||||DEU|8859/1\r"
          "PID|1||MRN-503^^^FAC^MR||Müller^Jürgen||19800101|M\r").encode("latin-1")
UTF8 = ("MSH|^~\\&|LAB|FAC|EHR|HUB|20240401120000||ADT^A01^ADT_A01|CLI4|P|2.5.1|||||DEU|UNICODE UTF-8\r"
        "PID|1||MRN-504^^^FAC^MR||Müller^Zoë||19800101|F\r").encode()


def test_channel_test_runs_the_files_bytes_and_prints_them_in_their_charset(tmp_path: Path, config: Path) -> None:
    """A Latin-1 message (MSH-18 8859/1) went through the channel re-encoded as UTF-8, so every stage
    read 'MÃ¼ller'; the pipeline now gets each message's bytes as the directory source reads them."""
    from ehrgate.cli.hl7 import _read_bytes

    (tmp_path / "latin1.hl7").write_bytes(LATIN1)
    (tmp_path / "both.hl7").write_bytes(UTF8 + b"\r\n" + UTF8.replace(b"CLI4", b"CLI5"))
    assert _read_bytes((str(tmp_path / "latin1.hl7"),)) == [(str(tmp_path / "latin1.hl7"), 1, LATIN1)]
    code, out, _ = invoke("channel", "test", "adt-in", str(tmp_path / "latin1.hl7"), str(tmp_path / "both.hl7"),
                          "--config", str(config))
    assert code == 0, out
    pids = [line for line in out.splitlines() if line.startswith("PID|")]
    # received, filter 1, transform 1 and output 1 of each of the three messages
    assert pids == ["PID|1||MRN-503^^^FAC^MR||Müller^Jürgen||19800101|M"] * 4 \
        + ["PID|1||MRN-504^^^FAC^MR||Müller^Zoë||19800101|F"] * 8, out
    assert "-- output 1 → out" in out and "|REVIEWED|" in out


def _db(tmp_path: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data")]


def _store_messages(tmp_path: Path) -> None:
    from ehrgate.app import open_store
    from ehrgate.engine import open_messages
    from ehrgate.engine.info import describe
    from ehrgate.engine.store import Incoming
    from ehrgate.settings import load_settings

    store = open_store(load_settings(None, overrides={"data_dir": str(tmp_path / "data")}, environ={}))
    ms = open_messages(store)
    for raw in (ADT, ORU):
        info = describe(raw)
        ms.receive([Incoming("adt-in", raw, "test", info.msg_type, info.control_id, info.sender, info.patient_ids)])
    with ms.write() as conn:
        conn.execute(sa.text("UPDATE eng_message SET status = 'ERROR', error = 'down' WHERE control_id = 'CLI2'"))
        conn.execute(sa.text("DELETE FROM eng_queue"))
    ms.close()
    store.engine.dispose()


def test_messages_commands_without_a_server(tmp_path: Path) -> None:
    _store_messages(tmp_path)
    code, out, _ = invoke("messages", "search", *_db(tmp_path), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["control_id"] for r in rows] == ["CLI2", "CLI1"]
    assert {"id", "channel", "control_id", "type", "status", "received_at"} <= set(rows[0])
    code, out, _ = invoke("messages", "search", *_db(tmp_path), "--status", "ERROR", "--channel", "adt-in",
                          "--since", "1h", "--json")
    assert [json.loads(x)["control_id"] for x in out.splitlines()] == ["CLI2"]
    code, out, _ = invoke("messages", "search", *_db(tmp_path), "--text", "okafor", "--json")
    assert [json.loads(x)["control_id"] for x in out.splitlines()] == ["CLI2"]
    code, out, err = invoke("messages", "search", *_db(tmp_path), "--control-id", "CLI1")
    assert "CLI1" in out and "CLI2" not in out
    # the columns are named and the next step said, on stderr: stdout stays one message per line
    assert out.count("\n") == 1 and "RECEIVED (UTC)" not in out
    assert err.splitlines()[0].split() == ["ID", "RECEIVED", "(UTC)", "CHANNEL", "STATUS", "TYPE", "CONTROL", "ID",
                                           "(MSH-10)"]
    assert "1 message(s); `ehrgate messages show ID` shows every stage" in err
    code, _, err = invoke("messages", "search", *_db(tmp_path), "--since", "last tuesday")
    assert code == 2 and "Expected a duration back from now" in err
    first = rows[1]["id"]
    code, out, _ = invoke("messages", "show", str(first), *_db(tmp_path))
    assert code == 0 and "control id CLI1" in out and "PID|1||MRN-501" in out
    code, out, _ = invoke("messages", "show", str(first), *_db(tmp_path), "--json")
    shown = json.loads(out)  # the same names and time format as `search --json`
    assert code == 0 and {k: shown[k] for k in rows[1]} == rows[1]
    assert "msg_type" not in shown and shown["raw"].startswith("MSH|") and "PID|1||MRN-501" in shown["raw"]
    assert shown["updated_at"].endswith("+00:00") and shown["received_at"] == rows[1]["received_at"]
    code, _, err = invoke("messages", "show", "999", *_db(tmp_path))
    assert code == 2 and "Message 999 is not in the store" in err
    code, out, err = invoke("messages", "reprocess", *_db(tmp_path), "--status", "ERROR", "--channel", "adt-in")
    assert code == 0 and "1 message(s) queued" in out
    code, out, err = invoke("messages", "reprocess", str(first), *_db(tmp_path))
    assert code == 1 and "still being processed" in err  # CLI1 is RECEIVED, not finished
    code, out, _ = invoke("messages", "prune", *_db(tmp_path), "--older-than", "1d")
    assert code == 0 and "Pruned 0 message(s)" in out
    code, _, err = invoke("messages", "prune", *_db(tmp_path), "--older-than", "soon")
    assert code == 2 and "Duration 'soon' is not valid" in err


def test_messages_show_tells_the_runs_of_a_reprocessed_message_apart(tmp_path: Path) -> None:
    """After a reprocess attempt numbers restart: each run is headed by when (and by whom) it began,
    so "SENT after 1 attempt(s)" is not followed by two bare "attempt 1" lines."""
    from ehrgate.app import open_store
    from ehrgate.engine import SearchQuery, open_messages
    from ehrgate.settings import load_settings
    from tests.engine.helpers import two_runs

    _store_messages(tmp_path)
    store = open_store(load_settings(None, overrides={"data_dir": str(tmp_path / "data")}, environ={}))
    ms = open_messages(store)
    [mid] = [r["id"] for r in ms.search(SearchQuery(control_id="CLI2"))]
    two_runs(ms, mid, by="olga")
    ms.close()
    store.engine.dispose()
    code, out, _ = invoke("messages", "show", str(mid), *_db(tmp_path))
    lines = [x for x in out.splitlines() if x.startswith(("-- destination", "-- run", "   attempt"))]
    assert code == 0 and [re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", "T", x) for x in lines] == [
        "-- destination peer: SENT after 1 attempt(s) in run 2",
        "-- run 1: received T, 1 attempt(s)",
        "   attempt 1 to peer at T: ERROR (3 ms) refused",
        "-- run 2: reprocessed T by olga, 1 attempt(s)",
        "   attempt 1 to peer at T: SENT (3 ms)"]
    shown = json.loads(invoke("messages", "show", str(mid), *_db(tmp_path), "--json")[1])
    assert [(r["run"], r["by"]) for r in shown["runs"]] == [(1, None), (2, "olga")]
    assert [(a["run"], a["number"]) for a in shown["attempts"]] == [(1, 1), (2, 1)]
    assert shown["runs"][1]["at"].endswith("+00:00")


def test_channel_control_and_stats_without_a_server(tmp_path: Path, config: Path) -> None:
    _store_messages(tmp_path)
    args = [*_db(tmp_path), "--config", str(config)]
    code, out, _ = invoke("channel", "pause", "adt-in", *args)
    assert code == 0 and "Channel 'adt-in' deployed, paused" in out
    code, out, _ = invoke("channel", "list", *args, "--json")
    assert json.loads(out.splitlines()[0]) == {"name": "adt-in", "declared": True, "builtin": False, "deployed": True,
                                               "paused": True, "source": "mllp", "port": 0, "destinations": ["out"]}
    assert invoke("channel", "resume", "adt-in", *args)[0] == 0
    assert invoke("channel", "undeploy", "adt-in", *args)[0] == 0
    code, out, _ = invoke("channel", "deploy", "adt-in", *args)
    assert code == 0 and "generation 1" in out  # pause, resume and undeploy kept generation 0
    code, out, _ = invoke("channel", "stats", "adt-in", *args, "--json")
    data = json.loads(out)["adt-in"]
    assert data["messages"] == {"ERROR": 1, "RECEIVED": 1}
    code, out, _ = invoke("channel", "stats", *args)
    assert "adt-in (since 24h):" in out
    code, _, err = invoke("channel", "pause", "ghost", *args)
    assert code == 2 and "Channel 'ghost' is not declared" in err


def _start(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen[str], str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    proc = subprocess.Popen([sys.executable, "-m", "ehrgate", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    lines, mllp = [], 0
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"MLLP channel '[^']+' listening on [\d.]+:(\d+)", line)
        if m:
            mllp = int(m.group(1))
        m = re.search(r"ready: FHIR base (\S+)", line)
        if m:
            return proc, m.group(1).removesuffix("/fhir"), mllp
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


@pytest.mark.slow
def test_serve_with_mllp_port_stores_and_the_cli_finds_it(samples: Path, tmp_path: Path, config: Path) -> None:
    proc, base, port = _start(["serve", "--port", "0", "--mllp-port", "0", *_db(tmp_path)], tmp_path)
    try:
        assert port
        code, out, _ = invoke("hl7", "send", str(samples / "two.hl7"), "--to", f"127.0.0.1:{port}")
        assert code == 0 and out.strip().endswith("AA 2")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, out, _ = invoke("messages", "search", *_db(tmp_path), "--channel", "mllp-in", "--json")
            rows = [json.loads(x) for x in out.splitlines()]
            if len(rows) == 2 and all(r["status"] in ("SENT", "ERROR") for r in rows):
                break
            time.sleep(0.2)
        assert sorted(r["control_id"] for r in rows) == ["CLI1", "CLI2"]
        assert all(r["status"] == "SENT" for r in rows), rows
        # the channel is controlled through the database while the server runs
        import urllib.request

        assert invoke("channel", "pause", "mllp-in", *_db(tmp_path))[0] == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/admin/channels", timeout=10) as resp:
                channels = json.load(resp)["channels"]
            if channels[0]["paused"]:
                break
            time.sleep(0.2)
        assert channels[0]["name"] == "mllp-in" and channels[0]["paused"], channels
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            assert 'ehrgate_messages_received_total{channel="mllp-in"} 2.0' in resp.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_bad_channel_declaration_stops_serve_with_the_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("channels:\n  adt-in:\n    source: {type: mllp, port: 0}\n    ack: sometimes\n"
                   "    destinations: {store: {type: fhir_store}}\n")
    out = subprocess.run([sys.executable, "-m", "ehrgate", "serve", "--port", "0", "--config", str(cfg), *_db(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "ack has value 'sometimes'. Expected on_receive or on_processed" in out.stderr
    assert "Traceback" not in out.stderr


def test_hl7_send_names_the_tls_file_it_cannot_read(tmp_path: Path) -> None:
    msg = tmp_path / "m.hl7"
    msg.write_bytes(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5.1\r")
    code, _, err = invoke("hl7", "send", str(msg), "--to", "127.0.0.1:9", "--tls", "--ca", str(tmp_path / "missing-ca.pem"))
    assert code == 2
    assert f"--ca {tmp_path / 'missing-ca.pem'}" in err and "No such file" in err
    assert "Traceback" not in err


def test_invalid_channels_name_the_config_file_they_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "lab-feeds.yaml"
    cfg.write_text("channels:\n  lab:\n    source: {type: mllp, port: 0}\n    destinations: {x: {type: nosuch}}\n")
    code, _, err = invoke("channel", "list", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert code == 2 and f"The channels of {cfg} are not valid" in err and "nosuch" in err


def test_reading_commands_do_not_create_a_database(tmp_path: Path) -> None:
    """A mistyped --data-dir looked like an empty system (and left a new database behind)."""
    empty = tmp_path / "typo"
    for args in (["apps", "list"], ["messages", "search"], ["channel", "stats"]):
        code, _, err = invoke(*args, "--data-dir", str(empty))
        assert code == 2 and f"No database at {empty / 'ehrgate.sqlite3'}" in err, (args, err)
    assert not (empty / "ehrgate.sqlite3").exists()
    # registering an app before the first start still makes the database
    code, _, _ = invoke("apps", "add", "--client-id", "early", "--name", "Early", "--type", "public",
                        "--redirect-uri", "http://127.0.0.1:9/cb", "--data-dir", str(empty))
    assert code == 0 and (empty / "ehrgate.sqlite3").exists()


def test_users_list_says_when_there_are_none_and_speaks_json(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "d")]
    assert invoke("apps", "add", "--client-id", "a1", "--name", "A", "--type", "public",
                  "--redirect-uri", "http://127.0.0.1:9/cb", *data)[0] == 0  # makes the database
    code, out, _ = invoke("users", "list", *data)
    assert code == 0 and "No users" in out
    added = CliRunner().invoke(cli, ["users", "add", "--username", "nurse", "--role", "clinician", "--password", "-",
                                     *data], input="a-long-enough-password\n")
    assert added.exit_code == 0, added.output
    code, out, _ = invoke("users", "list", "--json", *data)
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [
        {"username": "nurse", "role": "clinician", "fhir_user": "", "display_name": ""}]


def test_show_json_names_and_times_of_nested_records() -> None:
    from ehrgate.cli.messages import _json_record

    record = {"id": 7, "msg_type": "ADT^A01", "received_at": 1_733_555_103_120, "raw": b"MSH|x",
              "deliveries": [{"destination": "out", "updated_at": 1_733_555_103_120, "response": memoryview(b"ok")}],
              "attempts": [{"number": 1, "at": 1_733_555_103_120, "error": None}],
              "queued": [{"step": "", "next_at": 1_733_555_103_120}], "children": [8, 9], "patient_ids": ["M1"]}
    when = "2024-12-07T07:05:03.120+00:00"
    assert _json_record(record) == {
        "id": 7, "type": "ADT^A01", "received_at": when, "raw": "MSH|x",
        "deliveries": [{"destination": "out", "updated_at": when, "response": "ok"}],
        "attempts": [{"number": 1, "at": when, "error": None}],
        "queued": [{"step": "", "next_at": when}], "children": [8, 9], "patient_ids": ["M1"]}


def test_channel_list_and_test_know_the_built_in_demo_channel(tmp_path: Path, samples: Path, config: Path) -> None:
    """On the demo's database `channel list` printed nothing at all (exit 0), though the demo runs
    mllp-in, and `channel test mllp-in FILE` said it was not declared."""
    _store_messages(tmp_path)
    code, out, err = invoke("channel", "list", *_db(tmp_path))
    assert code == 0 and out.startswith("mllp-in ") and "mllp port 2575 → fhir-store" in out and "built in" in out
    assert "no config file declares channels" in err
    code, out, _ = invoke("channel", "list", *_db(tmp_path), "--json")
    assert json.loads(out) == {"name": "mllp-in", "declared": False, "builtin": True, "deployed": True,
                               "paused": False, "source": "mllp", "port": 2575, "destinations": ["fhir-store"]}
    code, out, err = invoke("channel", "list", *_db(tmp_path), "--config", str(config))
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["adt-in", "mllp-in"] and not err
    code, out, _ = invoke("channel", "test", "mllp-in", str(samples / "two.hl7"), *_db(tmp_path))
    assert code == 0, out
    assert "-- transform 1 (hl7_to_fhir)" in out and "FHIR bundle" in out and '"resourceType":"Patient"' in out.replace(" ", "")
    code, _, err = invoke("channel", "test", "nope", str(samples / "two.hl7"), *_db(tmp_path))
    assert code == 2 and "channels: none; pass --config ehrgate.yaml; built in: mllp-in" in err

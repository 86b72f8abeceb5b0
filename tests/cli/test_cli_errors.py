"""CLI input errors are one sentence and exit 2, never a traceback; flags are not silently ignored
or clamped (token, bulk export, hl7 send|show|convert, keys, messages)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ehrgate.cli import cli

from .test_engine_cli import ADT, ORU, _db, _store_messages, mllp_listener

SAMPLES = Path(__file__).resolve().parents[1] / "convert" / "samples"


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output and not isinstance(result.exception, (ValueError, OSError, KeyError)), \
        result.output
    return result


@pytest.fixture
def hl7_file(tmp_path: Path) -> Path:
    path = tmp_path / "one.hl7"
    path.write_bytes(ADT)
    return path


def _private_ec_jwk(tmp_path: Path) -> Path:
    from joserfc.jwk import ECKey

    path = tmp_path / "good.json"
    path.write_text(json.dumps(ECKey.generate_key("P-256", auto_kid=True).as_dict(private=True)))
    return path


# -- 1. URLs that are not http(s) --------------------------------------------------------------


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.org/fhir", "http://", "http://127.0.0.1:99999/fhir"])
def test_token_refuses_a_base_that_is_not_http(tmp_path: Path, url: str) -> None:
    result = run("token", "--key", str(_private_ec_jwk(tmp_path)), "--fhir-base", url)
    assert result.exit_code == 2
    assert f"--fhir-base {url!r} is not a valid http(s) URL" in result.output


def test_token_and_bulk_export_take_the_base_under_either_name(tmp_path: Path) -> None:
    # the same URL check runs whichever spelling is used: the option reached the command
    result = run("token", "--key", str(_private_ec_jwk(tmp_path)), "--base", "notaurl")
    assert result.exit_code == 2 and "'notaurl' is not a valid http(s) URL" in result.output
    result = run("bulk", "export", "--fhir-base", "notaurl", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "'notaurl' is not a valid http(s) URL" in result.output


def test_bulk_export_refuses_a_base_that_is_not_http(tmp_path: Path) -> None:
    result = run("bulk", "export", "--base", "notaurl", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--base 'notaurl' is not a valid http(s) URL" in result.output
    result = run("bulk", "export", "--base", "http://127.0.0.1:9/fhir", "--token-url", "token",
                 "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--token-url 'token' is not a valid http(s) URL" in result.output
    assert not (tmp_path / "out").exists()


# -- 2. bulk export --key with a malformed or unsupported JWK ----------------------------------


@pytest.mark.parametrize("jwk", [
    {"kty": "EC"},
    {"kty": "EC", "crv": "P-256", "d": "AAAA"},
    {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
     "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"},
])
def test_bulk_export_refuses_a_malformed_jwk(tmp_path: Path, jwk: dict[str, str]) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps(jwk))
    result = run("bulk", "export", "--base", "http://127.0.0.1:9/fhir", "--client-id", "etl", "--key", str(key),
                 "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert f"--key {key}:" in result.output
    assert "private EC or RSA JWK" in result.output or "JWK cannot be used" in result.output


# -- 3, 5, 6, 8. hl7 send: --to, TLS flags, connection errors, --timeout -----------------------


@pytest.mark.parametrize("to", ["127.0.0.1:99999", "127.0.0.1:0"])
def test_hl7_send_refuses_a_port_out_of_range(hl7_file: Path, to: str) -> None:
    result = run("hl7", "send", str(hl7_file), "--to", to)
    assert result.exit_code == 2 and "is out of range. Expected a port from 1 to 65535" in result.output


def test_hl7_send_refuses_key_without_cert(hl7_file: Path, tmp_path: Path) -> None:
    result = run("hl7", "send", str(hl7_file), "--to", "127.0.0.1:2575", "--key", str(tmp_path / "k.pem"))
    assert result.exit_code == 2 and "needs --cert" in result.output


@pytest.fixture
def plain_listener() -> Iterator[tuple[int, list[bytes]]]:
    """An MLLP listener without TLS, answering AA."""
    yield from mllp_listener(lambda raw: b"MSH|^~\\&|EHR|HUB|LAB|FAC|20240401120000||ACK|A1|P|2.5.1\rMSA|AA|CLI1\r")


@pytest.mark.parametrize("flags", [["--tls"], ["--insecure"]])
def test_hl7_send_tls_to_a_plain_listener_says_so(hl7_file: Path, plain_listener: tuple[int, list[bytes]],
                                                  flags: list[str]) -> None:
    """--insecure alone used to send in plain text (and be ACKed); the reset of a TLS hello by a plain
    listener used to read 'Cannot connect to ...: .'."""
    port, got = plain_listener
    result = run("hl7", "send", str(hl7_file), "--to", f"127.0.0.1:{port}", "--timeout", "5", *flags)
    assert result.exit_code == 2, result.output
    assert f"Cannot connect to 127.0.0.1:{port}: " in result.output
    assert "is the listener using TLS?" in result.output and ": ." not in result.output
    assert got == []  # nothing went out in plain text


def test_hl7_send_without_tls_still_works(hl7_file: Path, plain_listener: tuple[int, list[bytes]]) -> None:
    port, got = plain_listener
    result = run("hl7", "send", str(hl7_file), "--to", f"127.0.0.1:{port}")
    assert result.exit_code == 0 and result.stdout.strip().endswith("AA 1") and len(got) == 1


@pytest.mark.parametrize("value", ["0", "-1"])
def test_hl7_send_refuses_a_timeout_not_above_zero(hl7_file: Path, value: str) -> None:
    result = run("hl7", "send", str(hl7_file), "--to", "127.0.0.1:2575", "--timeout", value)
    assert result.exit_code == 2 and "Invalid value for '--timeout'" in result.output


@pytest.mark.parametrize(("option", "value"), [("--parallel", "0"), ("--parallel", "-3"), ("--max-wait", "0")])
def test_bulk_export_refuses_counts_below_one(tmp_path: Path, option: str, value: str) -> None:
    result = run("bulk", "export", "--base", "http://127.0.0.1:9/fhir", "--out", str(tmp_path / "o"), option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


# -- 4. keys list|rotate -----------------------------------------------------------------------


def test_keys_commands_name_a_missing_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "file-not-dir"
    missing.write_text("")
    for command in ("list", "rotate"):
        result = run("keys", command, "--data-dir", str(missing / "data"))
        assert result.exit_code == 2, result.output
        assert str(missing / "data") in result.output


def test_keys_list_makes_no_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = run("keys", "list", "--data-dir", str(data))
    assert result.exit_code == 0
    assert f"No signing keys in {data / 'keys'} yet" in result.stderr and "ehrgate keys rotate" in result.stderr
    assert not list(data.rglob("*.json"))
    made = run("keys", "rotate", "--data-dir", str(data))
    assert made.exit_code == 0 and made.output.count("is active") == 2
    listed = run("keys", "list", "--data-dir", str(data))
    assert listed.exit_code == 0 and listed.stdout.count("active") == 2 and "retired" not in listed.stdout


# -- 7, 12. messages search|reprocess ----------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "10001"])
def test_messages_limit_is_refused_not_clamped(tmp_path: Path, value: str) -> None:
    _store_messages(tmp_path)
    result = run("messages", "search", *_db(tmp_path), "--limit", value)
    assert result.exit_code == 2 and "Invalid value for '--limit'" in result.output
    result = run("messages", "reprocess", *_db(tmp_path), "--status", "ERROR", "--limit", value)
    assert result.exit_code == 2 and "Invalid value for '--limit'" in result.output
    assert "queued" not in result.output


def test_messages_reprocess_of_an_unknown_id_is_a_usage_error(tmp_path: Path) -> None:
    _store_messages(tmp_path)
    result = run("messages", "reprocess", "999", *_db(tmp_path))
    assert result.exit_code == 2 and "Message 999 is not in the store" in result.output
    error_id = json.loads(run("messages", "search", *_db(tmp_path), "--status", "ERROR", "--json").stdout)["id"]
    result = run("messages", "reprocess", str(error_id), "999", *_db(tmp_path))
    assert result.exit_code == 2 and "nothing was queued" in result.output
    assert json.loads(run("messages", "search", *_db(tmp_path), "--status", "ERROR", "--json").stdout)["id"] == error_id


def test_messages_reprocess_refuses_filters_with_ids(tmp_path: Path) -> None:
    _store_messages(tmp_path)
    result = run("messages", "reprocess", "2", "--channel", "nope", "--since", "1s", *_db(tmp_path))
    assert result.exit_code == 2 and "--channel and --since without --status cannot narrow message ids" in result.output


# -- 9, 10, 11. hl7 convert and show -----------------------------------------------------------


def test_convert_prints_ndjson_for_several_messages(tmp_path: Path) -> None:
    result = run("hl7", "convert", str(SAMPLES / "adt_a04.hl7"), str(SAMPLES / "siu_s12.hl7"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(line)["type"] == "transaction" for line in lines)
    single = run("hl7", "convert", str(SAMPLES / "adt_a04.hl7"))
    assert single.stdout.startswith("{\n") and json.loads(single.stdout)["type"] == "transaction"
    assert "NDJSON" in run("hl7", "convert", "--help").output


def test_convert_refuses_two_messages_for_one_out_file(tmp_path: Path) -> None:
    for folder, sample in (("d1", "adt_a04.hl7"), ("d2", "siu_s12.hl7")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.hl7").write_bytes((SAMPLES / sample).read_bytes())
    out = tmp_path / "out"
    result = run("hl7", "convert", str(tmp_path / "d1" / "x.hl7"), str(tmp_path / "d2" / "x.hl7"), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"would both be written to {out / 'x.json'}" in result.output
    assert not out.exists()
    two = tmp_path / "two.hl7"  # its second message is two-2.json, as is the first of two-2.hl7
    two.write_bytes(ADT + ORU)
    (tmp_path / "two-2.hl7").write_bytes(ADT)
    result = run("hl7", "convert", str(two), str(tmp_path / "two-2.hl7"), "--out", str(out))
    assert result.exit_code == 2 and "two-2.json" in result.output and not out.exists()


@pytest.mark.parametrize("offset", ["+99:00", "-15:00", "+05:60", "+14:30"])
def test_convert_refuses_an_offset_out_of_range(offset: str) -> None:
    result = run("hl7", "convert", "--timezone", offset, str(SAMPLES / "adt_a04.hl7"))
    assert result.exit_code == 2 and f"Time zone offset {offset!r} is out of range" in result.output


@pytest.mark.parametrize("offset", ["+14:00", "-12:00", "+05:45", "+0530"])
def test_convert_takes_offsets_in_range(offset: str) -> None:
    assert run("hl7", "convert", "--timezone", offset, str(SAMPLES / "adt_a04.hl7")).exit_code == 0


def test_show_of_a_file_without_hl7_warns_once_and_fails(tmp_path: Path, hl7_file: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nSome text.\nMore text.\n- a list\n")
    result = run("hl7", "show", str(readme))
    assert result.exit_code == 1
    assert result.stderr.count("warning:") == 1 and "no HL7 message found" in result.stderr
    result = run("hl7", "show", str(readme), str(hl7_file))
    assert result.exit_code == 1 and "PID-5" in result.stdout
    prefixed = tmp_path / "prefixed.hl7"
    prefixed.write_bytes(b"junk one\njunk two\njunk three\n" + ADT)
    result = run("hl7", "show", str(prefixed))
    assert result.exit_code == 0 and result.stderr.count("warning:") == 1
    assert "Segment 1 ('junk one') comes before any MSH" in result.stderr and "2 more segment(s)" in result.stderr

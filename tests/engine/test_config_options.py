"""Options of built-in steps, sources and destinations: unknown keys, hl7_to_fhir option types and the
files a channel reads at start are refused at load, every problem listed with its channel and place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ehrgate.cli import cli
from ehrgate.engine import ChannelConfigError, MessageStore, Pipeline, load_channels
from ehrgate.engine.steps import STEPS

from .conftest import hl7, run
from .helpers import running

STORE = {"store": {"type": "fhir_store"}}


def channel(**spec: Any) -> dict[str, Any]:
    return {"source": {"type": "mllp", "port": 0}, "destinations": STORE, **spec}


def problems(spec: dict[str, Any], base: Path) -> str:
    with pytest.raises(ChannelConfigError) as info:
        load_channels({"channels": {"adt-in": spec}}, base)
    text = str(info.value)
    assert text.startswith("The channels of ehrgate.yaml are not valid:")
    return text


# -- unknown keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    (channel(transform=[{"step": "set_field", "path": "MSH-5", "valu": "HUB"}]),
     "Channel 'adt-in': transform[0]: option 'valu' is not known to the set_field step. Expected path or value."),
    (channel(transform=[{"step": "map_table", "path": "PV1-3.1", "table": {"3W": "W3"}, "on_mising": "error"}]),
     "Channel 'adt-in': transform[0]: option 'on_mising' is not known to the map_table step. Expected default, "
     "on_missing, path, table or to."),
    (channel(source={"type": "mllp", "port": 0, "tsl": {"ca": "a.pem"}}),
     "Channel 'adt-in': source: option 'tsl' is not known to the mllp source. Expected frame_timeout, host, "
     "idle_timeout, lone_fs_grace, max_connections, max_message_bytes, port or tls."),
    (channel(source={"type": "mllp", "port": 0, "frame_timeout": 0}),
     "Channel 'adt-in': source.frame_timeout has value 0. Expected a number of at least 1."),
    (channel(source={"type": "mllp", "port": 0, "lone_fs_grace": -1}),
     "Channel 'adt-in': source.lone_fs_grace has value -1. Expected a number of at least 0."),
    (channel(source={"type": "directory", "path": "in", "patern": "*.txt"}),
     "Channel 'adt-in': source: option 'patern' is not known to the directory source. Expected interval, min_age, "
     "path or pattern."),
    (channel(source={"type": "http", "port": 8080}),
     "Channel 'adt-in': source: option 'port' is not known to the http source. Expected max_message_bytes."),
    (channel(destinations={"lab": {"type": "mllp", "host": "127.0.0.1", "port": 2576, "tsl": {"ca": "a.pem"}}}),
     "Channel 'adt-in': destinations.lab: option 'tsl' is not known to the mllp destination. Expected host, port "
     "or tls."),
    (channel(destinations={"hook": {"type": "http", "url": "https://example.org/in", "header": {"X-A": "1"}}}),
     "Channel 'adt-in': destinations.hook: option 'header' is not known to the http destination. Expected body, "
     "content_type, headers, method, tls or url."),
    (channel(destinations={"ehr": {"type": "fhir_http", "url": "https://example.org/fhir", "tokn": "x"}}),
     "destinations.ehr: option 'tokn' is not known to the fhir_http destination."),
    (channel(destinations={"out": {"type": "file", "directory": "out", "contents": "bundle"}}),
     "destinations.out: option 'contents' is not known to the file destination. Expected content, directory or "
     "filename."),
    (channel(source={"type": "mllp", "port": 0, "tls": {"cert": "c.pem", "key": "k.pem", "client_auht": True}}),
     "source: option 'tls.client_auht' is not known to the mllp source. Expected ca, cert, client_auth or key."),
    (channel(source={"type": "mllp", "port": 0, "tls": {"cert": "c.pem", "key": "k.pem", "client_auth": True}}),
     "source.tls has 'client_auth: true' without 'ca'. Expected 'ca': the CA file that signed your senders' client "
     "certificates"),
    (channel(destinations={"lab": {"type": "mllp", "host": "h", "port": 1, "tls": {"verfy": False}}}),
     "destinations.lab: option 'tls.verfy' is not known to the mllp destination. Expected ca, cert, key or verify."),
    (channel(filter=[{"function": "tests.engine.channels.sample:only_adt", "negate": True}]),
     "filter[0]: option 'negate' is not known to the function step 'tests.engine.channels.sample:only_adt'. "
     "Expected no options."),
])
def test_unknown_keys_are_refused_with_the_keys_expected(tmp_path: Path, spec: dict[str, Any], expected: str) -> None:
    assert expected in problems(spec, tmp_path)


@pytest.mark.parametrize("name", ["set_field", "copy_field", "remove_field", "remove_segment", "map_table", "match",
                                  "route", "split", "hl7_to_fhir"])
def test_every_built_in_step_refuses_an_unknown_key(tmp_path: Path, name: str) -> None:
    assert name in STEPS
    text = problems(channel(transform=[{"step": name, "colour": "red"}]), tmp_path)
    assert f"transform[0]: option 'colour' is not known to the {name} step. Expected " in text


def test_the_documented_options_still_load(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("PEM")
    cfg = load_channels({"channels": {
        "a": {"source": {"type": "directory", "path": "in", "pattern": "*.hl7", "interval": 2},
              "filter": [{"step": "match", "path": "PID-3.1", "regex": "^P", "not": False}],
              "transform": [{"step": "copy_field", "from": "PID-3.1", "to": "PID-2"},
                            {"step": "map_table", "path": "PID-8", "to": "PID-8", "table": {"F": "W"}, "default": "U",
                             "on_missing": "keep"},
                            {"step": "route", "by": "MSH-4", "routes": {"FAC": ["out"]}, "default": "hook"},
                            {"step": "hl7_to_fhir", "timezone": "Europe/London", "patient_updates": ["ADT"]}],
              "destinations": {"out": {"type": "file", "directory": "out", "filename": "{control_id}.hl7",
                                       "content": "body"},
                               "hook": {"type": "http", "url": "https://example.org/{channel}", "method": "PUT",
                                        "headers": {"X-A": "1"}, "body": "{body}", "content_type": "text/plain",
                                        "tls": {"ca": "ca.pem", "verify": True}, "timeout": 5, "workers": 2},
                               "lab": {"type": "mllp", "host": "h", "port": 1, "tls": {"ca": "ca.pem"}}}},
        "b": {"source": {"type": "mllp", "host": "0.0.0.0", "port": 0, "idle_timeout": 60, "frame_timeout": 30, "lone_fs_grace": 0,
                         "max_connections": 5,
                         "max_message_bytes": 1024, "tls": {"cert": "ca.pem", "key": "ca.pem", "ca": "ca.pem",
                                                            "client_auth": True}},
              "destinations": {"ehr": {"type": "fhir_http", "url": "https://example.org/fhir", "tls": True}}},
    }}, tmp_path)
    assert sorted(cfg) == ["a", "b"]


# -- hl7_to_fhir option types --------------------------------------------------------------------


@pytest.mark.parametrize(("options", "expected"), [
    ({"patient_updates": "ADT"}, "option 'patient_updates' has value 'ADT'. Expected a list of message codes (MSH-9.1)"),
    ({"patient_updates": ["ADT^A08"]}, "option 'patient_updates' has value ['ADT^A08']. Expected a list of message "
                                       "codes"),
    ({"identifier_systems": "GHH"}, "option 'identifier_systems' has value 'GHH'. Expected a mapping of assigning "
                                    "authority"),
    ({"identifier_systems": {"GHH": 5}}, "option 'identifier_systems' maps 'GHH' to 5. Expected text to text"),
    ({"code_systems": ["LN"]}, "option 'code_systems' has value ['LN']. Expected a mapping of coding system name"),
    ({"timezone": 5}, "option 'timezone' has value 5. Expected an IANA time zone"),
])
def test_hl7_to_fhir_options_have_the_types_the_conversion_expects(tmp_path: Path, options: dict[str, Any],
                                                                   expected: str) -> None:
    text = problems(channel(transform=[{"step": "hl7_to_fhir", **options}]), tmp_path)
    assert f"Channel 'adt-in': transform[0]: step 'hl7_to_fhir' {expected}" in text


def test_hl7_to_fhir_options_of_the_right_types_are_used(tmp_path: Path) -> None:
    cfg = load_channels({"channels": {"adt-in": channel(transform=[{
        "step": "hl7_to_fhir", "identifier_systems": {"FAC": "urn:oid:1.2.3"}, "code_systems": {"LN": "http://loinc.org"},
        "patient_updates": ["ADT", "ORU"]}])}}, tmp_path)["adt-in"]
    result = Pipeline(cfg).run(hl7("OPT1"))
    assert result.status == "QUEUED", result.error
    bundle = json.loads(result.outputs[0].bundle or b"{}")
    patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["resource"]["identifier"][0]["system"] == "urn:oid:1.2.3"
    assert patient["request"]["method"] == "PUT"  # ADT updates the Patient


# -- files read at start --------------------------------------------------------------------------


def test_missing_tls_files_are_named_with_channel_option_and_path(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "server.key").write_text("PEM")
    text = problems({
        "source": {"type": "mllp", "port": 0, "tls": {"cert": "certs/server.pem", "key": "certs/server.key"}},
        "destinations": {"lab": {"type": "mllp", "host": "h", "port": 1, "tls": {"ca": "certs/lab-ca.pem"}},
                         "ehr": {"type": "fhir_http", "url": "https://example.org/fhir",
                                 "auth": {"client_id": "c", "key": "keys/engine.jwk.json", "scope": "system/*.cruds"}},
                         "api": {"type": "http", "url": "https://example.org/in", "tls": {"ca": "/nowhere/ca.pem"}}},
    }, tmp_path)
    assert (f"Channel 'adt-in': source.tls.cert has value 'certs/server.pem': {tmp_path / 'certs/server.pem'} cannot "
            "be read (No such file or directory). Expected a readable file") in text
    assert "source.tls.key" not in text  # it exists, relative to the config file's directory
    assert (f"Channel 'adt-in': destinations.lab.tls.ca has value 'certs/lab-ca.pem': {tmp_path / 'certs/lab-ca.pem'} "
            "cannot be read") in text
    assert (f"Channel 'adt-in': destinations.ehr.auth.key has value 'keys/engine.jwk.json': "
            f"{tmp_path / 'keys/engine.jwk.json'} cannot be read") in text
    assert "Channel 'adt-in': destinations.api.tls.ca has value '/nowhere/ca.pem': /nowhere/ca.pem cannot be read" in text


def test_channel_list_refuses_a_missing_tls_file(tmp_path: Path) -> None:
    config = tmp_path / "ehrgate.yaml"
    config.write_text("channels:\n"
                      "  secure:\n"
                      "    source: {type: mllp, port: 0, tls: {cert: certs/server.pem, key: certs/server.key}}\n"
                      "    destinations: {out: {type: file, directory: out}}\n")
    result = CliRunner().invoke(cli, ["channel", "list", "--config", str(config),
                                      "--database-url", f"sqlite:///{tmp_path / 'db.sqlite3'}"])
    assert result.exit_code != 0
    assert f"Channel 'secure': source.tls.cert has value 'certs/server.pem': {tmp_path / 'certs/server.pem'}" in (
        result.output + (result.stderr if result.stderr_bytes is not None else ""))


def test_tls_files_that_cannot_be_loaded_at_start_name_the_channel_and_paths(messages: MessageStore,
                                                                            tmp_path: Path) -> None:
    (tmp_path / "server.pem").write_text("not a certificate")
    (tmp_path / "server.key").write_text("not a key")
    chan = {"source": {"type": "mllp", "port": 0, "tls": {"cert": "server.pem", "key": "server.key"}},
            "destinations": {"out": {"type": "file", "directory": "out"}}}

    async def body() -> None:
        with pytest.raises(ChannelConfigError) as info:
            async with running(messages, {"secure": chan}, base=tmp_path):
                pass
        assert str(info.value).startswith(f"Channel 'secure': source.tls: TLS files cannot be loaded (source.tls.cert "
                                          f"{tmp_path / 'server.pem'}, source.tls.key {tmp_path / 'server.key'})")
    run(body())


# -- every step problem is listed -----------------------------------------------------------------


def test_every_bad_step_of_a_channel_is_listed(tmp_path: Path) -> None:
    text = problems(channel(
        filter=[{"step": "match", "path": "MSH-9"}, "tests.engine.channels.sample:only_adt"],
        transform=[{"step": "set_field", "path": "MSH-5", "valu": "HUB"},
                   {"step": "teleport"},
                   {"step": "route", "routes": {"ADT": ["nowhere"]}}]), tmp_path)
    assert "Channel 'adt-in': filter[0]: step 'match' needs 'equals', 'in' or 'regex'." in text
    assert "Channel 'adt-in': transform[0]: option 'valu' is not known to the set_field step." in text
    assert "Channel 'adt-in': transform[1]: step 'teleport' is not known." in text
    assert "Channel 'adt-in': transform[2]: step 'route' routes to nowhere, which the channel does not declare." in text
    assert text.count("\n  - ") == 4


def test_a_step_that_trips_over_its_options_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    text = problems(channel(filter=[{"step": "match", "path": "MSH-9", "regex": "(ADT"}],
                            transform=[{"step": "route", "routes": {"ADT": ["store"]}, "default": 5}]), tmp_path)
    assert "Channel 'adt-in': filter[0]: step 'match' cannot use its options" in text
    assert "Channel 'adt-in': transform[0]: step 'route' cannot use its options" in text


def _plugin_package(root: Path, body: str, entry: str = "stamp = ehrgate_test_plugin:stamp_step") -> None:
    """An installed package offering a step through the ``ehrgate.steps`` entry point group (a
    dist-info directory beside its module, as pip leaves them)."""
    (root / "ehrgate_test_plugin.py").write_text(body)
    info = root / "ehrgate_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ehrgate-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ehrgate.steps]\n{entry}\n")


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import sys

    from ehrgate.engine import steps

    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(steps, "_plugins", None)  # read the entry points again
    monkeypatch.setattr(steps, "STEPS", dict(steps.STEPS))  # what a test registers goes with it
    monkeypatch.delitem(sys.modules, "ehrgate_test_plugin", raising=False)
    return root


def test_an_installed_package_offers_a_step_by_entry_point(tmp_path: Path, plugins: Path) -> None:
    _plugin_package(plugins, (
        "def stamp_step(options, base_dir):\n"
        "    value = options['value']\n"
        "    def step(work):\n"
        "        work.message.set('MSH-5', value)\n"
        "        return [work]\n"
        "    return step\n"))
    cfg = load_channels({"channels": {"adt-in": channel(transform=[{"step": "stamp", "value": "PLUGGED"}])}},
                        tmp_path)["adt-in"]
    result = Pipeline(cfg).run(hl7("PLUG1"))
    assert result.status == "QUEUED", result.error
    assert "|PLUGGED|" in result.outputs[0].raw.decode().split("\r")[0]


def test_a_broken_plugin_is_named_not_a_traceback(tmp_path: Path, plugins: Path) -> None:
    _plugin_package(plugins, "raise ImportError('needs libfoo')\n")
    text = problems(channel(transform=[{"step": "stamp"}]), tmp_path)
    assert ("transform[0]: step 'stamp' (entry point 'ehrgate_test_plugin:stamp_step' of ehrgate-test-plugin) "
            "cannot be loaded: ImportError: needs libfoo. Reinstall or fix that package.") in text
    unknown = problems(channel(transform=[{"step": "stmap"}]), tmp_path)
    assert "step 'stmap' is not known. Expected one of:" in unknown and "stamp" in unknown  # installed ones listed

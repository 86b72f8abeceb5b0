"""``ehrgate --help`` and the light commands import only what they use: every command module is
imported for ``ehrgate --help``, so a top-level import of the engine, the database or the HTTP app
in any of them made every command wait ~0.6 s for the whole server stack. Each check runs in a fresh
interpreter, whose ``sys.modules`` says what was imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "convert" / "samples" / "adt_a01.hl7"

SERVER = ("uvicorn", "starlette", "ehrgate.app")
"""The HTTP server: only ``serve`` and ``demo`` need it."""
HEAVY = (*SERVER, "ehrgate.engine", "ehrgate.engine.runner", "ehrgate.fhir", "ehrgate.convert", "ehrgate.smart",
         "ehrgate.bulk", "ehrgate.database", "sqlalchemy", "alembic", "httpx", "rich", "joserfc")
"""What no ``--help`` needs."""

_PROBE = """
import json, sys
from ehrgate.cli import cli

def run(args):
    try:
        cli.main(args=args, prog_name="ehrgate", standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise

runs = json.loads(sys.argv[1])
if runs == "every --help":
    def walk(group, path):
        for name, command in group.commands.items():
            yield [*path, name, "--help"]
            if hasattr(command, "commands"):
                yield from walk(command, [*path, name])
    runs = [["--help"], *walk(cli, [])]
for args in runs:
    run(args)
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def imported_by(runs: list[list[str]] | str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running ``runs`` (lists of arguments) in turn."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EHRGATE_")}
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(runs)], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


def test_help_of_every_command_imports_none_of_the_server_stack() -> None:
    modules = imported_by("every --help")
    assert "ehrgate.cli.messages" in modules  # the probe ran
    assert loaded(modules, HEAVY) == []


def test_hl7_show_reads_a_file_without_the_engine_or_the_database() -> None:
    modules = imported_by([["hl7", "show", str(SAMPLE)]])
    assert "ehrgate.hl7" in modules
    assert loaded(modules, HEAVY) == []


def test_messages_search_opens_the_database_without_the_http_app(tmp_path: Path) -> None:
    from ehrgate.database import open_store
    from ehrgate.settings import load_settings

    data = tmp_path / "data"
    open_store(load_settings(None, overrides={"data_dir": str(data)}, environ={})).engine.dispose()
    modules = imported_by([["messages", "search", "--data-dir", str(data)]])
    assert "ehrgate.engine.store" in modules and "sqlalchemy" in modules  # what it does use
    # nor the channel runner, its destinations (httpx) and alerts: ehrgate.engine's names load on use
    assert loaded(modules, (*SERVER, "ehrgate.engine.runner", "ehrgate.engine.destinations", "httpx")) == []


@pytest.mark.parametrize(("cli_module", "name", "engine_module"), [
    ("ehrgate.cli.messages", "STATUSES", "ehrgate.engine.store"),
    ("ehrgate.cli.audit", "ACTIONS", "ehrgate.engine.audit"),
])
def test_the_choices_the_cli_offers_are_the_engines(cli_module: str, name: str, engine_module: str) -> None:
    """The CLI keeps its own copy of these for ``--status`` and ``--action`` (importing the engine
    for them is what made ``--help`` slow); a value the engine adds must be offered too."""
    import importlib

    assert getattr(importlib.import_module(cli_module), name) == getattr(importlib.import_module(engine_module), name)

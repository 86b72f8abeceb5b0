"""The audit trail from the CLI: ``channel pause|resume|deploy|undeploy`` and ``messages
reprocess|prune`` record who (``cli:<OS user>``) did what; ``ehrgate audit list`` reads the trail
(the same rows as ``GET /admin/audit``), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from ehrgate.cli import cli
from ehrgate.engine import SearchQuery, open_messages
from ehrgate.engine.info import describe
from ehrgate.engine.store import Incoming
from ehrgate.fhir.store.service import Store

ME = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
ADT = (b"MSH|^~\\&|LAB|FAC|EHR|HUB|20240401120000||ADT^A01|AUD{n}|P|2.5.1\r"
       b"PID|1||MRN-77{n}^^^FAC^MR||Quill^Ada||19800101|F\r")


def _cli(store: Store, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    url = store.engine.url.render_as_string(hide_password=False)
    cfg = tmp_path / "ehrgate.yaml"
    if not cfg.exists():
        cfg.write_text("channels:\n  adt-in:\n    source: {type: mllp, port: 0}\n"
                       "    destinations: {out: {type: file, directory: out}}\n")
    result = CliRunner().invoke(cli, [*args, "--database-url", url, "--data-dir", str(tmp_path / "data"),
                                      "--config", str(cfg)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _finished_messages(store: Store) -> list[int]:
    ms = open_messages(store)
    try:
        for n in (1, 2):
            raw = ADT.replace(b"{n}", str(n).encode())
            info = describe(raw)
            ms.receive([Incoming("adt-in", raw, "test", info.msg_type, info.control_id, info.sender, info.patient_ids)])
        with ms.write() as conn:
            conn.execute(sa.text("UPDATE eng_message SET status = 'ERROR', error = 'down'"))
            conn.execute(sa.text("DELETE FROM eng_queue"))
        return sorted(int(r["id"]) for r in ms.search(SearchQuery()))
    finally:
        ms.close()


def test_cli_actions_are_audited_and_listed(store: Store, tmp_path: Path) -> None:
    ids = _finished_messages(store)
    assert _cli(store, tmp_path, "channel", "pause", "adt-in")[0] == 0
    assert _cli(store, tmp_path, "channel", "resume", "adt-in")[0] == 0
    assert _cli(store, tmp_path, "channel", "undeploy", "adt-in")[0] == 0
    assert _cli(store, tmp_path, "channel", "deploy", "adt-in")[0] == 0
    code, out, _ = _cli(store, tmp_path, "messages", "reprocess", "--status", "ERROR", "--channel", "adt-in")
    assert code == 0 and "2 message(s) queued" in out
    code, out, _ = _cli(store, tmp_path, "messages", "prune", "--older-than", "1d", "--channel", "adt-in")
    assert code == 0 and "Pruned 0" in out

    code, out, _ = _cli(store, tmp_path, "audit", "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(r["action"], r["target"], r["outcome"]) for r in reversed(rows)] == [
        ("pause", "adt-in", "success"), ("resume", "adt-in", "success"), ("undeploy", "adt-in", "success"),
        ("deploy", "adt-in", "success"), ("reprocess", "messages", "success"), ("prune", "adt-in", "success")]
    assert {r["actor"] for r in rows} == {ME} and {r["via"] for r in rows} == {"cli"}
    assert all(r["at"].endswith("+00:00") and r["peer"] for r in rows)  # ISO time, the host
    reprocess = next(r for r in rows if r["action"] == "reprocess")["detail"]
    assert sorted(reprocess["ids"]) == ids and reprocess["count"] == 2  # newest first, as searched
    assert reprocess["criteria"] == {"channel": "adt-in", "status": "ERROR", "limit": 1000}
    prune = next(r for r in rows if r["action"] == "prune")["detail"]
    assert prune["older_than"] == "1d" and prune["count"] == 0 and prune["channel"] == "adt-in"
    assert next(r for r in rows if r["action"] == "deploy")["detail"]["state"]["generation"] == 1
    assert "MSH|" not in out and "Quill" not in out  # ids and counts, never message content

    code, out, err = _cli(store, tmp_path, "audit", "list", "--action", "reprocess")
    assert code == 0 and "reprocess" in out and "2 message(s)" in out and ME in out and "1 action(s)" in err
    code, out, _ = _cli(store, tmp_path, "audit", "list", "--actor", "someone-else", "--json")
    assert code == 0 and out == ""
    code, _, err = _cli(store, tmp_path, "audit", "list", "--since", "last week")
    assert code == 2 and "Expected a duration back from now" in err


def test_a_refused_cli_action_leaves_no_row(store: Store, tmp_path: Path) -> None:
    """Nothing was done, so nothing is recorded: the command stopped before the database changed."""
    _finished_messages(store)
    code, _, err = _cli(store, tmp_path, "channel", "pause", "ghost")
    assert code == 2 and "not declared" in err
    code, _, err = _cli(store, tmp_path, "messages", "reprocess", "999999")
    assert code == 2
    code, out, err = _cli(store, tmp_path, "audit", "list")
    assert code == 0 and out == "" and "No recorded actions match." in err

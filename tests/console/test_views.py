"""The console's pure parts: the role table and what the pages print."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.console.access import CONTROL, VIEW, console_permissions, console_roles
from ehrgate.console.views import age, channel_row, message_view, read_search, segments, when
from ehrgate.smart import users


@pytest.mark.parametrize(("role", "expected"), [
    ("admin", {VIEW, CONTROL}), ("operator", {VIEW, CONTROL}), ("viewer", {VIEW}),
    ("clinician", set()), ("patient", set()), ("root", set()), ("", set()),
])
def test_role_table(role: str, expected: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "ROLES", ("clinician", "patient", "admin", "operator", "viewer"))
    assert console_permissions(role) == expected


def test_a_role_that_is_not_declared_grants_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "ROLES", ("clinician", "patient", "admin"))
    assert console_permissions("viewer") == frozenset() and console_permissions("admin") == {VIEW, CONTROL}
    assert console_roles() == ["admin"]


def test_times_and_ages() -> None:
    assert when(1_733_555_103_120) == "2024-12-07 07:05:03.120 UTC"
    assert when(None) == ""
    assert [age(s) for s in (0, 42.7, 185, 7800, 273600)] == ["0 s", "42 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"]


def test_segments_one_per_line() -> None:
    assert segments(b"MSH|^~\\&|A\rPID|1\r\nNTE|x\n\r") == ["MSH|^~\\&|A", "PID|1", "NTE|x"]
    assert segments(b"\xffMSH") == ["\ufffdMSH"]


def test_channel_row_totals_and_buttons() -> None:
    listed = {"name": "adt", "source": "mllp", "port": None, "deployed": True, "paused": True}
    stats: dict[str, Any] = {"received": 9, "filtered": 1, "errored": 2,
                             "pipeline": {"queued": 3, "oldest_queued_age_s": 75.2},
                             "destinations": {"a": {"sent": 4, "errored": 1, "retried": 2, "queued": 1,
                                                    "oldest_queued_age_s": 12.0},
                                              "b": {"sent": 2, "errored": 0, "retried": 0, "queued": 0,
                                                    "oldest_queued_age_s": 0.0}}}
    row = channel_row(listed, stats, configured_port=2575)
    assert (row["state"], row["port"], row["sent"], row["queued"], row["oldest"]) == ("paused", 2575, 6, 4, "1 min 15 s")
    assert row["actions"] == ["resume", "deploy", "undeploy"]
    stopped = channel_row({**listed, "deployed": False, "paused": False}, {}, None)
    assert stopped["state"] == "stopped" and stopped["actions"] == ["deploy"] and stopped["oldest"] == ""


def test_message_view_groups_attempts_by_destination() -> None:
    found = {"id": 7, "channel": "adt", "status": "ERROR", "received_at": 0, "updated_at": 0, "msg_type": "ADT^A01",
             "control_id": "C1", "sender": "LAB", "source": "mllp 127.0.0.1", "raw": b"MSH|x\rPID|1\r",
             "transformed": b"MSH|x\rPID|1\r", "bundle": b'{"resourceType":"Bundle"}', "patient_ids": ["M1"],
             "deliveries": [{"destination": "out", "status": "ERROR", "attempts": 2, "updated_at": 0,
                             "last_error": "AE", "request": None, "response": b"MSH|y\rMSA|AE|C1\r"}],
             "attempts": [{"destination": "gone", "number": 1, "at": 0, "outcome": "SENT", "duration_ms": 1,
                           "error": None, "run": 1}]
                         + [{"destination": "out", "number": n, "at": 0, "outcome": o, "duration_ms": 3, "error": e,
                             "run": 2} for n, o, e in ((1, "RETRY", "timeout"), (2, "ERROR", "AE"))],
             "runs": [{"run": 1, "at": 0, "by": None}, {"run": 2, "at": 60_000, "by": "olga"}],
             "children": [8, 9], "queued": []}
    view = message_view(found)
    assert view["raw"] == ["MSH|x", "PID|1"] and view["transformed"] is None and view["transformed_same"]
    assert view["bundle"] == '{\n  "resourceType": "Bundle"\n}'
    out, gone = view["deliveries"]
    assert [a["outcome"] for a in out["tries"]] == ["RETRY", "ERROR"] and out["response"] == "MSH|y\nMSA|AE|C1"
    assert gone["destination"] == "gone" and gone["tries"][0]["outcome"] == "SENT"
    assert [a["run"] for a in out["tries"] + gone["tries"]] == [2, 2, 1]
    assert [(r["run"], r["how"], r["by"]) for r in view["runs"]] == [(1, "received", ""), (2, "reprocessed", "olga")]
    assert view["reprocessable"] and view["children"] == [8, 9]


def test_read_search() -> None:
    now = 1_000_000_000
    s = read_search({"channel": " adt ", "status": "sent", "since": "2h", "type": "ADT", "before_id": "40"}, now)
    assert not s.errors and s.query is not None
    q = s.query
    assert (q.channel, q.status, q.since, q.msg_type, q.before_id, q.limit) == ("adt", "SENT", now - 7_200_000, "ADT", 40, 51)
    for odd in ("\u00b2", "\u0663", "9" * 30):  # superscript two, Arabic-Indic three: isdigit() but not ids
        assert read_search({"before_id": odd}, now).errors == [f"before_id {odd!r} is not a message id (a whole "
                                                                 "number)."]
    bad = read_search({"status": "x", "until": "soon", "before_id": "-1"}, now)
    assert bad.query is None and len(bad.errors) == 3 and bad.form["until"] == "soon"
    assert bad.errors[0].startswith("Status 'x' is not a status. Expected one of: RECEIVED")

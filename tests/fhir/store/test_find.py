"""``WriteSession.find`` on one identifier (the criteria of conditional writes from converted HL7
messages) answers from the token index and the session's buffered rows without flushing them:
the same matches as the search engine after a flush, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.search.engine import match_ids
from ehrgate.fhir.store.service import Store, _identifier_criteria


def _patient(*identifiers: tuple[str | None, str]) -> dict[str, Any]:
    return {"resourceType": "Patient",
            "identifier": [{"value": v} if s is None else {"system": s, "value": v} for s, v in identifiers]}


CRITERIA = [
    "identifier=urn:a|X", "identifier=X", "identifier=|X", "?identifier=urn:b|X", "identifier=urn:a|Y",
    "identifier=urn:a|Z", "identifier=urn:a|OLD", "identifier=urn:a|GONE", "identifier=urn:a|NEW2",
    "identifier=urn:a|nothing", "identifier=urn:a|X,urn:b|X", "identifier=urn%3Aa%7CX",
]


def test_identifier_lookups_match_the_search_engine_without_a_flush(store: Store) -> None:
    with store.writer() as w:
        w.create("Patient", _patient(("urn:a", "X")))
        w.create("Patient", _patient((None, "X")))
        w.create("Patient", _patient(("urn:b", "X")))
        w.create("Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
                                 "identifier": [{"system": "urn:a", "value": "X"}]})
        changed = w.create("Patient", _patient(("urn:a", "OLD"))).stored.res_id
        gone = w.create("Patient", _patient(("urn:a", "GONE"))).stored.res_id
        w.flush()
        # buffered, not flushed: a new Patient, a changed identifier, a deletion
        w.create("Patient", _patient(("urn:a", "Y"), ("urn:a", "NEW2")))
        w.update("Patient", changed, {**_patient(("urn:a", "Z")), "id": changed})
        w.delete("Patient", gone)
        short = [c for c in CRITERIA if _identifier_criteria("Patient", c) is not None]
        fast = {c: sorted(w.find("Patient", c)) for c in short}
        assert w._pending, "the lookups flushed the buffered rows"
        fast.update({c: sorted(w.find("Patient", c)) for c in CRITERIA if c not in short})  # they flush
        w.flush()
        slow = {c: sorted(match_ids(w.conn, "Patient", c, store.dialect)) for c in CRITERIA}
    assert fast == slow
    counts = {c: len(v) for c, v in fast.items()}
    assert counts["identifier=urn:a|X"] == 2  # and the one indexed without a system
    assert counts["identifier=X"] == 3 and counts["identifier=|X"] == 1
    assert counts["identifier=urn:a|Z"] == 1 and counts["identifier=urn:a|OLD"] == 0
    assert counts["identifier=urn:a|GONE"] == 0 and counts["identifier=urn:a|Y"] == 1


def test_a_conditional_create_finds_what_the_same_transaction_created(store: Store) -> None:
    with store.writer() as w:
        first = w.create("Patient", _patient(("urn:mrn", "M1")), if_none_exist="identifier=urn:mrn|M1")
        again = w.create("Patient", _patient(("urn:mrn", "M1")), if_none_exist="identifier=urn:mrn|M1")
        other = w.conditional_update("Patient", "identifier=urn:mrn|M1", _patient(("urn:mrn", "M1")))
    assert (first.status, again.status, other.status) == (201, 200, 200)
    assert first.stored.res_id == again.stored.res_id == other.stored.res_id


@pytest.mark.parametrize(("res_type", "criteria", "expected"), [
    ("Patient", "identifier=urn:a|X", ("urn:a", "X", False)),
    ("Patient", "?identifier=X", (None, "X", True)),
    ("Patient", "identifier=|X", (None, "X", False)),
    ("Patient", "identifier=urn:a|X&active=true", None),
    ("Patient", "identifier:of-type=a|b|c", None),
    ("Patient", "identifier=urn:a|X,urn:a|Y", None),
    ("Patient", "identifier=urn%3Aa|X", None),
    ("Patient", "identifier=a\\|b", None),
    ("Patient", "identifier=urn:a|", None),
    ("Patient", "name=X", None),
])
def test_only_one_plain_identifier_takes_the_short_path(res_type: str, criteria: str, expected: Any) -> None:
    assert _identifier_criteria(res_type, criteria) == expected

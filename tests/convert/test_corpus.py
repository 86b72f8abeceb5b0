"""Every ADT/ORU/OUL/ORM/OML/SIU/VXU/MDM message of the external corpus (../shared/corpus/hl7v2,
read at test time, never copied: several folders are copyleft) converts into a Bundle that
validates and that the FHIR store accepts, twice in a row, or fails with a ConversionError whose
text starts with the segment/field at fault. Failures are counted and summarised at the end of
the run (``pytest_terminal_summary`` in conftest.py).

Each message is loaded in its own transaction that is rolled back: the corpus folders reuse
identifiers across unrelated scenarios, and acceptance is a property of one message.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from ehrgate.convert import ConversionError, convert
from ehrgate.fhir.bundles import process_transaction
from ehrgate.fhir.jsonio import dumps, loads
from ehrgate.hl7 import HL7Error, parse, read_batch

from .conftest import KNOWN, OPTIONS, errors

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "hl7v2").resolve()
NOT_HL7 = {".md", ".json", ".fhir", ".csv", ".tsv"}
FAMILIES = {"ADT", "ORU", "OUL", "ORM", "OML", "SIU", "VXU", "MDM"}
WHERE = re.compile(r"^[A-Z][A-Z0-9]{2}(\[\d+\])?(-\d+(\(\d+\))?(\.\d+)*)?: \S")

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus {CORPUS} is absent (a fresh clone has no ../shared)"),
]

SUMMARY: dict[str, Any] = {}


class _Rollback(Exception):
    pass


@lru_cache(maxsize=1)
def corpus_messages() -> tuple[tuple[str, int, str], ...]:
    """(file relative to the corpus, message number, ER7 text) of every message of the families."""
    out = []
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.suffix.lower() in NOT_HL7:
            continue
        for n, text in enumerate(read_batch(path.read_bytes()).messages, start=1):
            try:
                kind = parse(text).get("MSH-9.1").upper()
            except HL7Error:
                continue  # the hl7 package's corpus test covers what does not parse
            if kind in FAMILIES:
                out.append((str(path.relative_to(CORPUS)), n, text))
    return tuple(out)


@lru_cache(maxsize=1)
def converted() -> tuple[list[tuple[str, dict[str, Any]]], Counter[str]]:
    bundles: list[tuple[str, dict[str, Any]]] = []
    failures: Counter[str] = Counter()
    for name, n, text in corpus_messages():
        label = f"{name}#{n}"
        try:
            result = convert(parse(text), OPTIONS)
        except ConversionError as exc:
            assert WHERE.match(str(exc)), f"{label}: error does not name a segment/field: {exc}"
            assert exc.location is not None, label
            failures[re.sub(r"'.*?'", "'…'", str(exc))[:110]] += 1
            continue
        bundles.append((label, result.bundle))
    SUMMARY.update(messages=len(corpus_messages()), converted=len(bundles), failures=failures)
    return bundles, failures


def test_corpus_converts_or_names_the_field() -> None:
    bundles, failures = converted()
    assert len(corpus_messages()) > 500
    assert len(bundles) > 0.75 * len(corpus_messages()), failures.most_common(10)
    invalid = [(label, errors(bundle)[:2]) for label, bundle in bundles if errors(bundle)]
    assert not invalid, invalid[:5]


#: PostgreSQL loads every PG_STRIDE-th bundle (SQLite loads all): the test stays under a minute.
PG_STRIDE = 4


def test_store_accepts_every_converted_bundle(store: Any, engine_name: str) -> None:
    bundles, _ = converted()
    if engine_name == "postgresql":
        bundles = bundles[::PG_STRIDE]
    rejected: list[str] = []
    for label, bundle in bundles:
        body = dumps(bundle)
        try:
            with store.writer() as w:
                process_transaction(store, loads(body), KNOWN, session=w)
                process_transaction(store, loads(body), KNOWN, session=w)  # a replay in the same transaction
                raise _Rollback
        except _Rollback:
            pass
        except Exception as exc:  # noqa: BLE001 - collected and reported with the message's name
            # every refusal fails, the string index columns' widths too: the store clips index values
            # to their columns (a narrative Observation.valueString longer than 512 characters once
            # made PostgreSQL refuse three corpus bundles)
            rejected.append(f"{label}: {str(exc)[:200]}")
    assert not rejected, rejected[:5]

"""Differential tests against python-hl7 (``import hl7``) over the external corpus in ../shared.

For every file of ``../shared/corpus/hl7v2`` (each folder's README says what it holds: many files
hold several messages, some none, some are fuzzer garbage):

1. ``parse`` on the whole file returns a Message or raises our ParseError - nothing else - and a
   parsed message survives every accessor, ``format_tree`` and a serialize/parse round trip;
2. the file is split with ``read_batch`` (which never raises) and each message is parsed by us and
   by python-hl7. Where python-hl7 parses, every segment, field, repetition, component and
   subcomponent must be equal, and decoded values equal where both libraries define the escape
   sequences alike. Where python-hl7 rejects the text, we must raise ParseError.

Both libraries receive the same text: our charset decoding, BOM removal and CR normalisation come
first, because python-hl7 only splits on CR and takes str. (This tests the parsers, not decoding.)

Deliberate differences, where we refuse what python-hl7 accepts (asserted against ALLOWED_REFUSALS):

* a line that does not start with a segment id (three upper-case letters/digits, then the field
  separator) is a ParseError; python-hl7 makes a segment of anything, e.g. git conflict markers,
  ``//`` comments, indented continuation lines or lower-case ids in these files;
* unusable MSH-1/MSH-2 are a ParseError (empty, repeated characters like ``^~\\\\&``, letters or
  digits, more than five characters); python-hl7 guesses with defaults.

Deliberate differences in values (not compared):

* a separator MSH-2 does not declare (``^~\\`` has no subcomponent separator) is data to us;
  python-hl7 falls back to ``&``. The comparison joins python-hl7's parts back in that case;
* python-hl7 strips whitespace at the very end of a message; we keep it (the last field is compared
  after ``rstrip``);
* escapes other than ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` and single-byte ``\\Xhh\\``: python-hl7 turns
  ``\\.br\\`` into CR (we give LF), ``\\H\\``/``\\N\\`` into ``_`` and drops ``\\Z..\\`` and unpaired
  escape characters (we keep them verbatim), and reads multi-byte ``\\X..\\`` as Latin-1 (we try UTF-8).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import hl7 as python_hl7
import pytest

from ehrgate.hl7 import Message, ParseError, decode, format_tree, parse, read_batch

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "hl7v2").resolve()
NOT_HL7 = {".md", ".json", ".fhir", ".csv", ".tsv"}

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus {CORPUS} is absent (a fresh clone has no ../shared)"),
]

ALLOWED_REFUSALS = [
    re.compile(r"^Segment \d+ starts .*, which is not a segment id"),
    re.compile(r"^MSH-[12] "),
]

Tree = list[list[list[list[str]]]]  # fields -> repetitions -> components -> subcomponents


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() not in NOT_HL7)


def folders() -> list[str]:
    return sorted({p.relative_to(CORPUS).parts[0] for p in corpus_files()}) or ["(no corpus)"]


# -- python-hl7 containers to plain nested lists -------------------------------------------------

def _theirs_component(c: Any) -> list[str]:
    return [c] if isinstance(c, str) else [str(x) for x in c]


def _theirs_repetition(r: Any) -> list[list[str]]:
    if isinstance(r, str):
        return [[r]]
    items = list(r)
    if len(items) == 1 and isinstance(items[0], str):
        return [[items[0]]]
    return [_theirs_component(c) for c in items]


def _theirs_field(f: Any) -> list[list[list[str]]]:
    if isinstance(f, str):
        return [[[f]]]
    items = list(f)
    if len(items) == 1 and isinstance(items[0], str):
        return [[[items[0]]]]
    return [_theirs_repetition(r) for r in items]


def _rejoin(field: list[list[list[str]]], rep: str, comp: str, sub: str) -> list[list[list[str]]]:
    """python-hl7's parts re-split with our delimiters when MSH-2 leaves some undeclared (python-hl7
    then falls back to '~', '^' and '&'; to us those characters are data)."""
    if rep and comp and sub:
        return field
    raw = "~".join((comp or "^").join("&".join(subs) for subs in comps) for comps in field)

    def split(text: str, sep: str) -> list[str]:
        return text.split(sep) if sep else [text]

    return [[split(c, sub) for c in split(r, comp)] for r in split(raw, rep)]


def theirs_tree(segment: Any, msg: Message) -> Tree:
    d = msg.delimiters
    fields = [_theirs_field(f) for f in segment]
    literal = 3 if fields and fields[0] == [[["MSH"]]] else 1  # MSH-1 and MSH-2 are never split
    return fields[:literal] + [_rejoin(f, d.repetition, d.component, d.subcomponent) for f in fields[literal:]]


def ours_tree(msg: Message, index: int) -> Tree:
    segment = msg.segments[index]
    return [segment.parts(n) for n in range(len(segment.fields))]


# -- the differential run, once per session -------------------------------------------------------

def _simple_escapes(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(rf"(?:[^{e}]|{e}(?:[FSTRE]|X[0-7][0-9A-Fa-f]){e})*")


def _exercise(msg: Message) -> None:
    """Every read path must work on anything parse() accepted."""
    format_tree(msg)
    for segment in msg.segments:
        for n in range(len(segment.fields)):
            segment.parts(n)
            segment.get(str(n) if n else "1")
    assert parse(msg.to_er7()) == msg
    msg.get("PID-3(2).4.1"), msg.patient_identifiers, repr(msg)


def _compare(text: str, ours: Message, theirs: Any) -> list[str]:
    problems = []
    their_segments = list(theirs)
    if len(their_segments) != len(ours):
        return [f"{len(ours)} segments vs python-hl7 {len(their_segments)}"]
    simple = _simple_escapes(ours.delimiters.escape) if ours.delimiters.escape else None
    last = len(ours) - 1
    for i, their_segment in enumerate(their_segments):
        mine, other = ours_tree(ours, i), theirs_tree(their_segment, ours)
        if i == last and mine and other:  # python-hl7 strips the message's trailing whitespace
            mine[-1] = [[[s.rstrip() for s in c] for c in r] for r in mine[-1]]
            other[-1] = [[[s.rstrip() for s in c] for c in r] for r in other[-1]]
        if mine != other:
            problems.append(f"segment {i + 1} {ours.segments[i].name}: {mine!r:.300} != {other!r:.300}")
            continue
        if simple is None:
            continue
        for f, field in enumerate(mine):
            if f < 3 and i == 0:
                continue
            for comps in field:
                for subs in comps:
                    for leaf in subs:
                        if ours.delimiters.escape in leaf and simple.fullmatch(leaf):
                            from ehrgate.hl7 import unescape
                            if unescape(leaf, ours.delimiters) != theirs.unescape(leaf):
                                problems.append(f"segment {i + 1} decoded {leaf!r}")
    return problems


@lru_cache(maxsize=1)
def run() -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for path in corpus_files():
        folder = path.relative_to(CORPUS).parts[0]
        stats = results.setdefault(folder, {"files": 0, "compared": 0, "refused": 0, "both_rejected": 0,
                                            "problems": []})
        stats["files"] += 1
        name = str(path.relative_to(CORPUS))
        data = path.read_bytes()
        try:
            whole = parse(data)
        except ParseError:
            pass
        except Exception as exc:  # noqa: BLE001 - this is what the test looks for
            stats["problems"].append(f"{name}: parse(file) raised {type(exc).__name__}: {exc}")
        else:
            try:
                _exercise(whole)
            except Exception as exc:  # noqa: BLE001
                stats["problems"].append(f"{name}: reading the parsed file raised {type(exc).__name__}: {exc}")
        try:
            messages = read_batch(data).messages
        except Exception as exc:  # noqa: BLE001
            stats["problems"].append(f"{name}: read_batch raised {type(exc).__name__}: {exc}")
            continue
        for n, text in enumerate(messages, start=1):
            where = f"{name} message {n}"
            try:
                theirs = python_hl7.parse(text)
            except Exception:  # noqa: BLE001 - python-hl7 raises assorted types
                theirs = None
            try:
                ours = parse(text)
            except ParseError as exc:
                if theirs is None:
                    stats["both_rejected"] += 1
                elif any(p.search(str(exc)) for p in ALLOWED_REFUSALS):
                    stats["refused"] += 1
                else:
                    stats["problems"].append(f"{where}: we refused what python-hl7 parses: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001
                stats["problems"].append(f"{where}: parse raised {type(exc).__name__}: {exc}")
                continue
            if theirs is None:
                stats["problems"].append(f"{where}: python-hl7 rejects it but we parsed it")
                continue
            stats["compared"] += 1
            stats["problems"].extend(f"{where}: {p}" for p in _compare(text, ours, theirs))
    return results


@pytest.mark.parametrize("folder", folders())
def test_corpus_folder_matches_python_hl7(folder: str) -> None:
    stats = run()[folder]
    problems: Sequence[str] = stats["problems"]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])


def test_corpus_coverage() -> None:
    """Guard against a vacuous pass: most of the corpus's ~1,080 messages must have been compared."""
    totals = {k: sum(s[k] for s in run().values()) for k in ("files", "compared", "refused", "both_rejected")}
    assert totals["files"] > 700 and totals["compared"] > 900, totals
    assert totals["refused"] <= 120, totals  # 54 are the annotated (non-ER7) IZ Gateway file


def test_decode_of_every_file_never_fails() -> None:
    for path in corpus_files():
        text, codec = decode(path.read_bytes())
        assert isinstance(text, str) and codec in (None, "utf-8", "latin-1", "iso8859-1", "cp1252")

"""The index rows of every resource of the shared corpus, pinned: extraction may get faster, never different.

``index_golden.json`` holds, for each corpus file, one digest per resource of what ``extract_index``
gives it: every row of every index table and the patient compartments. Rows are compared per
parameter, in order; how rows of different parameters interleave within a table is free (the store
writes and searches them per parameter). Resources are read as the store reads them
(``jsonio.loads``), with a transaction Bundle's ``urn:uuid:`` references rewritten to ``Type/id`` as
the store does before indexing.

The digests were written by the extraction of commit 8e93db1, before it was restructured for speed
(its rows were frozen dataclasses, read here as type name + ``vars(row).values()``; they are
NamedTuples now, read as type name + the tuple's values: the same list):

    PYTHONPATH=<a checkout of that commit>/src .venv/bin/python tests/fhir/search/test_index_golden.py --write

Skipped when ../shared/corpus is absent (a fresh clone).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ehrgate.fhir.search.extract import extract_index

try:
    from .corpus import CORPUS, corpus_resources
except ImportError:  # run as a script (--write)
    sys.path.insert(0, str(Path(__file__).parent))
    from corpus import CORPUS, corpus_resources  # type: ignore[no-redef]

GOLDEN = Path(__file__).with_name("index_golden.json")
FOLDERS = ("synthea-r4", "us-core-examples", "bulk-ndjson-10-patients")
TABLES = ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris", "composites")


def canonical(resource: dict[str, Any]) -> list[Any]:
    """``extract_index(resource)`` as plain data: per table, the rows grouped by parameter (each
    parameter's rows in the order extracted), then the sorted compartments."""
    index = extract_index(resource)
    out: list[Any] = []
    for table in TABLES:
        rows = sorted(getattr(index, table), key=lambda r: r.param)  # stable: keeps each param's order
        out.append([[type(r).__name__, *r] for r in rows])  # a row's values in field order
    out.append(sorted(index.compartments))
    return out


def digest(resource: dict[str, Any]) -> str:
    data = orjson.dumps(canonical(resource), default=str)
    return hashlib.sha256(data).hexdigest()[:12]


def _files(folder: str) -> list[Path]:
    return sorted(p for p in (CORPUS / folder).iterdir() if p.suffix in (".json", ".ndjson") and p.name != "log.ndjson")


def compute() -> dict[str, dict[str, str]]:
    return {folder: {p.name: " ".join(digest(r) for r in corpus_resources(p)) for p in _files(folder)}
            for folder in FOLDERS}


@pytest.mark.corpus
@pytest.mark.parametrize("folder", FOLDERS)
def test_index_rows_match_the_golden_digests(folder: str) -> None:
    if not (CORPUS / folder).is_dir():
        pytest.skip(f"{CORPUS / folder} is absent (a fresh clone has no ../shared corpus)")
    golden = orjson.loads(GOLDEN.read_bytes())[folder]
    files = _files(folder)
    assert sorted(p.name for p in files) == sorted(golden), "the corpus files changed; rewrite the digests"
    for path in files:
        expected = golden[path.name].split()
        resources = corpus_resources(path)
        assert len(resources) == len(expected), path.name
        for i, (resource, want) in enumerate(zip(resources, expected, strict=True)):
            got = digest(resource)
            assert got == want, (f"{folder}/{path.name} resource {i} ({resource.get('resourceType')}/"
                                 f"{resource.get('id')}): index rows differ from the golden ones; now: {canonical(resource)}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(f"usage: {sys.argv[0]} --write   (rewrites {GOLDEN.name} from this extraction)")
    GOLDEN.write_bytes(orjson.dumps(compute(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"wrote {GOLDEN}")

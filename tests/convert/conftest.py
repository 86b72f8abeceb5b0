"""Helpers for the conversion tests: samples, picking values out of Bundles, loading into a store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ehrgate.convert import ConversionOptions, ConversionResult, convert
from ehrgate.fhir.bundles import process_transaction
from ehrgate.fhir.jsonio import dumps, loads
from ehrgate.fhir.store import schema
from ehrgate.fhir.store.service import Store
from ehrgate.fhir.validation import known_resource_types, validate
from ehrgate.hl7 import parse

SAMPLES = Path(__file__).parent / "samples"
KNOWN = known_resource_types()
OPTIONS = ConversionOptions(channel="test-channel", message_ref="msg-1")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def convert_sample(name: str, options: ConversionOptions = OPTIONS) -> ConversionResult:
    return convert(parse(sample(name)), options)


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


_STEP = re.compile(r"([A-Za-z_]+)(?:\[(\d+)\])?")


def pick(bundle: dict[str, Any], path: str) -> Any:
    """'Patient.name[0].given[1]' (first Patient), 'Observation#3.valueQuantity.value' (fourth
    Observation), 'Observation(8302-2).valueQuantity.value' (the Observation with that code)."""
    head, _, rest = path.partition(".")
    if "(" in head:
        rtype, code = head[:-1].split("(")
        found = [r for r in resources(bundle, rtype)
                 if any(c.get("code") == code for c in _codes(r))]
        node: Any = found[0] if found else None
    else:
        rtype, _, index = head.partition("#")
        found = resources(bundle, rtype)
        n = int(index or 0)
        node = found[n] if n < len(found) else None
    for step in rest.split(".") if rest else []:
        if node is None:
            return None
        m = _STEP.fullmatch(step)
        assert m, step
        node = node.get(m.group(1)) if isinstance(node, dict) else None
        if m.group(2) is not None:
            node = node[int(m.group(2))] if isinstance(node, list) and int(m.group(2)) < len(node) else None
    return node


def _codes(resource: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("code", "vaccineCode", "type"):
        value = resource.get(key)
        if isinstance(value, dict):
            return list(value.get("coding", []))
    return []


def errors(bundle: dict[str, Any]) -> list[str]:
    return [i.diagnostics for i in validate(bundle) if i.severity in ("error", "fatal")]


def load(store: Store, bundle: dict[str, Any]) -> list[Any]:
    """Process the Bundle as the FHIR store destination does (a JSON round trip first)."""
    return process_transaction(store, loads(dumps(bundle)), KNOWN)


def current(store: Store, rtype: str, criteria: str = "") -> list[dict[str, Any]]:
    """Current resources of a type (optionally matching search criteria)."""
    with store.writer() as w:
        if criteria:
            ids = [rid for _pk, rid in w.find(rtype, criteria)]
        else:
            table = schema.resource
            ids = list(w.conn.execute(sa.select(table.c.res_id).where(
                table.c.res_type == rtype, table.c.deleted.is_(False))).scalars())
        return [loads(store.read(rtype, rid, w.conn).raw) for rid in ids]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the corpus conversion figures (test_corpus.py) when that test ran."""
    from .test_corpus import SUMMARY

    if not SUMMARY:
        return
    failures = SUMMARY["failures"]
    terminalreporter.section("HL7 v2 → FHIR corpus conversion")
    terminalreporter.write_line(f"{SUMMARY['messages']} messages, {SUMMARY['converted']} converted, "
                                f"{sum(failures.values())} ConversionErrors naming their field:")
    for text, count in failures.most_common(12):
        terminalreporter.write_line(f"  {count:4d}  {text}")

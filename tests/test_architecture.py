"""The tree is the architecture: imports point inward to ``fhir`` (DESIGN.md, STYLE rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ehrgate"

# package -> packages it may import (besides itself and the top-level settings/errors modules)
ALLOWED = {
    "fhir": set(),
    "hl7": set(),
    "smart": {"fhir"},
    "engine": {"fhir", "hl7", "convert"},
    "convert": {"fhir", "hl7"},
    "bulk": {"fhir", "smart"},
    "workflow": {"fhir", "smart"},
    "demo": {"fhir"},
    "client": set(),
    "sampleapp": {"client"},  # the bundled SMART app: a client of the server like any other app
    "console": {"fhir", "smart", "engine", "hl7", "bulk", "demo"},
    "cli": {"fhir", "smart", "engine", "hl7", "convert", "bulk", "demo", "client", "console", "app"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(SRC).parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level])
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    found.add(parts[0])
            elif node.module and node.module.startswith("ehrgate."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ehrgate."):
                    found.add(alias.name.split(".")[1])
    return found


def test_imports_point_inward() -> None:
    wrong = []
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).parts
        if len(parts) < 2:
            continue
        pkg = parts[0]
        allowed = ALLOWED.get(pkg)
        if allowed is None:
            continue
        for target in _imports(path) - {pkg, "settings", "__init__"}:
            if target in ALLOWED and target not in allowed:
                wrong.append(f"{path.relative_to(SRC)} imports {target}")
    assert not wrong, "imports pointing the wrong way:\n" + "\n".join(wrong)


def test_nothing_but_the_store_writes_resource_tables() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[:2] == ("fhir", "store"):
            continue
        text = path.read_text()
        for table in ("INSERT INTO resource", "UPDATE resource", "DELETE FROM resource", "INSERT INTO idx_"):
            if table in text:
                offenders.append(f"{rel}: {table}")
    assert not offenders, offenders

"""The shared FHIR corpus as the store reads it (used by the extraction tests; not a test module).

Resources are parsed with ``jsonio.loads`` (decimals kept); a transaction Bundle's ``urn:uuid:``
references are rewritten to ``Type/id`` as the store does before indexing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ehrgate.fhir.jsonio import loads

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "fhir"


def resolved(bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A transaction Bundle's resources, ``urn:uuid:`` references rewritten to ``Type/id``."""
    entries = [e for e in bundle.get("entry") or () if isinstance(e.get("resource"), dict)]
    local = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource'].get('id') or e['fullUrl'].rsplit(':', 1)[-1]}"
             for e in entries if e.get("fullUrl")}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (local.get(v, v) if k == "reference" and isinstance(v, str) else fix(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    for entry in entries:
        resource = fix(entry["resource"])
        if "id" not in resource and entry.get("fullUrl"):
            resource["id"] = entry["fullUrl"].rsplit(":", 1)[-1]
        yield resource


def corpus_resources(path: Path) -> list[dict[str, Any]]:
    """The resources of one corpus file, in file order."""
    if path.suffix == ".ndjson":
        return [loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    data = loads(path.read_bytes())
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        if data.get("type") == "transaction":
            return list(resolved(data))
        return [data, *(e["resource"] for e in data.get("entry") or () if isinstance(e.get("resource"), dict))]
    return [data] if isinstance(data, dict) else []

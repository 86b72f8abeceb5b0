"""Pure decisions of an export: which types, which work units, which Group members, the manifest.

No I/O: the kick-off (access checks), the pipeline steps and the tests call these with values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..fhir.search.compartment import PATIENT_COMPARTMENT
from ..fhir.store.model import iso_instant
from .params import ExportRequest

__all__ = [
    "INSTANTIATES",
    "OPERATION_DEFINITIONS",
    "build_manifest",
    "compartment_types",
    "error_lines",
    "member_ids",
    "plan_units",
    "resolve_types",
]

INSTANTIATES = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
OPERATION_DEFINITIONS = {
    "$export": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    "Patient$export": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    "Group$export": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
}
_PATIENT_REF = re.compile(r"^(?:.*/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")


def compartment_types(known: Iterable[str]) -> list[str]:
    """Types that can be in a patient compartment (CompartmentDefinition patient), Patient first."""
    known_set = set(known)
    return _patient_first(t for t in PATIENT_COMPARTMENT if t in known_set)


def _patient_first(types: Iterable[str]) -> list[str]:
    return sorted(set(types), key=lambda t: (t != "Patient", t))


def resolve_types(export: ExportRequest, known: Iterable[str]) -> tuple[list[str], list[str]]:
    """(types to export, warnings). System level: ``_type`` or every type. Patient and Group
    level: only patient-compartment types (export.html#patient-level-export); others named in
    ``_type`` are dropped with a warning, and so is a ``_typeFilter`` for a type outside the
    compartment (without ``_type``): it applies to nothing, which the client should be told
    (export.html, _typeFilter: a filter the server does not apply is reported)."""
    known_list = list(known)
    if export.level == "system":
        if export.types is not None:
            return list(export.types), []
        return _patient_first(known_list), []
    allowed = compartment_types(known_list)
    level = export.level.capitalize()
    kept = allowed if export.types is None else [t for t in export.types if t in allowed]
    dropped = [] if export.types is None else [t for t in export.types if t not in allowed]
    warnings = [
        f"{t} is not in the patient compartment, so a {level}-level export does not "
        "include it; use a system-level export (/$export?_type=...) for it." for t in dropped
    ]
    warnings += [
        f"_typeFilter {f'{t}?{query}'!r} applies to nothing: {t} is not in the patient compartment, so a {level}-level "
        "export does not include it; use a system-level export (/$export?_type=...) for it."
        for t, queries in export.type_filters.items() if t not in allowed and t not in dropped for query in queries
    ]
    return kept, warnings


def plan_units(
    export: ExportRequest, types: Sequence[str], access_filters: dict[str, tuple[str, ...]]
) -> list[dict[str, Any]]:
    """The work units of step ``expand``: every type in one pass over the store (per type its
    _typeFilter queries ORed, the caller's query-constrained scopes ORed, the two ANDed); then the
    latest Provenance of what was exported (includeAssociatedData); then the deletions (``_since``).
    ``all``: no ``_type`` was given, so no condition on the type is needed."""

    def constraints(res_type: str) -> list[str]:
        # a ``*`` entry (``system/*.rs?_tag=...``) constrains every type, as Access.filters_for says
        return [*access_filters.get(res_type, ()), *access_filters.get("*", ())]

    units: list[dict[str, Any]] = [{
        "kind": "output", "types": list(types), "all": export.types is None,
        "filters": {t: list(q) for t, q in export.type_filters.items() if t in types},
        "access": {t: constraints(t) for t in types if constraints(t)},
    }]
    if export.latest_provenance and "Provenance" not in types:
        units.append({"kind": "provenance", "types": ["Provenance"], "access": {"Provenance": constraints("Provenance")}})
    if export.since is not None:
        # A deletion of a type the caller may only see through query constraints cannot be
        # checked against them (the deleted version is not indexed): those are left out.
        units.append({"kind": "deleted", "type": "Bundle", "types": [t for t in types if not constraints(t)]})
    return units


def member_ids(group: dict[str, Any]) -> list[str]:
    """Patient ids of a Group's active members (``member.entity``; ``inactive: true`` skipped)."""
    out: list[str] = []
    seen: set[str] = set()
    for member in group.get("member") or []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        entity = member.get("entity")
        ref = entity.get("reference") if isinstance(entity, dict) else None
        match = _PATIENT_REF.match(ref) if isinstance(ref, str) else None
        if match and match.group(1) not in seen:
            seen.add(match.group(1))
            out.append(match.group(1))
    return out


def error_lines(messages: Iterable[str], severity: str = "warning") -> list[bytes]:
    """One OperationOutcome per message, for the manifest's ``error`` files."""
    return [
        orjson.dumps({"resourceType": "OperationOutcome",
                      "issue": [{"severity": severity, "code": "informational" if severity != "error" else "processing",
                                 "diagnostics": text}]})
        for text in messages
    ]


def build_manifest(
    transaction_time: int,
    request_url: str,
    files_base: str,
    files: Sequence[Any],
    *,
    since: bool,
) -> bytes:
    """The completion manifest (export.html#response---complete-status). ``files`` are
    ``FileRecord``s in the order they should be listed."""

    def entry(f: Any) -> dict[str, Any]:
        return {"type": f.res_type, "url": f"{files_base}/{f.name}", "count": f.count}

    manifest: dict[str, Any] = {
        "transactionTime": iso_instant(transaction_time),
        "request": request_url,
        "requiresAccessToken": True,
        "output": [entry(f) for f in files if f.kind == "output"],
        "error": [entry(f) for f in files if f.kind == "error"],
    }
    if since:
        manifest["deleted"] = [entry(f) for f in files if f.kind == "deleted"]
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2)

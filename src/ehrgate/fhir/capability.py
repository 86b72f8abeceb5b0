"""The CapabilityStatement, generated from the tables the server itself runs on.

Resource types come from the validator's R4 definitions, search parameters from the search
registry, operations from the operation registry: what is listed is exactly what works. The
output must stay strictly valid R4 (SMART client libraries parse it with strict models).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import FHIR_VERSION, __version__

__all__ = ["INTERACTIONS", "build_capability"]

INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type")

OPERATION_DEFINITIONS = {
    "everything": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
}


def _search_params(res_type: str) -> list[dict[str, Any]]:
    from .search.params import params_for

    out = []
    for code, param in sorted(params_for(res_type).items()):
        entry: dict[str, Any] = {"name": code, "type": param.type}
        if param.definition:
            entry["definition"] = param.definition
        if param.expression:
            entry["documentation"] = f"Expression: {param.expression}"
        out.append(entry)
    return out


def _includes(res_type: str) -> tuple[list[str], list[str]]:
    from .search.params import REGISTRY, params_for

    inc = sorted(f"{res_type}:{p.code}" for p in params_for(res_type).values() if p.type == "reference")
    rev = sorted(
        f"{other}:{p.code}"
        for other, params in REGISTRY.items()
        for p in params.values()
        if p.type == "reference" and (not p.targets or res_type in p.targets)
    )
    return inc, rev


def build_capability(
    base: str,
    resource_types: Iterable[str],
    operations: dict[str, str],
    *,
    software_date: str,
    security: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``operations`` maps a registry key (``Patient$everything``, ``$export``) to its definition URL."""
    resources = []
    for res_type in sorted(resource_types):
        inc, rev = _includes(res_type)
        entry: dict[str, Any] = {
            "type": res_type,
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple",
            "referencePolicy": ["literal", "logical", "local"],
        }
        if inc:
            entry["searchInclude"] = inc
        if rev:
            entry["searchRevInclude"] = rev
        params = _search_params(res_type)
        if params:
            entry["searchParam"] = params
        ops = [
            {"name": key.split("$", 1)[1], "definition": url}
            for key, url in sorted(operations.items())
            if key.split("$", 1)[0] == res_type
        ]
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": resources,
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    system_ops = [
        {"name": key[1:], "definition": url} for key, url in sorted(operations.items()) if key.startswith("$")
    ]
    if system_ops:
        rest["operation"] = system_ops
    if security:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": software_date,
        "publisher": "EHRGate",
        "kind": "instance",
        "software": {"name": "EHRGate", "version": __version__},
        "implementation": {"description": "EHRGate FHIR R4 server", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "rest": [rest],
    }

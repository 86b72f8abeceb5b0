"""Kick-off parameters of ``$export`` (Bulk Data Access IG 2.0.0, export.html#query-parameters).

Pure: query pairs (GET) or a ``Parameters`` resource (POST) in, an ``ExportRequest`` out, or a
``BadRequest`` that names the parameter, the bad value and what would have been accepted. With
``Prefer: handling=lenient`` unsupported parameters and values are dropped and reported in the
export's ``error`` file instead (export.html#headers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..fhir.errors import BadRequest, InvalidSearch
from ..fhir.search.normalize import parse_fhir_date_range
from ..fhir.search.query import RESULT_PARAMS, parse_query

__all__ = [
    "ASSOCIATED_DATA",
    "ExportRequest",
    "LEVELS",
    "OUTPUT_FORMATS",
    "parameters_items",
    "parse_kickoff",
    "parse_prefer",
]

LEVELS = ("system", "patient", "group")
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
ASSOCIATED_DATA = frozenset({"LatestProvenanceResources"})
"""Values of ``includeAssociatedData`` we implement (ValueSet include-associated-data)."""
_KNOWN_ASSOCIATED = frozenset({"LatestProvenanceResources", "RelevantProvenanceResources"})
_GENERAL = frozenset({"_format", "_pretty"})
_ELEMENT = re.compile(r"^(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*(?:\[x\])?)$")
_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]+\?)")
_PATIENT_REF = re.compile(r"^(?:.*/)?Patient/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class ExportRequest:
    """What a kick-off asked for, validated. Stored with the job (``to_json``/``from_json``)."""

    level: str
    group_id: str | None = None
    output_format: str = "application/fhir+ndjson"
    since: int | None = None
    """Epoch ms; resources changed strictly after it."""
    types: tuple[str, ...] | None = None
    """``_type``, in the order given; None: every type the level covers."""
    type_filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """``_typeFilter``: type -> search query strings; several for one type are ORed."""
    elements: tuple[str, ...] = ()
    patients: tuple[str, ...] | None = None
    """POST ``patient`` references (ids), Patient and Group level only."""
    latest_provenance: bool = False
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level, "group_id": self.group_id, "output_format": self.output_format,
            "since": self.since, "types": list(self.types) if self.types is not None else None,
            "type_filters": {k: list(v) for k, v in self.type_filters.items()}, "elements": list(self.elements),
            "patients": list(self.patients) if self.patients is not None else None,
            "latest_provenance": self.latest_provenance, "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportRequest:
        return cls(
            level=data["level"], group_id=data.get("group_id"), output_format=data["output_format"],
            since=data.get("since"), types=tuple(data["types"]) if data.get("types") is not None else None,
            type_filters={k: tuple(v) for k, v in (data.get("type_filters") or {}).items()},
            elements=tuple(data.get("elements") or ()),
            patients=tuple(data["patients"]) if data.get("patients") is not None else None,
            latest_provenance=bool(data.get("latest_provenance")), warnings=tuple(data.get("warnings") or ()),
        )

    def elements_for(self, res_type: str) -> list[str] | None:
        """``_elements`` that apply to ``res_type`` (``name`` applies to every type, ``Type.name`` to one)."""
        if not self.elements:
            return None
        out = []
        for item in self.elements:
            prefix, _, name = item.rpartition(".")
            if not prefix or prefix == res_type:
                out.append(name)
        return out or None


def parse_prefer(header: str) -> dict[str, str]:
    """``Prefer: respond-async, handling=lenient`` → {"respond-async": "", "handling": "lenient"}."""
    out: dict[str, str] = {}
    for part in re.split(r"[;,]", header or ""):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip().strip('"').lower()
    return out


def parameters_items(body: Any) -> list[tuple[str, str]]:
    """The (name, value) pairs of a POST kick-off's ``Parameters`` (export.html#post-request)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        kind = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        raise BadRequest(f"A POST kick-off takes a Parameters resource, not {kind!r}.")
    params = body.get("parameter") or []
    if not isinstance(params, list):
        raise BadRequest("Parameters.parameter must be a list of parameters, e.g. "
                         '[{"name": "_type", "valueString": "Patient"}].', expression="Parameters.parameter")
    items: list[tuple[str, str]] = []
    for i, param in enumerate(params):
        name = param.get("name") if isinstance(param, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(f"Parameters.parameter[{i}] has no name.", expression=f"Parameters.parameter[{i}].name")
        if name == "patient":
            ref = param.get("valueReference")
            text = ref.get("reference") if isinstance(ref, dict) else None
            if not isinstance(text, str):
                raise BadRequest(
                    f"Parameters.parameter[{i}] 'patient' needs a valueReference to a Patient, e.g. "
                    '{"reference": "Patient/123"}.', expression=f"Parameters.parameter[{i}].valueReference",
                )
            items.append((name, text))
            continue
        values = [v for k, v in param.items() if k.startswith("value")]
        if len(values) != 1 or not isinstance(values[0], str):
            raise BadRequest(
                f"Parameters.parameter[{i}] '{name}' needs one value (valueString, valueInstant or valueCode).",
                expression=f"Parameters.parameter[{i}]",
            )
        items.append((name, values[0]))
    return items


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def parse_kickoff(
    level: str,
    items: list[tuple[str, str]],
    known_types: frozenset[str],
    *,
    lenient: bool = False,
    group_id: str | None = None,
    allow_patient: bool = False,
) -> ExportRequest:
    """Validate the kick-off parameters. ``allow_patient``: the request was a POST (``patient``)."""
    warnings: list[str] = []

    def reject(message: str, expression: str | None = None) -> None:
        if not lenient:
            raise BadRequest(message + " (Send 'Prefer: handling=lenient' to have it ignored.)", expression=expression)
        warnings.append(message + " It was ignored.")

    output_format = "application/fhir+ndjson"
    since: int | None = None
    types: list[str] | None = None
    filters: dict[str, list[str]] = {}
    elements: list[str] = []
    patients: dict[str, None] | None = None
    provenance = False
    for name, raw in items:
        if name == "_outputFormat":
            if raw.strip().lower() not in OUTPUT_FORMATS:
                raise BadRequest(
                    f"_outputFormat {raw!r} is not supported; use application/fhir+ndjson (or application/ndjson, ndjson).",
                    expression="_outputFormat",
                )
        elif name == "_since":
            since = _since(raw)
        elif name == "_type":
            types = types or []
            for res_type in _split(raw):
                if res_type not in known_types:
                    reject(f"_type names {res_type!r}, which is not a FHIR R4 resource type this server has.", "_type")
                elif res_type not in types:
                    types.append(res_type)
        elif name == "_typeFilter":
            for query in _FILTER_SPLIT.split(raw):
                res_type, text = _type_filter(query, known_types)
                filters.setdefault(res_type, [])
                if text not in filters[res_type]:
                    filters[res_type].append(text)
        elif name == "_elements":
            for item in _split(raw):
                match = _ELEMENT.match(item)
                if match is None or (match.group(1) and match.group(1) not in known_types):
                    raise BadRequest(
                        f"_elements item {item!r} is not an element name; expected 'element' or 'Type.element' "
                        "(e.g. 'id,Patient.name').", expression="_elements",
                    )
                if item not in elements:
                    elements.append(item)
        elif name == "includeAssociatedData":
            for value in _split(raw):
                if value in ASSOCIATED_DATA:
                    provenance = True
                elif value in _KNOWN_ASSOCIATED or value.startswith("_"):
                    reject(f"includeAssociatedData value {value!r} is not supported; this server supports "
                           "LatestProvenanceResources.", "includeAssociatedData")
                else:
                    raise BadRequest(
                        f"includeAssociatedData value {value!r} is not a known code; expected LatestProvenanceResources "
                        "or RelevantProvenanceResources (or a custom code starting with '_').",
                        expression="includeAssociatedData",
                    )
        elif name == "patient":
            if not allow_patient or level == "system":
                raise BadRequest(
                    "The 'patient' parameter is for POST kick-offs of Patient- and Group-level exports "
                    "(/Patient/$export, /Group/<id>/$export), in a Parameters body.", expression="patient",
                )
            match = _PATIENT_REF.match(raw.strip())
            if match is None:
                raise BadRequest(f"'patient' reference {raw!r} is not a Patient reference (Patient/<id>).",
                                 expression="patient")
            patients = patients or {}
            patients[match.group(1)] = None  # a dict: ordered, and de-duplicated in linear time
        elif name in _GENERAL:
            continue
        else:
            reject(f"Parameter {name!r} is not supported by $export; supported: _outputFormat, _since, _type, "
                   "_typeFilter, _elements, includeAssociatedData" + (", patient" if allow_patient else "") + ".", name)
    if types is not None:
        for res_type in list(filters):
            if res_type not in types:
                reject(f"_typeFilter for {res_type} does not match any type in _type ({', '.join(types)}).", "_typeFilter")
                del filters[res_type]
        if not types:
            raise BadRequest("_type names no resource type this server has.", expression="_type")
    return ExportRequest(
        level=level, group_id=group_id, output_format=output_format, since=since,
        types=tuple(types) if types is not None else None,
        type_filters={k: tuple(v) for k, v in filters.items()}, elements=tuple(elements),
        patients=tuple(patients) if patients is not None else None, latest_provenance=provenance,
        warnings=tuple(warnings),
    )


def _since(raw: str) -> int:
    text = raw.strip().replace(" ", "+")  # a '+' offset that was not percent-encoded arrives as a space
    if "T" in text and not re.search(r"(Z|[+-]\d\d:\d\d)$", text):
        raise BadRequest(f"_since {raw!r} is not a FHIR instant: a time needs a zone (Z or +hh:mm).", expression="_since")
    try:
        return parse_fhir_date_range(text)[0]
    except ValueError:
        raise BadRequest(
            f"_since {raw!r} is not a FHIR instant; expected e.g. 2024-01-31T12:00:00Z.", expression="_since"
        ) from None


def _type_filter(raw: str, known_types: frozenset[str]) -> tuple[str, str]:
    res_type, sep, query = raw.strip().partition("?")
    if not sep or res_type not in known_types or not query:
        raise BadRequest(
            f"_typeFilter {raw!r} is not a search on a resource type; expected e.g. "
            "'Observation?category=laboratory'.", expression="_typeFilter",
        )
    pairs = parse_qsl(query, keep_blank_values=True)
    for key, _value in pairs:
        if key in RESULT_PARAMS or key.split(":")[0] in ("_include", "_revinclude"):
            raise BadRequest(f"_typeFilter {raw!r} uses {key}; result parameters are not allowed in a _typeFilter.",
                             expression="_typeFilter")
    try:
        parse_query(res_type, pairs, strict=True)
    except InvalidSearch as exc:
        raise BadRequest(f"_typeFilter {raw!r}: {exc.diagnostics}", expression="_typeFilter") from None
    return res_type, query

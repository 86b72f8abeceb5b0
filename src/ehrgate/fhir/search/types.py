"""The wire contract between search-parameter definitions, index extraction and the store.

A search parameter is declared once (``param_table.py``: code -> type -> path, facts from the FHIR R4
specification's SearchParameter resources). On every write, ``extract.extract_index`` turns a
resource into ``IndexRows``; the store writes them into one index table per kind, and the query
builder searches those tables. Normalisation functions used on both sides live in ``normalize.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "CompositeRow",
    "DateRow",
    "IndexRows",
    "NumberRow",
    "QuantityRow",
    "ReferenceRow",
    "SearchParam",
    "StringRow",
    "TokenRow",
    "UriRow",
]

# Types of search parameter, http://hl7.org/fhir/R4/search.html#ptypes
PARAM_TYPES = ("number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special")


@dataclass(frozen=True)
class SearchParam:
    code: str
    """The name used in the query string, e.g. ``birthdate``."""
    type: str
    """One of PARAM_TYPES."""
    resource: str
    """The resource type it belongs to (``Resource`` for _id, _lastUpdated, ...)."""
    paths: tuple[str, ...]
    """Simplified element paths from the spec's expression, without the leading resource type,
    e.g. ``("subject",)`` or ``("effectiveDateTime", "effectivePeriod")`` for a choice type;
    ``.`` separates steps; every step fans out over arrays."""
    targets: tuple[str, ...] = ()
    """For reference parameters: the resource types the reference may point to."""
    components: tuple[tuple[str, str], ...] = ()
    """For composite parameters: (component param code, sub-path relative to the composite's base)."""
    expression: str = ""
    """The FHIRPath expression as the specification writes it, for the CapabilityStatement."""
    definition: str = ""
    """Canonical URL of the SearchParameter, e.g. http://hl7.org/fhir/SearchParameter/Patient-birthdate."""


# Index rows. ``param`` is the search parameter code. Values are already normalised.
# Each row class is a NamedTuple whose fields are its index table's columns in order
# (store/sql.py INDEX_COLUMNS), so the store writes a row as its own values. A row is immutable,
# hashable and picklable, and it equals rows of the same type with the same values. Being a tuple,
# it also equals a plain tuple, or a row of another type, holding the same values. No code mixes
# row types in one set, dict or comparison: each IndexRows list holds one type.


class StringRow(NamedTuple):
    param: str
    norm: str
    """Case-folded, accents removed, whitespace collapsed (normalize.normalize_string)."""
    exact: str
    """The value as written (for :exact)."""


class TokenRow(NamedTuple):
    param: str
    system: str | None
    code: str | None
    text: str | None = None
    """Normalised display/text for :text (Coding.display, CodeableConcept.text, Identifier.type.text)."""
    type_system: str | None = None
    type_code: str | None = None
    """Identifier.type coding, for the :of-type modifier."""


class ReferenceRow(NamedTuple):
    param: str
    target_type: str | None
    target_id: str | None
    url: str | None = None
    """Absolute or canonical URL when the reference is not a local Type/id."""


class DateRow(NamedTuple):
    param: str
    low: int
    """Inclusive lower bound, milliseconds since 1970-01-01T00:00:00Z."""
    high: int
    """Inclusive upper bound, milliseconds since the epoch (last millisecond of the precision)."""


class NumberRow(NamedTuple):
    param: str
    value: float


class QuantityRow(NamedTuple):
    param: str
    value: float
    system: str | None
    code: str | None
    unit: str | None


class UriRow(NamedTuple):
    param: str
    uri: str


class CompositeRow(NamedTuple):
    """One pairing of a token with a quantity/token/string value (e.g. code-value-quantity)."""

    param: str
    system: str | None
    code: str | None
    value: float | None = None
    value_system: str | None = None
    value_code: str | None = None
    value_unit: str | None = None
    value_text: str | None = None


@dataclass
class IndexRows:
    strings: list[StringRow] = field(default_factory=list)
    tokens: list[TokenRow] = field(default_factory=list)
    references: list[ReferenceRow] = field(default_factory=list)
    dates: list[DateRow] = field(default_factory=list)
    numbers: list[NumberRow] = field(default_factory=list)
    quantities: list[QuantityRow] = field(default_factory=list)
    uris: list[UriRow] = field(default_factory=list)
    composites: list[CompositeRow] = field(default_factory=list)
    compartments: set[str] = field(default_factory=set)
    """Ids of the Patients whose compartment holds this resource (CompartmentDefinition patient)."""

"""What a conversion needs besides the message, and what it returns.

``ConversionOptions`` is per channel (the engine builds one from the channel's settings);
``ConversionResult`` is the transaction Bundle plus the counts of what the mapping did not use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["ConversionOptions", "ConversionResult"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class ConversionOptions:
    """Settings of one conversion.

    ``channel`` and ``message_ref`` go into ``meta.source`` and the Provenance. ``timezone`` (an IANA
    zone such as 'Europe/London', or 'UTC', or a fixed offset '+05:30') is the zone of HL7 times that
    carry no offset; FHIR requires one on every time. ``identifier_systems`` maps assigning-authority
    namespace IDs (CX-4.1, EI-2, HD-1) to URIs and ``code_systems`` coding system names (CWE-3) to
    URIs, both ahead of the built-in rules. ``patient_updates`` names the message types whose PID
    replaces the stored Patient (conditional update); other message types only link to the Patient,
    creating it when it is not known yet. ``received_at`` (a FHIR instant) stands in for an empty MSH-7.
    """

    channel: str = ""
    message_ref: str = ""
    timezone: str = "UTC"
    identifier_systems: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    code_systems: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    patient_updates: frozenset[str] = frozenset({"ADT"})
    received_at: str | None = None

    def __post_init__(self) -> None:
        from .dtm import zone

        zone(self.timezone)  # a ValueError naming the zone now, not at the first message


@dataclass
class ConversionResult:
    """A converted message: the FHIR R4 transaction Bundle and what the mapping left unused.

    ``ignored_segments`` counts segments no mapping reads (Z-segments, ROL, ...), by segment id;
    ``ignored_fields`` counts valued fields of mapped segments that no mapping reads, as 'PID-12'.
    """

    bundle: dict[str, Any]
    message_type: str
    control_id: str
    ignored_segments: Counter[str] = field(default_factory=Counter)
    ignored_fields: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        """The Bundle as JSON bytes. Numbers keep the digits the message sent ('1.50' is a Decimal
        here), so serialise with ``ehrgate.fhir.jsonio``, not ``json.dumps``, and read it back with
        ``jsonio.loads``."""
        from ..fhir.jsonio import dumps

        return dumps(self.bundle)

    @property
    def resource_counts(self) -> Counter[str]:
        return Counter(e["resource"]["resourceType"] for e in self.bundle.get("entry", []) if "resource" in e)

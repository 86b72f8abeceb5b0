"""Destinations, registered by type name (the ``type:`` of a channel's destination)."""

from __future__ import annotations

from .base import Context, Destination, Payload
from .fhir_store import FhirStoreDestination
from .file import FileDestination
from .http import FhirHttpDestination, HttpDestination
from .mllp import MllpDestination

__all__ = ["DESTINATIONS", "Context", "Destination", "Payload", "register_destination"]

DESTINATIONS: dict[str, type[Destination]] = {
    "fhir_store": FhirStoreDestination,
    "fhir_http": FhirHttpDestination,
    "http": HttpDestination,
    "mllp": MllpDestination,
    "file": FileDestination,
}


def register_destination(name: str, cls: type[Destination]) -> None:
    DESTINATIONS[name] = cls

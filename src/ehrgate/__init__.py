"""EHRGate: FHIR R4 API, SMART on FHIR authorization and an HL7 v2 engine in one program."""

from __future__ import annotations

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"

__all__ = ["FHIR_VERSION", "__version__"]

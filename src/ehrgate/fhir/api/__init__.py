"""The FHIR REST API: ``dispatch.FhirRoute`` picks a handler (``handlers.py``); ``render.py`` renders."""

from __future__ import annotations

from .dispatch import FhirRoute
from .handlers import FhirContext

__all__ = ["FhirContext", "FhirRoute"]

"""HL7 v2 ⇄ FHIR R4 conversion: pure functions, one module per message family.

    from ehrgate.convert import convert, hl7_to_fhir, ConversionOptions
    result = convert(parse(raw), ConversionOptions(channel="adt-in", timezone="Europe/London"))
    result.bundle            # a FHIR R4 transaction Bundle for process_transaction
    result.ignored_fields    # Counter({'PID-18': 1, ...}): what no mapping reads

Inbound (v2 → FHIR) follows the HL7 v2-to-FHIR IG's mapping tables: ``adt``, ``oru`` (ORU/OUL),
``orders`` (ORM/OML), ``siu``, ``vxu``, ``mdm``; datatypes in ``datatypes``, vocabularies in
``tables`` and ``codesystems``. Outbound (FHIR → v2) builders live in ``outbound``. See
docs/convert.md for identity, idempotency and the judgement calls.
"""

from __future__ import annotations

from .errors import ConversionError
from .messages import convert
from .options import ConversionOptions, ConversionResult
from .outbound import OutboundError, appointment_to_siu, patient_to_adt
from .step import hl7_to_fhir

__all__ = [
    "ConversionError",
    "ConversionOptions",
    "ConversionResult",
    "OutboundError",
    "appointment_to_siu",
    "convert",
    "hl7_to_fhir",
    "patient_to_adt",
]

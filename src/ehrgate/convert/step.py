"""The engine's ``hl7_to_fhir`` channel step: the same conversion the CLI runs, with the channel's
name and the message-store reference that ``meta.source`` and the Provenance point to.

The engine calls ``hl7_to_fhir(message, channel=..., message_ref=...)`` and stores
``result.bundle`` through ``ehrgate.fhir.bundles.process_transaction``. A ``ConversionError``
(an ``HL7Error``) moves the message to ERROR with ``str(exc)``; ``AckError.from_exception(exc)``
renders it as the ERR segment of an AE acknowledgment. ``result.ignored_segments`` and
``result.ignored_fields`` are the per-message counts to add to the channel's statistics.
"""

from __future__ import annotations

from ..hl7 import Message
from .messages import convert
from .options import ConversionOptions, ConversionResult

__all__ = ["hl7_to_fhir"]


def hl7_to_fhir(message: Message, *, channel: str, message_ref: str,
                options: ConversionOptions | None = None) -> ConversionResult:
    """Convert one message for ``channel``; ``options`` carries the channel's conversion settings
    (time zone, identifier and code system URIs), whose channel and reference these two replace."""
    base = options or ConversionOptions()
    if base.channel != channel or base.message_ref != message_ref:
        from dataclasses import replace

        base = replace(base, channel=channel, message_ref=message_ref)
    return convert(message, base)

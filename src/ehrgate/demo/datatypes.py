"""Small builders for FHIR R4 datatypes used by the demo generator.

They exist so every Coding, Quantity and dateTime the generator emits has one shape: canonical
system URI first, UCUM quantities always carrying ``system``/``code`` (US Core vital-signs and lab
profiles require both), and every time-of-day carrying a UTC offset, which FHIR requires whenever a
dateTime has hours (http://hl7.org/fhir/R4/datatypes.html#dateTime).
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from .vocab import UCUM, Code

JSON = dict[str, Any]


def new_id(rng: random.Random) -> str:
    """A version-4-shaped UUID drawn from ``rng``.

    Drawn from the seeded generator (never ``uuid.uuid4()``) so the same seed yields the same ids and
    re-loading the demo overwrites the same resources instead of duplicating them.
    """
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def coding(code: Code) -> JSON:
    return {"system": code.system, "code": code.code, "display": code.display}


def concept(*codes: Code, text: str | None = None) -> JSON:
    out: JSON = {"coding": [coding(c) for c in codes]}
    out["text"] = text if text is not None else codes[0].display
    return out


def quantity(value: float, unit: str, ucum: str) -> JSON:
    return {"value": value, "unit": unit, "system": UCUM, "code": ucum}


def ref(resource_type: str, resource_id: str, display: str | None = None) -> JSON:
    """A literal reference to a resource outside the current bundle (``Type/id``)."""
    out: JSON = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        out["display"] = display
    return out


def urn(resource_id: str) -> JSON:
    """A reference to another entry of the same transaction, by its ``urn:uuid:`` fullUrl."""
    return {"reference": f"urn:uuid:{resource_id}"}


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def utc_offset(day: date) -> str:
    """US Central time offset for ``day``: CDT from the 2nd Sunday of March to the 1st of November.

    The demo practice sits in Illinois; giving timestamps a real, seasonally changing offset (rather
    than ``Z``) exercises date search and display code the way real EHR feeds do.
    """
    dst = _nth_sunday(day.year, 3, 2) <= day < _nth_sunday(day.year, 11, 1)
    return "-05:00" if dst else "-06:00"


def fhir_datetime(moment: datetime) -> str:
    """A naive local (Central) time as a FHIR dateTime/instant with seconds and offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + utc_offset(moment.date())


def period(start: datetime, end: datetime) -> JSON:
    return {"start": fhir_datetime(start), "end": fhir_datetime(end)}


def xhtml(*paragraphs: str) -> JSON:
    """A generated Narrative; callers pass already-escaped XHTML fragments."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}

"""Assembling the transaction Bundle: identity, references, meta.source and the Provenance.

Every resource's identity comes from the message's business identifiers, so converting the same
message twice, or an update after a create, writes the same resources (issue 5, "Idempotent"):

* ``upsert`` — conditional update ``PUT Type?identifier=system|value``: the message is the source
  of truth for the resource (the Patient of an ADT message, an order, a report, an appointment);
* ``ensure`` — conditional create ``POST`` with ``ifNoneExist: identifier=system|value``: the message
  mentions the resource (a Practitioner, a Location, the Patient of a lab result) and must not
  overwrite what the source of truth wrote;
* ``keyed`` — ``PUT Type/<id>`` with an id derived from the owner's identity and a natural key, for
  resources without a business identifier of their own (an Observation is its report's result for
  one code, an allergy is the patient's allergy to one substance).

Conditional entries are serialised by the store's criteria lock, so two messages for one MRN never
create two Patients. Entries are sorted by (resource type rank, URL): every Bundle this package
produces takes those locks in one global order, so two conversions can never deadlock each other.

Full URLs are ``urn:uuid:`` UUIDv5 values of the identity, so the same message always yields the
same Bundle (useful to diff, test and cache).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any
from urllib.parse import quote

from .datatypes import Ctx
from .dtm import datetime_, instant
from .errors import REQUIRED_FIELD_MISSING, ConversionError
from .options import ConversionOptions
from .values import Seg

__all__ = ["NAMESPACE", "Builder", "criteria", "ref", "search_key", "token"]

JSON = dict[str, Any]

#: UUIDv5 namespace of every id this package derives.
NAMESPACE = uuid.UUID("6f3c2a56-8d0e-5b7e-9a61-5e0b8c1d2e47")
_NS_BYTES = NAMESPACE.bytes

_RANK = {name: n for n, name in enumerate((
    "Patient", "Organization", "Practitioner", "Location", "RelatedPerson", "Encounter", "Coverage", "Account",
    "AllergyIntolerance", "Condition", "Procedure", "ServiceRequest", "Specimen", "Observation", "DiagnosticReport",
    "Immunization", "Schedule", "Slot", "Appointment", "DocumentReference", "Provenance"))}
_PROVENANCE_TYPES = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def _escape(text: str) -> str:
    """Escape a token part for a search URL (http://hl7.org/fhir/R4/search.html#escaping)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


def token(system: str, value: str) -> str:
    return f"{_escape(system)}|{_escape(value)}"


def criteria(ident: JSON) -> str:
    """``identifier=system|value`` for an Identifier, percent-encoded for a request URL."""
    return "identifier=" + quote(token(ident.get("system", ""), ident["value"]), safe=":/|")


def search_key(ident: JSON) -> JSON:
    """The system and value of an Identifier: what a conditional request searches by."""
    return {k: ident[k] for k in ("system", "value") if k in ident}


def ref(url: str, display: str = "") -> JSON:
    out: JSON = {"reference": url}
    if display:
        out["display"] = display
    return out


class Builder:
    """Collects the entries of one message's Bundle."""

    def __init__(self, msh: Seg, options: ConversionOptions, ctx: Ctx, message_type: str) -> None:
        self.options = options
        self.ctx = ctx
        self.msh = msh
        self.message_type = message_type
        self.control_id = msh.text(10)
        self.sender = msh.text(4) or msh.text(3)
        channel = options.channel or "default"
        self.message_key = "|".join((channel, msh.text(3), msh.text(4), self.control_id))
        self.source = f"urn:ehrgate:channel:{quote(channel, safe='')}#{quote(self.control_id, safe='')}"
        self._entries: dict[str, JSON] = {}
        self._modes: dict[str, str] = {}
        self.event: Seg | None = None
        """The EVN segment, for the Provenance's occurrence time."""
        self.event_details: JSON = {}
        """The Provenance's reason, location and operator agents from EVN (``parties.event``)."""
        self.warnings: list[str] = []
        """Problems that did not stop the conversion (e.g. a patient without an identifier)."""
        self.used: set[int] = set()
        """Positions of the segments a mapping read (the rest are counted as ignored)."""

    def use(self, *segs: Seg | None) -> None:
        for seg in segs:
            if seg is not None:
                self.used.add(seg.index)

    # -- identity ---------------------------------------------------------------------------------

    def uid(self, key: str) -> str:
        """``str(uuid.uuid5(NAMESPACE, key))``, without building UUID objects (a hot path)."""
        digest = bytearray(hashlib.sha1(_NS_BYTES + key.encode()).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50
        digest[8] = (digest[8] & 0x3F) | 0x80
        h = digest.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _add(self, rtype: str, resource: JSON, url: str, request: JSON, mode: str) -> str:
        if url in self._entries:
            return url
        body = {"resourceType": rtype, "meta": {"source": self.source}}
        body.update((k, v) for k, v in resource.items() if k not in ("resourceType", "meta"))
        self._entries[url] = {"fullUrl": url, "resource": body, "request": request}
        self._modes[url] = mode
        return url

    def upsert(self, rtype: str, resource: JSON, ident: JSON) -> str:
        """Conditional update keyed by ``ident``; returns the entry's fullUrl."""
        q = criteria(ident)
        url = "urn:uuid:" + self.uid(f"{rtype}?{q}")
        return self._add(rtype, resource, url, {"method": "PUT", "url": f"{rtype}?{q}"}, "upsert")

    def ensure(self, rtype: str, resource: JSON, ident: JSON) -> str:
        """Conditional create keyed by ``ident`` (an existing match is linked, not changed)."""
        q = criteria(ident)
        url = "urn:uuid:" + self.uid(f"{rtype}?{q}")
        return self._add(rtype, resource, url, {"method": "POST", "url": rtype, "ifNoneExist": q}, "ensure")

    def keyed(self, rtype: str, resource: JSON, key: str) -> str:
        """Update-or-create at the id derived from ``key``."""
        rid = self.uid(f"{rtype}/{key}")
        url = "urn:uuid:" + rid
        body = {**resource, "id": rid}
        return self._add(rtype, body, url, {"method": "PUT", "url": f"{rtype}/{rid}"}, "keyed")

    def patch(self, rtype: str, target: str, ident: JSON, operations: list[JSON]) -> None:
        """A conditional JSON Patch (RFC 6902) of the resource ``ident`` finds, sent as the Binary a
        transaction carries a patch in (http://hl7.org/fhir/R4/http.html#patch). ``target`` is the
        entry that creates the resource when it is new, so the patch always finds exactly one."""
        q = criteria(ident)
        url = "urn:uuid:" + self.uid(f"{rtype}?{q}#patch")
        data = base64.b64encode(json.dumps(operations, separators=(",", ":")).encode()).decode()
        self._entries[url] = {"fullUrl": url,
                              "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                           "data": data},
                              "request": {"method": "PATCH", "url": f"{rtype}?{q}"}}
        self._modes[url] = "patch"
        self._modes[target] = "patched"

    def identity(self, rtype: str, resource: JSON, ident: JSON | None, fallback_key: str, *,
                 update: bool = True) -> str:
        """``upsert``/``ensure`` by ``ident`` when there is one, else ``keyed`` by ``fallback_key``."""
        if ident is not None:
            return self.upsert(rtype, resource, ident) if update else self.ensure(rtype, resource, ident)
        return self.keyed(rtype, resource, fallback_key)

    def resource(self, url: str) -> JSON:
        """The resource of an entry already added (to add elements found later in the message)."""
        return self._entries[url]["resource"]  # type: ignore[no-any-return]

    def has(self, url: str) -> bool:
        return url in self._entries

    # -- the Bundle -------------------------------------------------------------------------------

    def recorded(self) -> str:
        raw = self.msh.text(7)
        if raw:
            return instant(raw, "MSH-7", self.ctx)
        if self.options.received_at:
            return self.options.received_at
        raise ConversionError("MSH-7", "missing (expected the date/time of the message, YYYYMMDDHHMMSS)",
                              code=REQUIRED_FIELD_MISSING)

    def provenance(self) -> None:
        """One Provenance per message: what it wrote, when, from which sender and which stored message
        (HL7 v2-to-FHIR IG, MSH[Provenance-Source]; ``entity.what`` identifies the message-store entry)."""
        own = [u for u, m in self._modes.items()
               if m != "patch" and self._entries[u]["resource"]["resourceType"] != "Provenance"]
        written = [u for u in own if self._modes[u] != "ensure"] or own
        if not written:
            return
        event = self.message_type.split("^")
        what: JSON = {"display": f"HL7 v2 {self.message_type} message {self.control_id}".strip()}
        if self.options.message_ref:
            what["identifier"] = {"system": "urn:ehrgate:message-store", "value": self.options.message_ref}
        activity: JSON = {"text": f"message - {self.message_type}"}
        if len(event) > 1 and event[1]:
            activity["coding"] = [{"system": "http://terminology.hl7.org/CodeSystem/v2-0003", "code": event[1]}]
        resource: JSON = {"target": [ref(u) for u in written]}
        evn = self.event
        occurred = (evn.text(6) or evn.text(2)) if evn is not None else ""
        if occurred:
            resource["occurredDateTime"] = datetime_(occurred, evn.where(6 if evn.text(6) else 2), self.ctx)  # type: ignore[union-attr]
        resource.update({
            "recorded": self.recorded(),
            "activity": activity,
            "agent": [{"type": {"coding": [{"system": _PROVENANCE_TYPES, "code": "author"}]},
                       "who": {"display": self.sender or self.options.channel or "unknown sender"}}],
            "entity": [{"role": "source", "what": what}],
        })
        details = self.event_details
        if details:
            resource["agent"] += details.get("agent", [])
            resource.update((k, v) for k, v in details.items() if k != "agent")
        self.keyed("Provenance", resource, "message/" + self.message_key)

    def bundle(self) -> JSON:
        self.provenance()
        entries = sorted(self._entries.values(), key=lambda e: (
            _RANK.get(e["request"]["url"].split("?")[0].split("/")[0], 50), e["request"]["url"], e["fullUrl"]))
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

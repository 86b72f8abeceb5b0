"""AuditEvents for the authorization server (FHIR R4 AuditEvent; DICOM "User Authentication" type,
EHRGate subtypes). Pure builders; the server writes them through the FHIR store's write path in the
same transaction as the change they record.

Every event names who (user's fhirUser and/or the app), which app, which patient, what happened and
the outcome, and carries the grant id (``urn:ehrgate:grant``) and request id (``urn:ehrgate:request``)
as entities (``what.identifier`` systems ``urn:ehrgate:grant`` / ``urn:ehrgate:request``, and as
``entity.name``), so ``AuditEvent?entity-name=<grant id>`` ties a launch, its tokens and (from the FHIR
API, which sees the grant id in the token) its resource calls together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["SUBTYPES", "audit_event"]

SUBTYPE_SYSTEM = "urn:ehrgate:audit-subtype"
SUBTYPES = {
    "login": "User signed in",
    "logout": "User signed out",
    "launch": "EHR launch started",
    "authorize": "Authorization decision",
    "token-issue": "Token issued",
    "token-refresh": "Token refreshed",
    "token-revoke": "Token revoked",
    "consent": "Remembered approval changed",
    "app-registry": "App registry changed",
    "user-account": "User account changed",
}
# http://hl7.org/fhir/R4/valueset-audit-event-outcome.html
OUTCOMES = {"success": "0", "minor": "4", "serious": "8"}


def audit_event(
    subtype: str,
    *,
    outcome: str = "success",
    description: str = "",
    action: str = "E",
    client_id: str | None = None,
    user: str | None = None,
    patient: str | None = None,
    grant_id: str | None = None,
    request_id: str | None = None,
    actor: str | None = None,
    now: float,
) -> dict[str, Any]:
    """``user`` is a relative reference (``Practitioner/1``); ``patient`` a Patient id; ``actor``
    names who acted when they have no FHIR record (an administrator's username, ``cli:<OS user>``)."""
    agents: list[dict[str, Any]] = []
    if user:
        agents.append({"who": {"reference": user}, "requestor": True})
    elif actor:
        agents.append({"who": {"display": actor}, "altId": actor, "requestor": True})
    if client_id:
        agents.append({
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": "urn:ehrgate:client", "value": client_id}},
            "requestor": not user and not actor,
        })
    if not agents:
        agents.append({"who": {"display": "anonymous"}, "requestor": True})
    entities: list[dict[str, Any]] = []
    if patient:
        entities.append({"what": {"reference": f"Patient/{patient}"}, "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"}})
    if grant_id:
        entities.append({"what": {"identifier": {"system": "urn:ehrgate:grant", "value": grant_id}}, "name": grant_id,
                         "description": "SMART grant (authorization) id"})
    if request_id:
        entities.append({"what": {"identifier": {"system": "urn:ehrgate:request", "value": request_id}}, "name": request_id,
                         "description": "HTTP request id (X-Request-Id)"})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": SUBTYPE_SYSTEM, "code": subtype, "display": SUBTYPES[subtype]}],
        "action": action,
        "recorded": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": OUTCOMES[outcome],
        "agent": agents,
        "source": {"observer": {"display": "EHRGate authorization server"}},
    }
    if description:
        event["outcomeDesc"] = description
    if entities:
        event["entity"] = entities
    return event

"""The seam between the FHIR API and whoever authorizes requests (the ``smart`` package).

The FHIR API never parses tokens or scopes. For each request it asks the configured
``AccessPolicy`` for an ``Access`` — what this caller may do — and applies it the same way in
every interaction: reads, searches (including _include/_revinclude, chaining, _has),
$everything, history, transactions and bulk export. The policy module of the ``smart`` package
implements the protocol; ``OPEN`` is used when authorization is switched off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from .errors import Forbidden

__all__ = ["OPEN", "Access", "AccessPolicy", "INTERACTION_KINDS"]

# What an interaction needs, in SMART v2 terms: c(reate) r(ead) u(pdate) d(elete) s(earch).
INTERACTION_KINDS = {
    "read": "r", "vread": "r", "history": "r", "everything": "r",
    "search": "s", "create": "c", "update": "u", "patch": "u", "delete": "d",
}


@dataclass(frozen=True)
class Access:
    """The caller's rights for one request."""

    allowed: Callable[[str, str], bool] = field(default=lambda kind, res_type: True)
    """(kind letter from INTERACTION_KINDS, resource type) -> may the caller do it."""
    missing: Callable[[str, str], str] = field(default=lambda kind, res_type: "")
    """A sentence naming the scope that would have allowed it (for the 403 OperationOutcome)."""
    patient: str | None = None
    """Confine everything to this Patient's compartment (SMART patient/ scopes)."""
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """SMART v2 query-constrained scopes: resource type -> search criteria; a resource of that
    type is visible only if it matches at least one (e.g. ``category=laboratory``)."""
    subject: str = ""
    """Who is calling (for audit): fhirUser or client id."""
    client_id: str = ""
    grant_id: str = ""
    """The authorization (grant) the token belongs to; audit events carry it so one
    authorization's launch, token and resource calls can be found together."""
    realm: str | None = None
    """The realm of the bearer token the caller sent (its 401s name the same); None: no token, so a
    403 carries no ``WWW-Authenticate`` challenge."""

    @property
    def audited(self) -> bool:
        """Calls made with a token are audited; an open API (auth off) has nobody to attribute."""
        return bool(self.subject or self.client_id)

    def filters_for(self, res_type: str) -> tuple[str, ...]:
        """Query constraints for ``res_type`` (a ``*`` entry applies to every type)."""
        return self.filters.get(res_type, ()) + self.filters.get("*", ())

    def require(self, interaction: str, res_type: str) -> None:
        kind = INTERACTION_KINDS.get(interaction, "r")
        if not self.allowed(kind, res_type):
            reason = self.missing(kind, res_type) or f"The access token does not allow {interaction} on {res_type}."
            exc = Forbidden(reason)
            if self.realm is not None:  # RFC 6750 §3.1: the token lacks the scope the request needs
                exc.headers["WWW-Authenticate"] = f'Bearer realm="{self.realm}", error="insufficient_scope"'
            raise exc


OPEN = Access()

AccessPolicy = Callable[[Request], Awaitable[Access]]
"""Called once per FHIR request; raises Unauthorized (401) for a missing/invalid token."""


async def open_policy(request: Request) -> Access:
    return OPEN

"""The access policy: a validated token's context → the ``Access`` the FHIR API applies.

SMART App Launch 2.2 §Scopes: ``patient/`` scopes confine every interaction to the token's patient
compartment; ``user/`` scopes give what the signed-in user may see (a clinician: the whole store; a
patient user: their own compartment); ``system/`` scopes are for backend clients without a user.
v2 query-constrained scopes (``patient/Observation.rs?category=laboratory``) become ``filters``:
a resource of that type is visible only when it matches one of the constraints.

Pure: the token has already been verified (``tokens.py``) and its grant checked (``bearer.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from ..fhir.access import Access
from .scopes import LETTER_WORDS, ResourceScope, ScopeSet, parse_scopes

__all__ = ["TokenContext", "access_for"]


@dataclass(frozen=True)
class TokenContext:
    """What an access token stands for (claims of the JWT, after verification)."""

    client_id: str
    scope: str
    grant_id: str = ""
    sub: str = ""
    role: str = ""
    """``clinician``, ``patient``, ``admin`` for a user's token; ``""`` for a backend client."""
    fhir_user: str = ""
    patient: str | None = None
    encounter: str | None = None
    exp: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> ScopeSet:
        return parse_scopes(self.scope)

    @property
    def user_patient(self) -> str | None:
        """A patient user's own Patient id (from fhirUser ``…/Patient/<id>``)."""
        if self.role != "patient" or "Patient/" not in self.fhir_user:
            return None
        return self.fhir_user.rsplit("Patient/", 1)[1].split("/")[0] or None


def _usable(ctx: TokenContext, scopes: tuple[ResourceScope, ...]) -> tuple[ResourceScope, ...]:
    """Drop scopes the token cannot use: patient/ without a patient, system/ with a user."""
    out = []
    for s in scopes:
        if s.context == "patient" and not ctx.patient:
            continue
        if s.context == "system" and ctx.role:
            continue
        if s.context == "user" and not ctx.role:
            continue
        out.append(s)
    return tuple(out)


def access_for(ctx: TokenContext, *, realm: str = "") -> Access:
    """``realm``: the bearer challenge's realm, named in a 403 for insufficient scope (RFC 6750 §3.1)."""
    scopes = _usable(ctx, ctx.scopes.resource_scopes)

    verdicts: dict[tuple[str, str], bool] = {}  # asked on every request made with the token

    def allowed(kind: str, res_type: str) -> bool:
        verdict = verdicts.get((kind, res_type))
        if verdict is None:
            verdict = verdicts[(kind, res_type)] = any(s.allows(kind, res_type) for s in scopes)
        return verdict

    def missing(kind: str, res_type: str) -> str:
        word = LETTER_WORDS.get(kind, kind)
        context = "patient" if ctx.patient else ("user" if ctx.role else "system")
        return (
            f"The access token has no scope that allows {word} on {res_type}; "
            f"it would need e.g. {context}/{res_type}.{kind} (granted: {ctx.scope or 'none'})."
        )

    # Confinement: any patient/ scope confines the token to its patient (the narrower reading
    # when a token mixes patient/ and user/ scopes); a patient user's user/ scopes confine to
    # their own record.
    patient: str | None = None
    if any(s.context == "patient" for s in scopes):
        patient = ctx.patient
    elif ctx.role == "patient":
        patient = ctx.user_patient or "-"  # a patient user without a record sees nothing
    filters = _filters(scopes)
    subject = ctx.fhir_user or ctx.sub or ctx.client_id
    return Access(
        allowed=allowed, missing=missing, patient=patient, filters=filters, subject=subject, client_id=ctx.client_id,
        grant_id=ctx.grant_id, realm=realm,
    )


def _filters(scopes: tuple[ResourceScope, ...]) -> dict[str, tuple[str, ...]]:
    """Per resource type: the search criteria of its query-constrained read/search scopes, unless an
    unconstrained read/search scope for that type (or ``*``) exists."""
    readers = [s for s in scopes if s.perms & {"r", "s"}]
    unconstrained = {s.res_type for s in readers if not s.query}
    out: dict[str, list[str]] = {}
    for s in readers:
        if not s.query or s.res_type in unconstrained or "*" in unconstrained:
            continue
        criteria = urlencode(list(s.query), safe=":/|")
        out.setdefault(s.res_type, [])
        if criteria not in out[s.res_type]:
            out[s.res_type].append(criteria)
    return {k: tuple(v) for k, v in out.items()}


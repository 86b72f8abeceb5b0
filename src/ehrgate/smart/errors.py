"""OAuth 2.0 errors, one class per RFC 6749 error code (§4.1.2.1, §5.2), each able to render
itself as ``(status, body, headers)`` without a web framework.

    OAuthError (400)
    ├── InvalidRequest (400, invalid_request)
    ├── InvalidClient (401, invalid_client; always with WWW-Authenticate: Basic)
    ├── InvalidToken (401, invalid_token; always with WWW-Authenticate: Bearer; RFC 6750 §3.1)
    │   └── InsufficientScope (401 at the introspection endpoint, RFC 7662 §2.3; insufficient_scope)
    ├── InvalidGrant (400, invalid_grant)
    ├── UnauthorizedClient (400, unauthorized_client)
    ├── UnsupportedGrantType (400, unsupported_grant_type)
    ├── UnsupportedResponseType (400, unsupported_response_type)
    ├── InvalidScope (400, invalid_scope)
    ├── AccessDenied (403, access_denied)
    ├── LoginRequired, ConsentRequired, InteractionRequired (400; OpenID Connect prompt=none)
    ├── RequestNotSupported, RequestUriNotSupported, RegistrationNotSupported (400; OpenID Connect)
    ├── ServerError (500, server_error)
    ├── TemporarilyUnavailable (503, temporarily_unavailable)
    └── SlowDown (429, temporarily_unavailable; the token endpoint's per-client and per-address limits, with Retry-After)

``description`` is a sentence for the developer of the app (never a token or secret).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

__all__ = [
    "AccessDenied",
    "ConsentRequired",
    "InsufficientScope",
    "InteractionRequired",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "LoginRequired",
    "OAuthError",
    "RegistrationNotSupported",
    "RequestNotSupported",
    "RequestUriNotSupported",
    "ServerError",
    "SlowDown",
    "TemporarilyUnavailable",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    error = "invalid_request"
    status = 400

    def __init__(self, description: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description or self.error)
        self.description = description
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out

    def render(self) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json", **NO_STORE, **self.headers}
        return self.status, json.dumps(self.body()).encode(), headers

    def redirect_query(self, state: str | None) -> str:
        """The query string added to the app's redirect_uri (RFC 6749 §4.1.2.1)."""
        params = self.body()
        if state is not None:
            params["state"] = state
        return urlencode(params)


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    """401 with WWW-Authenticate always (RFC 7235 §3.1: a 401 names a scheme; RFC 6749 §5.2)."""

    error = "invalid_client"
    status = 401

    def __init__(self, description: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description, headers={"WWW-Authenticate": 'Basic realm="token"', **(headers or {})})


class InvalidToken(OAuthError):
    """A bearer token presented to the authorization server (the introspection endpoint) that is not
    valid: 401 with a Bearer challenge in ``realm`` (RFC 6750 §3, §3.1)."""

    error = "invalid_token"
    status = 401

    def __init__(self, description: str, *, realm: str) -> None:
        super().__init__(description, headers={"WWW-Authenticate": f'Bearer realm="{realm}", error="{self.error}"'})


class InsufficientScope(InvalidToken):
    """RFC 7662 §2.3: a bearer token without the privileges to introspect is a 401 (not RFC 6750's 403)."""

    error = "insufficient_scope"


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class AccessDenied(OAuthError):
    error = "access_denied"
    status = 403


class LoginRequired(OAuthError):
    """OpenID Connect Core §3.1.2.6: ``prompt=none`` and nobody is signed in."""

    error = "login_required"


class ConsentRequired(OAuthError):
    """OpenID Connect Core §3.1.2.6: ``prompt=none`` and the user would have to approve the app."""

    error = "consent_required"


class InteractionRequired(OAuthError):
    """OpenID Connect Core §3.1.2.6: ``prompt=none`` and the user would have to choose (a patient)."""

    error = "interaction_required"


class RequestNotSupported(OAuthError):
    """OpenID Connect Core §6.1: a ``request`` (request object) this server does not support."""

    error = "request_not_supported"


class RequestUriNotSupported(OAuthError):
    """OpenID Connect Core §6.2: a ``request_uri`` this server does not support."""

    error = "request_uri_not_supported"


class RegistrationNotSupported(OAuthError):
    """OpenID Connect Core §7.2.1: a ``registration`` parameter this server does not support."""

    error = "registration_not_supported"


class ServerError(OAuthError):
    error = "server_error"
    status = 500


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status = 503


class SlowDown(TemporarilyUnavailable):
    status = 429

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)})

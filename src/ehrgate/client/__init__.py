"""``ehrgate.client``: a Python SMART App Launch 2.2 client — discovery, PKCE, EHR and standalone
launch, refresh, SMART Backend Services, typed errors. Depends on nothing else in EHRGate."""

from __future__ import annotations

from ._errors import (
    AuthorizationError,
    DiscoveryError,
    SmartClientError,
    StateMismatch,
    TokenRequestError,
    TransportError,
)
from ._smart import AuthorizationRequest, SmartClient, SmartConfiguration, TokenSet, pkce_pair
from ._transport import HttpResponse, Transport, UrllibTransport

__all__ = [
    "AuthorizationError",
    "AuthorizationRequest",
    "DiscoveryError",
    "HttpResponse",
    "SmartClient",
    "SmartClientError",
    "SmartConfiguration",
    "StateMismatch",
    "TokenRequestError",
    "TokenSet",
    "Transport",
    "TransportError",
    "UrllibTransport",
    "pkce_pair",
]

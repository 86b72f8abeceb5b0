"""Errors of the SMART client. The tree:

    SmartClientError            anything this client raises
    ├── TransportError          the server could not be reached or answered garbage
    ├── DiscoveryError          no usable .well-known/smart-configuration
    ├── AuthorizationError      the authorize redirect carried ``error=`` (RFC 6749 §4.1.2.1)
    │   └── StateMismatch       the redirect's ``state`` is not the one sent (possible CSRF)
    └── TokenRequestError       the token endpoint answered an error (RFC 6749 §5.2)
"""

from __future__ import annotations

__all__ = ["AuthorizationError", "DiscoveryError", "SmartClientError", "StateMismatch", "TokenRequestError", "TransportError"]


class SmartClientError(Exception):
    pass


class TransportError(SmartClientError):
    pass


class DiscoveryError(SmartClientError):
    pass


class AuthorizationError(SmartClientError):
    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


class StateMismatch(AuthorizationError):
    def __init__(self) -> None:
        super().__init__("state_mismatch", "The redirect's state does not match the request; start the launch again.")


class TokenRequestError(SmartClientError):
    def __init__(self, status: int, error: str, description: str = "") -> None:
        super().__init__(f"{status} {error}: {description}" if description else f"{status} {error}")
        self.status = status
        self.error = error
        self.description = description

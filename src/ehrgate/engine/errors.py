"""Engine errors. Each names the thing, the bad value and what to do.

    EngineError
    ├── ChannelConfigError (a channel declaration in ehrgate.yaml that cannot be used)
    ├── StepError (a filter or transformer failed on a message; the message goes to ERROR)
    ├── DeliveryError (a destination failed; retried with backoff)
    │   └── PermanentDeliveryError (a destination refused; no retry: ERROR at once)
    └── UnknownChannel (a channel name that is not declared)
"""

from __future__ import annotations

__all__ = [
    "ChannelConfigError",
    "DeliveryError",
    "EngineError",
    "PermanentDeliveryError",
    "StepError",
    "UnknownChannel",
]


class EngineError(Exception):
    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ChannelConfigError(EngineError, ValueError):
    """Raised at start (or deploy) for a channel declaration that cannot be used."""


class StepError(EngineError):
    """A pipeline step failed on one message."""


class DeliveryError(EngineError):
    """A delivery attempt failed in a way that may pass on a later attempt (down, timeout, 5xx)."""

    retry = True


class PermanentDeliveryError(DeliveryError):
    """A delivery the destination refused (AE/AR, 4xx, invalid bundle): retrying cannot help."""

    retry = False


class UnknownChannel(EngineError, LookupError):
    """A channel name that ehrgate.yaml does not declare."""

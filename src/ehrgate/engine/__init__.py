"""The HL7 v2 integration engine: channels, sources, destinations, durable queue, message store.

A channel is source → filter → transformer → destinations, declared in ehrgate.yaml (docs/engine.md).
Received messages are committed to the database before any ACK leaves (group commit); processing
and delivery run from the durable queue with bounded retries, so nothing ACKed is lost.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .boot import DEMO_CHANNEL, demo_channel, open_engine, open_messages
    from .config import ChannelConfig, load_channels
    from .errors import (
        ChannelConfigError,
        DeliveryError,
        EngineError,
        PermanentDeliveryError,
        StepError,
        UnknownChannel,
    )
    from .pipeline import Pipeline, PipelineResult
    from .runner import Engine
    from .steps import Work, register_step
    from .store import STATUSES, MessageStore, SearchQuery

# Each name from the module that defines it, on first use (PEP 562): ``ehrgate messages search``
# needs the message store, not the runner, its destinations (httpx) and alerts - ~0.6 s of imports.
_WHERE = {
    "DEMO_CHANNEL": "boot", "demo_channel": "boot", "open_engine": "boot", "open_messages": "boot",
    "ChannelConfig": "config", "load_channels": "config",
    "ChannelConfigError": "errors", "DeliveryError": "errors", "EngineError": "errors",
    "PermanentDeliveryError": "errors", "StepError": "errors", "UnknownChannel": "errors",
    "Pipeline": "pipeline", "PipelineResult": "pipeline", "Engine": "runner",
    "Work": "steps", "register_step": "steps",
    "STATUSES": "store", "MessageStore": "store", "SearchQuery": "store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEMO_CHANNEL",
    "STATUSES",
    "ChannelConfig",
    "ChannelConfigError",
    "DeliveryError",
    "Engine",
    "EngineError",
    "MessageStore",
    "PermanentDeliveryError",
    "Pipeline",
    "PipelineResult",
    "SearchQuery",
    "StepError",
    "UnknownChannel",
    "Work",
    "demo_channel",
    "load_channels",
    "open_engine",
    "open_messages",
    "register_step",
]

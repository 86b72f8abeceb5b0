"""The HL7 v2 integration engine: channels, sources, destinations, durable queue, message store.

A channel is source → filter → transformer → destinations, declared in ehrgate.yaml (docs/engine.md).
Received messages are committed to the database before any ACK leaves (group commit); processing
and delivery run from the durable queue with bounded retries, so nothing ACKed is lost.
"""

from __future__ import annotations

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

"""Building the engine for a server process from its settings (channels of ehrgate.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .config import ChannelConfig, load_channels
from .errors import ChannelConfigError
from .steps import hl7_to_fhir_available
from .store import MessageStore

if TYPE_CHECKING:
    from .runner import Engine

__all__ = ["DEMO_CHANNEL", "demo_channel", "open_engine", "open_messages"]

DEMO_CHANNEL = "mllp-in"


def demo_channel(host: str, port: int) -> dict[str, Any]:
    """The built-in channel of ``ehrgate demo``: MLLP → (HL7→FHIR once it exists) → the FHIR store."""
    spec: dict[str, Any] = {
        "description": "Demo: MLLP in, FHIR store out, ACK once stored.",
        "source": {"type": "mllp", "host": host, "port": port},
        "ack": "on_receive",
        "destinations": {"fhir-store": {"type": "fhir_store"}},
    }
    if hl7_to_fhir_available():
        spec["transform"] = [{"step": "hl7_to_fhir"}]
    return spec


def open_messages(fhir_store: Any) -> MessageStore:
    """The message store on the FHIR store's database, with its own (synchronous=FULL) connections
    and, on SQLite, the FHIR store's memory-map size (setting ``sqlite_mmap_mb``)."""
    engine = fhir_store.engine
    mmap = None
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            mmap = int(conn.exec_driver_sql("PRAGMA mmap_size").scalar_one())
    return MessageStore.open(engine.url.render_as_string(hide_password=False), sqlite_mmap_bytes=mmap)


def open_engine(settings: Any, fhir_store: Any, *, extra: Mapping[str, Any] | None = None) -> Engine:
    """An Engine for ``settings`` (not started). ``extra`` adds channel declarations (the demo's).
    Raises ChannelConfigError with every problem of ``channels:``."""
    from .runner import Engine  # here: ``open_messages`` alone (the CLI) needs none of the runner
    path = getattr(settings, "path", None)
    base = Path(path).resolve().parent if path else Path.cwd()

    def loader() -> dict[str, ChannelConfig]:
        config: Mapping[str, Any] = settings.config
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    config = yaml.safe_load(fh) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ChannelConfigError(f"Config file '{path}' cannot be read again: {exc}") from None
        channels = dict(config.get("channels") or {}) if isinstance(config, Mapping) else {}
        channels.update(extra or {})
        return load_channels({"channels": channels}, base, source=str(path) if path else "ehrgate.yaml")

    channels = loader()
    return Engine(open_messages(fhir_store), channels, fhir_store=fhir_store, settings=settings, loader=loader,
                  owns_messages=True)

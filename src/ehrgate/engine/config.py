"""Channel declarations from ``ehrgate.yaml`` (``channels:``), validated at start with clear errors.

The format is documented in docs/engine.md. Every problem names the channel, the key, the bad
value and what is expected; all problems are collected and reported together.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hl7 import HL7Error, parse
from .errors import ChannelConfigError
from .retry import RetryPolicy

__all__ = ["AlertRules", "ChannelConfig", "DestinationConfig", "SourceConfig", "check_tls", "known_options",
           "load_channels", "tls_files"]

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SOURCE_TYPES = ("mllp", "http", "directory")
SOURCE_OPTIONS: dict[str, tuple[str, ...]] = {
    "mllp": ("host", "port", "tls", "idle_timeout", "frame_timeout", "lone_fs_grace", "max_connections",
             "max_message_bytes"),
    "http": ("max_message_bytes",),
    "directory": ("path", "pattern", "interval", "min_age"),
}
"""The options of each source type besides ``type``."""
SERVER_TLS = ("ca", "cert", "client_auth", "key")
"""The keys of an MLLP source's ``tls``."""
TLS_FILES = ("ca", "cert", "key")
ACK_MODES = ("on_receive", "on_processed")


@dataclass(frozen=True)
class SourceConfig:
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    type: str
    options: Mapping[str, Any]
    retry: RetryPolicy
    workers: int
    timeout: float


@dataclass(frozen=True)
class AlertRules:
    queue_depth: int | None = None
    oldest_queued_age: float | None = None
    errors: int | None = None
    error_window: float = 300.0
    webhook: str | None = None
    repeat_after: float = 3600.0


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    source: SourceConfig
    ack: str = "on_receive"
    ack_timeout: float = 30.0
    ordered: bool = False
    order_by: str | None = None
    workers: int | None = None
    """The channel's ``workers``: the default of its destinations that set none (1 when neither does)."""
    duplicates: str = "skip"
    retention_days: float | None = None
    filters: tuple[Any, ...] = ()
    transformers: tuple[Any, ...] = ()
    destinations: tuple[DestinationConfig, ...] = ()
    alerts: AlertRules = AlertRules()
    base_dir: Path = Path(".")
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _choices(names: Collection[str]) -> str:
    items = sorted(names)
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)


def known_options(options: Mapping[str, Any], allowed: Collection[str], what: str, *, prefix: str = "") -> None:
    """Raise ChannelConfigError naming the keys of ``options`` that ``what`` ('the mllp destination')
    does not take, and the ones it does. A misspelt key must not be dropped silently: ``valu:`` on
    set_field emptied the field, ``tsl:`` on an MLLP source received in plain text."""
    unknown = sorted(str(k) for k in options if k not in allowed)
    if not unknown:
        return
    names = ", ".join(repr(prefix + k) for k in unknown)
    verb = "are" if len(unknown) > 1 else "is"
    raise ChannelConfigError(f"option{'s' if len(unknown) > 1 else ''} {names} {verb} not known to {what}. "
                             f"Expected {_choices(allowed) if allowed else 'no options'}.")


def tls_files(tls: Any) -> dict[str, Any]:
    """The files of a ``tls:`` option by name ('tls.ca'): what a source or destination reads at start."""
    if not isinstance(tls, Mapping):
        return {}
    return {f"tls.{key}": tls[key] for key in TLS_FILES if tls.get(key) is not None}


def check_tls(value: Any, allowed: Collection[str], what: str) -> None:
    """``tls:`` of a source or destination: true/false, or a mapping of ``allowed`` keys - the files
    (ca, cert, key) and the flags (verify, client_auth). Raises ChannelConfigError."""
    if value is None or isinstance(value, bool):
        return
    if not isinstance(value, Mapping):
        raise ChannelConfigError(f"option 'tls' has value {value!r}. Expected true or a mapping of "
                                 f"{_choices(allowed).replace(' or ', ' and ')}.")
    known_options(value, allowed, what, prefix="tls.")
    for key in TLS_FILES:
        if key in value and not (isinstance(value[key], str) and value[key]):
            raise ChannelConfigError(f"option 'tls.{key}' has value {value[key]!r}. Expected the path of a PEM file.")
    for key in ("verify", "client_auth"):
        if key in value and not isinstance(value[key], bool):
            raise ChannelConfigError(f"option 'tls.{key}' has value {value[key]!r}. Expected true or false.")


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)


def _number(p: _Problems, where: str, value: Any, *, minimum: float = 0, integer: bool = False) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    if ok and integer and not float(value).is_integer():
        ok = False
    if not ok:
        kind = "a whole number" if integer else "a number"
        p.add(f"{where} has value {value!r}. Expected {kind} of at least {minimum}.")
        return None
    return int(value) if integer else float(value)


_PROBE = parse("MSH|^~\\&|\r")


def _readable(p: _Problems, where: str, value: Any, base: Path) -> None:
    """A file read at start (TLS certificate, key or CA, a private key): it must be readable now,
    rather than fail the start with an error that names no channel, option or path."""
    if not isinstance(value, str) or not value:
        return  # the option's own check names the bad value
    path = Path(value) if Path(value).is_absolute() else base / value
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        p.add(f"{where} has value {value!r}: {path} cannot be read ({exc.strerror}). Expected a readable file "
              "(relative paths are read from the config file's directory).")


def _path(p: _Problems, where: str, value: Any) -> str | None:
    if not isinstance(value, str):
        p.add(f"{where} has value {value!r}. Expected an HL7 terse path such as 'PID-3.1'.")
        return None
    try:
        _PROBE.get(value)  # the public way to check a terse path: PathError when it is malformed
    except HL7Error as exc:
        p.add(f"{where} has value {value!r}: {exc.message}.")
        return None
    return value


def _retry(p: _Problems, where: str, value: Any) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    if not isinstance(value, Mapping):
        p.add(f"{where} has value {value!r}. Expected a mapping with max_attempts, max_age, base_delay, max_delay.")
        return RetryPolicy()
    unknown = set(value) - {"max_attempts", "max_age", "base_delay", "max_delay"}
    if unknown:
        p.add(f"{where} has unknown key(s) {', '.join(sorted(map(str, unknown)))}. Expected max_attempts, "
              "max_age, base_delay, max_delay.")
    d = RetryPolicy()
    attempts = _number(p, f"{where}.max_attempts", value.get("max_attempts", d.max_attempts), integer=True)
    age = _number(p, f"{where}.max_age", value.get("max_age", d.max_age))
    base = _number(p, f"{where}.base_delay", value.get("base_delay", d.base_delay), minimum=0.001)
    cap = _number(p, f"{where}.max_delay", value.get("max_delay", d.max_delay), minimum=0.001)
    if attempts == 0 and age == 0:
        p.add(f"{where} sets neither max_attempts nor max_age. Expected at least one limit (a message that "
              "can never be delivered must end in ERROR, not retry forever).")
    return RetryPolicy(attempts if attempts is not None else d.max_attempts, age if age is not None else d.max_age,
                       base or d.base_delay, cap or d.max_delay)


def _steps(p: _Problems, where: str, value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, list):
        p.add(f"{where} has value {value!r}. Expected a list of steps (import paths or mappings with 'step').")
        return ()
    out = []
    for i, spec in enumerate(value):
        if isinstance(spec, str) or (isinstance(spec, Mapping) and ("step" in spec or "function" in spec)):
            out.append(spec)
        else:
            p.add(f"{where}[{i}] has value {spec!r}. Expected an import path ('package.module:function') or a "
                  "mapping with 'step: NAME' (a built-in step) or 'function: PATH'.")
    return tuple(out)


_CHANNEL_KEYS = {"source", "ack", "ack_timeout", "ordered", "order_by", "workers", "duplicates", "retention_days",
                 "filter", "transform", "destinations", "alerts", "description"}
_DEST_KEYS_COMMON = {"type", "retry", "workers", "timeout"}


def _destinations(p: _Problems, where: str, value: Any, known: Mapping[str, Any],
                  base: Path, workers: int | None = None) -> tuple[DestinationConfig, ...]:
    """``workers``: the channel's, the default of destinations that set none (else 1)."""
    if not isinstance(value, Mapping) or not value:
        p.add(f"{where} has value {value!r}. Expected a mapping of destination name to its settings, e.g. "
              "{store: {type: fhir_store}}.")
        return ()
    out = []
    for name, spec in value.items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not NAME.match(name):
            p.add(f"{where} has destination name {name!r}. Expected lower-case letters, digits, '-' or '_'.")
            continue
        if not isinstance(spec, Mapping):
            p.add(f"{here} has value {spec!r}. Expected a mapping with at least 'type'.")
            continue
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in known:
            p.add(f"{here}.type has value {kind!r}. Expected one of: {', '.join(sorted(known))}.")
            continue
        n = _number(p, f"{here}.workers", spec["workers"], minimum=1, integer=True) if "workers" in spec else None
        timeout = _number(p, f"{here}.timeout", spec.get("timeout", 30), minimum=0.1) or 30.0
        options = {k: v for k, v in spec.items() if k not in _DEST_KEYS_COMMON}
        try:
            known[kind].check(options)
        except ChannelConfigError as exc:
            p.add(f"{here}: {exc.message}")
        for option, path in known[kind].files(options).items():
            _readable(p, f"{here}.{option}", path, base)
        out.append(DestinationConfig(name, kind, options, _retry(p, f"{here}.retry", spec.get("retry")),
                                     n or workers or 1, timeout))
    return tuple(out)


def _source(p: _Problems, where: str, value: Any, base: Path) -> SourceConfig:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping) or value.get("type") not in SOURCE_TYPES:
        p.add(f"{where} has value {value!r}. Expected a mapping whose 'type' is one of: {', '.join(SOURCE_TYPES)}.")
        return SourceConfig("http")
    kind = value["type"]
    opts = {k: v for k, v in value.items() if k != "type"}
    try:
        known_options(opts, SOURCE_OPTIONS[kind], f"the {kind} source")
    except ChannelConfigError as exc:
        p.add(f"{where}: {exc.message}")
    if kind == "mllp":
        _number(p, f"{where}.port", opts.get("port"), integer=True)
        for key in ("idle_timeout", "frame_timeout", "max_connections", "max_message_bytes"):
            if key in opts:
                _number(p, f"{where}.{key}", opts[key], minimum=1)
        if "lone_fs_grace" in opts:
            _number(p, f"{where}.lone_fs_grace", opts["lone_fs_grace"])
        tls = opts.get("tls")
        if tls is not None and (not isinstance(tls, Mapping) or not tls.get("cert") or not tls.get("key")):
            p.add(f"{where}.tls has value {tls!r}. Expected a mapping with 'cert' and 'key' files (and 'ca' "
                  "with 'client_auth: true' for mutual TLS).")
        elif tls is not None:
            try:
                check_tls(tls, SERVER_TLS, "the mllp source")
            except ChannelConfigError as exc:
                p.add(f"{where}: {exc.message}")
            if tls.get("client_auth") is True and not tls.get("ca"):
                p.add(f"{where}.tls has 'client_auth: true' without 'ca'. Expected 'ca': the CA file that signed "
                      "your senders' client certificates (without it, no certificate can be checked and every "
                      "sender is refused in the TLS handshake).")
            for option, path in tls_files(tls).items():
                _readable(p, f"{where}.{option}", path, base)
    elif kind == "http" and "max_message_bytes" in opts:
        _number(p, f"{where}.max_message_bytes", opts["max_message_bytes"], minimum=1)
    elif kind == "directory":
        if not isinstance(opts.get("path"), str):
            p.add(f"{where}.path has value {opts.get('path')!r}. Expected the directory to poll.")
        if "interval" in opts:
            _number(p, f"{where}.interval", opts["interval"], minimum=0.05)
        if "min_age" in opts:
            _number(p, f"{where}.min_age", opts["min_age"], minimum=0)
    return SourceConfig(kind, opts)


def _alerts(p: _Problems, where: str, value: Any) -> AlertRules:
    if value is None:
        return AlertRules()
    if not isinstance(value, Mapping):
        p.add(f"{where} has value {value!r}. Expected a mapping (queue_depth, oldest_queued_age, errors, ...).")
        return AlertRules()
    allowed = {"queue_depth", "oldest_queued_age", "errors", "error_window", "webhook", "repeat_after"}
    for key in set(value) - allowed:
        p.add(f"{where} has unknown key {key!r}. Expected one of: {', '.join(sorted(allowed))}.")
    def num(key: str, integer: bool = False) -> Any:
        return _number(p, f"{where}.{key}", value[key], integer=integer) if key in value else None
    webhook = value.get("webhook")
    if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
        p.add(f"{where}.webhook has value {webhook!r}. Expected an http:// or https:// URL.")
        webhook = None
    return AlertRules(num("queue_depth", True), num("oldest_queued_age"), num("errors", True),
                      num("error_window") or 300.0, webhook, num("repeat_after") or 3600.0)


def load_channels(config: Mapping[str, Any], base_dir: Path | str = ".", *,
                  source: str = "ehrgate.yaml") -> dict[str, ChannelConfig]:
    """Validate ``channels:`` of a parsed ehrgate.yaml. Raises ChannelConfigError listing every
    problem; ``source``: the file named in that error."""
    from .destinations import DESTINATIONS
    from .steps import resolve_steps

    section = config.get("channels") or {}
    p = _Problems()
    if not isinstance(section, Mapping):
        raise ChannelConfigError(f"'channels' has value {section!r}. Expected a mapping of channel name to channel.")
    out: dict[str, ChannelConfig] = {}
    base = Path(base_dir)
    for name, spec in section.items():
        where = f"Channel '{name}'"
        if not isinstance(name, str) or not NAME.match(name):
            p.add(f"Channel name {name!r} is not valid. Expected lower-case letters, digits, '-' or '_' "
                  "(at most 64, starting with a letter or digit).")
            continue
        if not isinstance(spec, Mapping):
            p.add(f"{where} has value {spec!r}. Expected a mapping with source and destinations.")
            continue
        for key in set(spec) - _CHANNEL_KEYS:
            p.add(f"{where} has unknown key {key!r}. Expected one of: {', '.join(sorted(_CHANNEL_KEYS))}.")
        ack = spec.get("ack", "on_receive")
        if ack not in ACK_MODES:
            p.add(f"{where}: ack has value {ack!r}. Expected on_receive or on_processed.")
        duplicates = spec.get("duplicates", "skip")
        if duplicates not in ("skip", "accept"):
            p.add(f"{where}: duplicates has value {duplicates!r}. Expected skip or accept.")
        ordered = spec.get("ordered", False)
        if not isinstance(ordered, bool):
            p.add(f"{where}: ordered has value {ordered!r}. Expected true or false.")
            ordered = False
        order_by = _path(p, f"{where}: order_by", spec["order_by"]) if spec.get("order_by") is not None else None
        if order_by and not ordered:
            p.add(f"{where}: order_by is set but ordered is not true. Expected 'ordered: true' with it.")
        retention = spec.get("retention_days")
        if retention is not None:
            retention = _number(p, f"{where}: retention_days", retention, minimum=0.0001)
        filters = _steps(p, f"{where}: filter", spec.get("filter"))
        transformers = _steps(p, f"{where}: transform", spec.get("transform"))
        workers = (_number(p, f"{where}: workers", spec["workers"], minimum=1, integer=True)
                   if spec.get("workers") is not None else None)
        dests = _destinations(p, f"{where}: destinations", spec.get("destinations"), DESTINATIONS, base, workers)
        cfg = ChannelConfig(
            name=name,
            source=_source(p, f"{where}: source", spec.get("source"), base),
            ack=ack,
            ack_timeout=_number(p, f"{where}: ack_timeout", spec.get("ack_timeout", 30), minimum=0.1) or 30.0,
            ordered=ordered,
            order_by=order_by,
            workers=workers,
            duplicates=duplicates,
            retention_days=retention,
            filters=filters,
            transformers=transformers,
            destinations=dests,
            alerts=_alerts(p, f"{where}: alerts", spec.get("alerts")),
            base_dir=base,
            raw=spec,
        )
        steps: list[str] = []
        resolve_steps(cfg, steps)
        for problem in steps:
            p.add(f"{where}: {problem}")
        out[name] = cfg
    ports: dict[tuple[str, int], str] = {}
    for cfg in out.values():
        if cfg.source.type == "mllp" and isinstance(cfg.source.options.get("port"), int) and cfg.source.options["port"]:
            key = (str(cfg.source.options.get("host", "127.0.0.1")), cfg.source.options["port"])
            if key in ports:
                p.add(f"Channel '{cfg.name}': source port {key[1]} is already used by channel '{ports[key]}'. "
                      "Expected one MLLP channel per port.")
            ports[key] = cfg.name
    if p.items:
        raise ChannelConfigError(f"The channels of {source} are not valid:\n  - " + "\n  - ".join(p.items))
    return out

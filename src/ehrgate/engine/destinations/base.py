"""What every destination shares: the payload it is given, the context, templates, TLS contexts."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...hl7 import HL7Error, parse
from ..config import TLS_FILES, DestinationConfig, tls_files
from ..errors import ChannelConfigError
from ..queue import Delivered

__all__ = ["Context", "Destination", "Payload", "render", "tls_context"]


@dataclass(frozen=True, slots=True)
class Payload:
    """The message as a destination receives it: the transformed ER7 (or raw) and the FHIR bundle."""

    message_id: int
    channel: str
    body: bytes
    bundle: bytes | None
    msg_type: str
    control_id: str
    trace: str | None = None
    """The message's stored W3C traceparent (tracing on): its delivery spans join that trace."""


@dataclass
class Context:
    """What destinations may need from the running program."""

    fhir_store: Any = None
    known_types: frozenset[str] = frozenset()
    base_dir: Path = Path(".")


class Destination:
    """One configured destination. ``deliver`` returns a Delivered; it raises nothing it can avoid
    (an unexpected exception counts as a retryable failure, logged with the message id)."""

    transactional = False
    """True when delivery writes to the application database, in the same transaction as the
    queue's bookkeeping (``deliver_in``): such a destination never delivers a message twice."""

    def __init__(self, cfg: DestinationConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.name = cfg.name

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        """Raise ChannelConfigError for options that cannot work (called at start): unknown keys
        first (``known_options``), then bad values."""

    @classmethod
    def files(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The files the destination reads when it starts, by option (``{'tls.ca': 'certs/ca.pem'}``):
        ``load_channels`` checks that each can be read, relative to the config file's directory."""
        return tls_files(options.get("tls"))

    async def deliver(self, payload: Payload) -> Delivered:
        raise NotImplementedError

    def deliver_in(self, payload: Payload, finish: Callable[[Any, Delivered], Any]) -> Delivered:
        """Transactional destinations: deliver and call ``finish(conn, result)`` inside the write."""
        raise NotImplementedError

    batch_size = 1
    """Above 1 (transactional destinations only): the worker hands up to this many queued messages
    at a time to ``deliver_many_in`` instead of one at a time to ``deliver_in``."""

    def deliver_many_in(self, payloads: Sequence[Payload],
                        finish: Callable[[Any, int, Delivered], Any]) -> list[Delivered | Exception]:
        """Deliver ``payloads`` in order in one database transaction, each message all or nothing on
        its own: written and finished (``finish(conn, n, result)`` for ``payloads[n]``) inside a
        savepoint, so a failing message rolls back only itself and gets its own outcome.

        May stop early (a time budget keeps the write lock short): returns the outcomes of the
        first k >= 1 payloads, in order - the Delivered, or the exception that rolled the message
        back (``finish`` raising LeaseLost, an unexpected error). A Delivered that was not finished
        is recorded by the caller. An exception out of the call means the transaction did not
        commit: none of its messages was delivered, whatever ``finish`` was told."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""


def require(options: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = options.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ChannelConfigError(f"option {key!r} has value {value!r}. Expected {what}.")
    return value


_FIELD = re.compile(r"\{([A-Za-z0-9_]+(?:[\[\]\(\)\-.0-9A-Za-z]*))\}")
_NAMES = ("message_id", "channel", "control_id", "type", "body", "bundle")


def render(template: str, payload: Payload, *, url: bool = False) -> str:
    """Fill ``{name}`` placeholders: message_id, channel, control_id, type, body, bundle, or an HL7
    terse path such as ``{PID-3.1}``. In a URL, values are percent-encoded."""
    msg = None

    def value(match: re.Match[str]) -> str:
        nonlocal msg
        key = match.group(1)
        if key == "message_id":
            out = str(payload.message_id)
        elif key == "channel":
            out = payload.channel
        elif key == "control_id":
            out = payload.control_id
        elif key == "type":
            out = payload.msg_type
        elif key == "body":
            out = payload.body.decode("utf-8", "replace")
        elif key == "bundle":
            out = payload.bundle.decode() if payload.bundle else ""
        else:
            if msg is None:
                try:
                    msg = parse(payload.body)
                except HL7Error:
                    return ""
            try:
                out = msg.get(key)
            except HL7Error:
                return match.group(0)
        return quote(out, safe="") if url else out

    return _FIELD.sub(value, template)


def check_template(template: Any, key: str) -> None:
    if not isinstance(template, str):
        raise ChannelConfigError(f"option {key!r} has value {template!r}. Expected a text template such as "
                                 "'{body}' (placeholders: message_id, channel, control_id, type, body, bundle, "
                                 "or an HL7 path like {PID-3.1}).")


def tls_context(options: Mapping[str, Any] | None, *, server: bool, base: Path,
                where: str = "tls") -> ssl.SSLContext | None:
    """An SSLContext from ``tls: {cert, key, ca, client_auth, verify}``; None without ``tls``.

    Server side: ``cert``/``key`` are ours, ``ca`` plus ``client_auth: true`` demands client
    certificates (mutual TLS). Client side: ``ca`` verifies the server (system CAs when absent),
    ``cert``/``key`` present ours, ``verify: false`` skips verification (tests only). ``where``
    names the option in errors ('source.tls').
    """
    if not options:
        return None
    if options is True:
        options = {}

    def path(key: str) -> str | None:
        value = options.get(key)
        if value is None:
            return None
        p = Path(str(value))
        return str(p if p.is_absolute() else base / p)

    try:
        if server:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(path("cert") or "", path("key"))
            if path("ca"):
                ctx.load_verify_locations(path("ca"))
            if options.get("client_auth"):
                ctx.verify_mode = ssl.CERT_REQUIRED
            return ctx
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=path("ca"))
        if path("cert"):
            ctx.load_cert_chain(path("cert") or "", path("key"))
        if options.get("verify") is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(f"{where}.{key} {path(key)}" for key in TLS_FILES if path(key))
        raise ChannelConfigError(f"{where}: TLS files cannot be loaded ({files or 'none given'}): {exc}. Expected "
                                 "readable PEM files for cert, key and ca.") from None

"""One settings table, loaded once (STYLE rule 12: nothing else reads ``os.environ``).

Precedence, lowest first: built-in default < config file (``ehrgate.yaml``) < environment
variable ``EHRGATE_<NAME>`` < command-line flag. Every setting is documented in
``docs/settings.md``; a test checks that the table and that page agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = ["SETTINGS", "Setting", "Settings", "SettingsError", "load_settings"]


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    type: type = str
    minimum: int | None = None
    """Smallest value an int setting takes (checked at start, like the type)."""
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    """The values a str setting takes (any case; stored as written here)."""
    url: bool = False
    """Empty or an absolute http(s) URL."""


# Bounds and choices of settings, by name: checked when the settings are loaded, so a bad value stops
# the program with a sentence naming the setting instead of failing later (or, for a page size of
# -1, answering every search with nothing).
_BOUNDS: dict[str, tuple[int | None, int | None]] = {
    "port": (0, 65535), "mllp_port": (0, 65535), "max_body_bytes": (1, None), "max_json_depth": (1, None),
    "default_page_size": (1, None), "max_page_size": (1, None), "sqlite_mmap_mb": (0, None),
    "audit_access_max_calls": (1, None), "demo_patients": (0, None), "access_token_lifetime": (0, None),
    "refresh_token_lifetime": (0, None), "auth_code_lifetime": (0, None), "launch_lifetime": (0, None),
    "session_lifetime": (0, None), "token_rate_limit": (0, None), "revocation_check_seconds": (0, None),
    "engine_duplicate_window": (0, None), "engine_batch_size": (1, None), "engine_lease_seconds": (1, None),
    "engine_poll_ms": (1, None), "engine_alert_interval": (1, None), "engine_retention_interval": (1, None),
    "bulk_workers": (0, None), "bulk_file_lines": (1, None), "bulk_file_ttl": (0, None), "bulk_max_jobs": (0, None),
    "bulk_retry_after": (0, None), "bulk_lease_seconds": (1, None),
}
_CHOICES: dict[str, tuple[str, ...]] = {"tracing": ("off", "otlp", "console"),
                                        "log_level": ("DEBUG", "INFO", "WARNING", "ERROR")}
_URLS = frozenset({"base_url"})


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Address the HTTP server listens on."),
    Setting("port", 8080, "TCP port of the HTTP server.", int),
    Setting("data_dir", "./ehrgate-data", "Directory for the embedded SQLite database, keys and export files."),
    Setting(
        "database_url",
        "",
        "SQLAlchemy-style database URL, e.g. postgresql://user@host/db. Empty: SQLite file "
        "`ehrgate.sqlite3` inside data_dir.",
    ),
    Setting(
        "base_url",
        "",
        "Public base URL of the server (scheme://host:port), used in absolute links such as "
        "Bundle.link and fullUrl. Empty: derived from host and port.",
    ),
    Setting(
        "forwarded_allow_ips",
        "127.0.0.1,::1",
        "Comma-separated addresses (or `*`) of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto "
        "are trusted: a request from one of them counts as from the client the header names (sign-in limits, "
        "the engine admin API's loopback rule, logs). Requests from anywhere else count as from their own address.",
    ),
    Setting("max_body_bytes", 16 * 1024 * 1024, "Largest request body accepted; larger bodies get 413.", int),
    Setting("max_json_depth", 64, "Deepest JSON nesting accepted in a request body.", int),
    Setting("default_page_size", 50, "Search page size when the request has no _count.", int),
    Setting("max_page_size", 1000, "Largest _count honoured; larger values are capped.", int),
    Setting("sqlite_synchronous", "NORMAL", "SQLite PRAGMA synchronous for the FHIR store (NORMAL or FULL)."),
    Setting(
        "sqlite_mmap_mb",
        2048,
        "Megabytes of the SQLite database read through a memory map (PRAGMA mmap_size; SQLite caps it near "
        "2 GB). 0 turns the map off: reads then copy pages with read(), a little slower, but a disk error "
        "becomes an error message instead of the process being killed by SIGBUS (choose 0 on network or "
        "unreliable storage).",
        int,
    ),
    Setting("log_level", "INFO", "Log level: DEBUG, INFO, WARNING or ERROR."),
    Setting(
        "access_log",
        False,
        "Log one line per HTTP request (request id, method, path, status, milliseconds). Off by default: "
        "at ~30 µs a line it costs a third of a FHIR read. Failures are always logged with their request id.",
        bool,
    ),
    Setting(
        "audit_access",
        True,
        "Record every FHIR call made with an access token in an AuditEvent (written in batches, about once a second).",
        bool,
    ),
    Setting(
        "audit_access_max_calls",
        1000,
        "Most FHIR calls one access AuditEvent lists. Calls written in the same batch (about a second) with the "
        "same token holder, app, grant, patient, interaction and HTTP status share an event: one entity per "
        "resource, a line per call in its `calls` detail (time, request id, query). 1: an AuditEvent per call, "
        "which costs more than the read it records.",
        int,
    ),
    Setting("demo_patients", 40, "Number of synthetic patients `ehrgate demo` generates into an empty database.", int),
    Setting("demo_seed", 7, "Random seed for the synthetic demo data, so every demo shows the same patients.", int),
    Setting(
        "auth_required",
        True,
        "Every FHIR request needs a valid SMART bearer token. false opens the API for local development "
        "and scripted checks (the server logs a warning); /metadata and discovery stay public either way.",
        bool,
    ),
    Setting("environment", "dev", "Which per-environment values of `apps:` in ehrgate.yaml apply (e.g. dev, test, prod)."),
    Setting("access_token_lifetime", 3600, "Seconds an access token (and id_token) is valid.", int),
    Setting(
        "access_token_alg",
        "ES256",
        "Signature algorithm of access tokens: ES256 (P-256, about seven times cheaper to sign than RSA-2048) "
        "or RS256. id_tokens are always RS256. Both keys are in the JWKS; tokens signed before a change verify "
        "until they expire.",
    ),
    Setting("refresh_token_lifetime", 90 * 86400, "Seconds an offline_access refresh token is valid; 0 means no expiry.", int),
    Setting("auth_code_lifetime", 60, "Seconds an authorization code is valid (single use).", int),
    Setting("launch_lifetime", 300, "Seconds an EHR launch handle is valid (single use).", int),
    Setting("session_lifetime", 8 * 3600, "Seconds a sign-in session lasts; online_access grants end with it.", int),
    Setting(
        "token_rate_limit",
        600,
        "Token endpoint requests allowed per client per minute (each process), counting only requests in which the "
        "client authenticated or presented a valid grant; as many failed or unauthenticated requests are allowed per "
        "client address. 0 switches both limits off.",
        int,
    ),
    Setting(
        "revocation_check_seconds",
        2,
        "How long a process may trust its cached check that an access token's grant is not revoked; "
        "revocations in the same process apply at once, in other processes within this time.",
        int,
    ),
    Setting("practice_id", "", "Practice identifier sent as `practice_id` in token responses of EHR launches; empty: not sent."),
    # -- HL7 v2 engine (docs/engine.md) --
    Setting(
        "mllp_port",
        2575,
        "MLLP port (on `host`) of the built-in channel `mllp-in` (MLLP → FHIR store, ACK on receipt) that "
        "`ehrgate demo` runs; `ehrgate serve` runs it only when `--mllp-port` is given. 0 picks a free port.",
        int,
    ),
    Setting(
        "engine_duplicate_window",
        86400,
        "Seconds within which a message with the same channel, sender (MSH-3/MSH-4) and control ID (MSH-10) "
        "is a duplicate: stored, ACKed, not processed again (channels with `duplicates: skip`). 0 turns it off.",
        int,
    ),
    Setting("engine_batch_size", 500, "Most messages stored in one transaction (group commit) before their ACKs go out.", int),
    Setting(
        "engine_lease_seconds",
        60,
        "How long a worker holds a queued message it claimed; if its process dies, another process takes the "
        "message over after this (at once for a restarted process on the same host). Must exceed destination timeouts.",
        int,
    ),
    Setting("engine_poll_ms", 500, "How often idle workers look at the queue for work from other processes and retries (ms).", int),
    Setting("engine_alert_interval", 15, "Seconds between evaluations of channel alert thresholds.", int),
    Setting("engine_retention_interval", 3600, "Seconds between runs of channel retention (`retention_days`).", int),
    Setting("tracing", "off", "OpenTelemetry traces of the engine, one per message: off, otlp (OTLP/HTTP to "
            "OTEL_EXPORTER_OTLP_ENDPOINT; needs `pip install 'ehrgate[otel]'`) or console (standard output). "
            "The standard OTEL_* variables configure the exporter, the service name, sampling and batching."),
    Setting(
        "admin_token",
        "",
        "Bearer token with full access to the engine admin API (`/admin/channels`, `/admin/messages`, "
        "`/admin/audit`; recorded in the audit trail as `admin_token`), besides HTTP Basic sign-in as a user with "
        "the admin, operator or viewer role (the app registry `/admin/apps` takes an admin user's sign-in only). "
        "While it is empty and no user has one of those roles, the engine admin API answers loopback requests "
        "without credentials.",
    ),
    Setting("bulk_dir", "", "Directory of Bulk Data export files. Empty: `bulk` inside data_dir. With several "
            "EHRGate processes on one PostgreSQL database it must be shared by all of them."),
    Setting("bulk_workers", 2, "Bulk Data exports this process runs at once (worker threads); 0: none (another "
            "process on the same database runs them).", int),
    Setting("bulk_file_lines", 50000, "Resources per Bulk Data NDJSON file; a type with more is split into "
            "several files.", int),
    Setting("bulk_file_ttl", 86400, "Seconds a finished Bulk Data export (its manifest and files) is kept before "
            "it is removed.", int),
    Setting("bulk_max_jobs", 4, "Bulk Data exports one client may have queued or running; more kick-offs get 429 "
            "with Retry-After. 0: no limit.", int),
    Setting("bulk_retry_after", 2, "Seconds a Bulk Data status response asks the client to wait (Retry-After) "
            "before polling again.", int),
    Setting("bulk_lease_seconds", 60, "How long a Bulk Data export stays claimed by a worker without a heartbeat; "
            "if its process dies, another takes the export over after this (at once after a restart on the same host).",
            int),
)

SETTINGS = tuple(
    Setting(s.name, s.default, s.help, s.type, *_BOUNDS.get(s.name, (None, None)), _CHOICES.get(s.name, ()),
            s.name in _URLS)
    for s in SETTINGS
)
_BY_NAME = {s.name: s for s in SETTINGS}
_SECTIONS = frozenset({"settings", "apps", "channels", "environments"})
"""The top-level keys of ehrgate.yaml (a setting written at the top level was silently ignored)."""


def _coerce(setting: Setting, value: Any, origin: str) -> Any:
    if setting.type is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{origin} '{setting.name}' has value {value!r}. Not a valid bool (use true or false).")
    if setting.type is int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(
                f"{origin} '{setting.name}' has value {value!r}. Not a valid integer."
            ) from None
        low, high = setting.minimum, setting.maximum
        if (low is not None and number < low) or (high is not None and number > high):
            expected = f"{low} to {high}" if high is not None else f"{low} or more"
            raise SettingsError(f"{origin} '{setting.name}' has value {value!r}. Expected {expected}.")
        return number
    text = str(value)
    if setting.choices:
        for choice in setting.choices:
            if text.strip().upper() == choice.upper():
                return choice
        raise SettingsError(f"{origin} '{setting.name}' has value {value!r}. Expected one of {', '.join(setting.choices)}.")
    if setting.url and text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise SettingsError(f"{origin} '{setting.name}' has value {value!r}. Expected an absolute http(s) URL "
                                "such as https://ehr.example.org (no query or fragment), or nothing.")
    return text


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    config: Mapping[str, Any]
    """The whole parsed config file (other sections such as ``apps:`` and ``channels:``)."""
    path: str | None = None
    """The config file read, if any (the engine re-reads its ``channels:`` on deploy)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def sqlite_path(self) -> Path:
        return Path(self.values["data_dir"]) / "ehrgate.sqlite3"

    @property
    def effective_database_url(self) -> str:
        url = self.values["database_url"]
        return url or f"sqlite:///{self.sqlite_path}"

    @property
    def public_base(self) -> str:
        base = self.values["base_url"].rstrip("/")
        if base:
            return base
        host = self.values["host"]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{self.values['port']}"

    def replace(self, **overrides: Any) -> Settings:
        values = dict(self.values)
        for key, value in overrides.items():
            values[key] = _coerce(_BY_NAME[key], value, "Setting")
        return Settings(values, self.config, self.path)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, the config file, ``EHRGATE_*`` variables and flags."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    config: dict[str, Any] = {}
    path = config_file or env.get("EHRGATE_CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise SettingsError(f"Config file '{path}' cannot be read: {exc.strerror}.") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"Config file '{path}' is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"Config file '{path}' must hold a mapping at the top level.")
        config = loaded
        stray = sorted(str(k) for k in loaded if k not in _SECTIONS)
        if stray:
            hint = (f" Settings go under 'settings:' (settings: {{{stray[0]}: ...}})." if stray[0] in _BY_NAME
                    else "")
            raise SettingsError(f"Config file '{path}' has unknown top-level key '{stray[0]}'.{hint} Expected the "
                                f"sections {', '.join(sorted(_SECTIONS))}.")
        for key, value in (loaded.get("settings") or {}).items():
            if key not in _BY_NAME:
                raise SettingsError(
                    f"Config file '{path}' has unknown setting '{key}'. See docs/settings.md for the list."
                )
            values[key] = _coerce(_BY_NAME[key], value, "Config")
    for setting in SETTINGS:
        raw = env.get("EHRGATE_" + setting.name.upper())
        if raw is not None:
            values[setting.name] = _coerce(setting, raw, "Environment variable EHRGATE_" + setting.name.upper() + " for")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _BY_NAME:
            raise SettingsError(f"Unknown setting '{key}'.")
        values[key] = _coerce(_BY_NAME[key], value, "Option")
    return Settings(values, config, str(path) if path else None)

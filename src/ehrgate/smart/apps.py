"""The app registry: SMART clients, from ``apps:`` in ehrgate.yaml, the CLI and the admin API.

A client is public (PKCE only), confidential-symmetric (a generated secret, shown once, stored as a
SHA-256 digest) or confidential-asymmetric (``private_key_jwt`` with keys given as ``jwks`` or
``jwks_uri``). Redirect URIs match exactly (SMART App Launch 2.2; RFC 6749 §3.1.2.3 — no prefix or
pattern matching). ``scopes`` limits what the app may ever be granted.

In ehrgate.yaml every field may give per-environment values side by side, chosen by the
``environment`` setting (see docs/smart.md)::

    apps:
      - client_id: growth-chart
        name: Growth Chart
        type: public
        redirect_uris: {dev: [http://127.0.0.1:9000/cb], prod: [https://growth.example.org/cb]}
        scopes: launch openid fhirUser patient/*.rs
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from joserfc.jwk import KeySet

from .hashing import digest, digest_matches, new_token
from .schema import apps, consents
from .scopes import CONTEXT_SCOPES, ScopeError, ScopeSet, parse_scopes

if TYPE_CHECKING:
    from ..fhir.store.service import WriteSession

__all__ = [
    "REGISTRY_CHANGES",
    "record_change",
    "CLIENT_TYPES",
    "DEFAULT_SCOPES",
    "App",
    "AppError",
    "add_app",
    "apps_from_config",
    "get_app",
    "list_apps",
    "remove_app",
    "rotate_secret",
    "sync_config_apps",
    "update_app",
]

CLIENT_TYPES = ("public", "confidential-symmetric", "confidential-asymmetric")
DEFAULT_SCOPES = (
    "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access "
    "patient/*.cruds user/*.cruds"
)
_FIELDS = ("client_id", "name", "description", "icon_url", "launch_url", "redirect_uris", "type", "scopes",
           "jwks", "jwks_uri", "secret_hash")


class AppError(ValueError):
    """An app registration is not usable; the message names the app, the field and the value."""


@dataclass(frozen=True)
class App:
    client_id: str
    name: str
    client_type: str
    redirect_uris: tuple[str, ...] = ()
    launch_url: str = ""
    description: str = ""
    icon_url: str = ""
    scopes: str = DEFAULT_SCOPES
    jwks: dict[str, Any] | None = None
    jwks_uri: str = ""
    secret_hash: str = ""
    source: str = "cli"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        return self.client_type == "public"

    @property
    def allowed_scopes(self) -> ScopeSet:
        return parse_scopes(self.scopes)

    def check_secret(self, secret: str) -> bool:
        return bool(self.secret_hash) and digest_matches(secret, self.secret_hash)

    def keyset(self) -> KeySet | None:
        return KeySet.import_key_set(self.jwks) if self.jwks else None  # type: ignore[arg-type]

    def summary(self) -> dict[str, Any]:
        """What the CLI and admin API show (never the secret digest)."""
        return {
            "client_id": self.client_id, "name": self.name, "type": self.client_type,
            "description": self.description, "icon_url": self.icon_url, "launch_url": self.launch_url,
            "redirect_uris": list(self.redirect_uris), "scopes": self.scopes,
            "jwks": self.jwks, "jwks_uri": self.jwks_uri or None, "has_secret": bool(self.secret_hash),
            "source": self.source,
        }


def _url(app_id: str, name: str, value: str, *, https_or_loopback: bool = False) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AppError(f"App {app_id!r}: {name} {value!r} is not an absolute http(s) URL.")
    if parts.fragment:
        raise AppError(f"App {app_id!r}: {name} {value!r} must not contain a fragment (#).")
    return value


def _check_scopes(cid: str, client_type: str, scopes: ScopeSet) -> None:
    """An app's allowed scopes: SMART scopes only. A token request may carry scopes a server does
    not know (they are ignored), but in a registration an unknown one is a typo ('patinet/*.rs')
    that would silently allow nothing."""
    from ..fhir.validation import known_resource_types

    types = known_resource_types()
    for scope in scopes:
        resource = scope.resource
        if resource is None:
            if scope.raw not in CONTEXT_SCOPES and not scope.raw.startswith("launch/"):
                raise AppError(f"App {cid!r}: scope {scope.raw!r} is not a SMART scope. Expected context/Type.permissions "
                               f"(patient/Observation.rs) or one of {', '.join(CONTEXT_SCOPES)}.")
            continue
        if resource.res_type != "*" and resource.res_type not in types:
            raise AppError(f"App {cid!r}: scope {scope.raw!r} names {resource.res_type!r}, which is not a FHIR R4 "
                           "resource type.")
        if resource.context == "system" and client_type == "public":
            raise AppError(f"App {cid!r}: scope {scope.raw!r} is a backend-services scope, which a public client "
                           "cannot use (client_credentials needs a confidential client).")


def validate(app: App) -> App:
    """Check one registration; returns it normalised."""
    cid = app.client_id
    if not cid or len(cid) > 128 or any(c.isspace() for c in cid):
        raise AppError(f"client_id {cid!r} must be 1-128 characters without spaces.")
    if not app.name:
        raise AppError(f"App {cid!r}: a name is required (shown to users on the consent page).")
    if app.client_type not in CLIENT_TYPES:
        raise AppError(f"App {cid!r}: type {app.client_type!r} is not known; use one of {', '.join(CLIENT_TYPES)}.")
    for uri in app.redirect_uris:
        _url(cid, "redirect_uri", uri)
    if app.launch_url:
        _url(cid, "launch_url", app.launch_url)
    if app.icon_url:
        _url(cid, "icon_url", app.icon_url)
    try:
        scopes = parse_scopes(app.scopes)
    except ScopeError as exc:
        raise AppError(f"App {cid!r}: {exc}") from None
    _check_scopes(cid, app.client_type, scopes)
    if app.client_type == "confidential-asymmetric":
        if not app.jwks and not app.jwks_uri:
            raise AppError(f"App {cid!r}: a confidential-asymmetric client needs jwks or jwks_uri.")
        if app.jwks:
            keys = app.jwks.get("keys") if isinstance(app.jwks, Mapping) else None
            if not isinstance(keys, list) or not keys or not all(isinstance(k, Mapping) for k in keys):
                raise AppError(f"App {cid!r}: jwks is not a JSON Web Key Set: expected {{\"keys\": [<public JWK>, ...]}} "
                               "(a single JWK goes inside the keys list).")
            if any("d" in k for k in keys):
                raise AppError(f"App {cid!r}: jwks contains a private key; register the public keys only.")
            try:
                KeySet.import_key_set(app.jwks)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - any malformed JWKS
                raise AppError(f"App {cid!r}: jwks is not a valid JSON Web Key Set ({exc}).") from None
        if app.jwks_uri:
            _url(cid, "jwks_uri", app.jwks_uri)
    elif app.jwks or app.jwks_uri:
        raise AppError(f"App {cid!r}: jwks/jwks_uri are only for confidential-asymmetric clients.")
    if app.client_type != "confidential-asymmetric" and not app.redirect_uris:
        raise AppError(f"App {cid!r}: at least one redirect_uri is required for a {app.client_type} client.")
    return app


# -- configuration (ehrgate.yaml) ----------------------------------------------------------------


def _pick(value: Any, environment: str, app_id: str, name: str, environments: set[str]) -> Any:
    """A field's value, or its per-environment value when given as a mapping of environment names."""
    if isinstance(value, Mapping) and name != "jwks" and set(value) <= environments | {"default"}:
        if environment in value:
            return value[environment]
        if "default" in value:
            return value["default"]
        raise AppError(f"App {app_id!r}: {name} has no value for environment {environment!r} (nor 'default').")
    return value


def apps_from_config(config: Mapping[str, Any], environment: str) -> list[App]:
    """Parse the ``apps:`` section; every error names the app and the field."""
    entries = config.get("apps") or []
    if not isinstance(entries, list):
        raise AppError("'apps' in the config file must be a list of apps.")
    environments = set(config.get("environments") or ("dev", "test", "prod")) | {environment}
    out: list[App] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise AppError(f"apps[{index}] must be a mapping with client_id, name, type, ….")
        cid = str(entry.get("client_id") or "")
        unknown = set(entry) - set(_FIELDS)
        if unknown:
            raise AppError(f"App {cid or index!r}: unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(_FIELDS)}.")
        values = {k: _pick(v, environment, cid, k, environments) for k, v in entry.items()}
        if values.get("client_id") is None:
            continue  # not deployed in this environment
        scopes = values.get("scopes", DEFAULT_SCOPES)
        if isinstance(scopes, list):
            scopes = " ".join(scopes)
        redirects = values.get("redirect_uris") or ()
        if isinstance(redirects, str):
            redirects = (redirects,)
        secret_hash = str(values.get("secret_hash") or "")
        if secret_hash.startswith("sha256:"):
            secret_hash = secret_hash[len("sha256:"):]
        app = App(
            client_id=str(values["client_id"]), name=str(values.get("name") or ""),
            client_type=str(values.get("type") or ""), redirect_uris=tuple(str(r) for r in redirects),
            launch_url=str(values.get("launch_url") or ""), description=str(values.get("description") or ""),
            icon_url=str(values.get("icon_url") or ""), scopes=str(scopes), jwks=values.get("jwks"),
            jwks_uri=str(values.get("jwks_uri") or ""), secret_hash=secret_hash, source="config",
        )
        validate(app)
        if app.client_id in seen:
            raise AppError(f"App {app.client_id!r} is listed twice in 'apps'.")
        seen.add(app.client_id)
        out.append(app)
    return out


# -- persistence -------------------------------------------------------------------------------


def _row(row: Any) -> App:
    return App(
        client_id=row.client_id, name=row.name, client_type=row.client_type,
        redirect_uris=tuple(json.loads(row.redirect_uris)), launch_url=row.launch_url, description=row.description,
        icon_url=row.icon_url, scopes=row.scopes, jwks=json.loads(row.jwks) if row.jwks else None,
        jwks_uri=row.jwks_uri or "", secret_hash=row.secret_hash or "", source=row.source,
    )


def _values(app: App) -> dict[str, Any]:
    return {
        "client_id": app.client_id, "name": app.name, "description": app.description, "icon_url": app.icon_url,
        "launch_url": app.launch_url, "redirect_uris": json.dumps(list(app.redirect_uris)),
        "client_type": app.client_type, "scopes": app.scopes, "jwks": json.dumps(app.jwks) if app.jwks else None,
        "jwks_uri": app.jwks_uri or None, "secret_hash": app.secret_hash or None, "source": app.source,
    }


def get_app(conn: sa.Connection, client_id: str) -> App | None:
    row = conn.execute(sa.select(apps).where(apps.c.client_id == client_id)).first()
    return _row(row) if row else None


def list_apps(conn: sa.Connection) -> list[App]:
    return [_row(r) for r in conn.execute(sa.select(apps).order_by(apps.c.client_id))]


def add_app(conn: sa.Connection, app: App, *, now: int) -> tuple[App, str | None]:
    """Register an app; returns it and, for a symmetric client, the new secret (shown once)."""
    validate(app)
    if get_app(conn, app.client_id):
        raise AppError(f"An app with client_id {app.client_id!r} already exists; remove it first or pick another id.")
    secret = None
    if app.client_type == "confidential-symmetric" and not app.secret_hash:
        secret = new_token(32)
        app = replace(app, secret_hash=digest(secret))
    conn.execute(apps.insert().values(**_values(app), created=now))
    return app, secret


def update_app(conn: sa.Connection, app: App) -> App:
    """Store ``app``'s registration over the one with its client_id (checked as ``add_app`` does)."""
    validate(app)
    conn.execute(apps.update().where(apps.c.client_id == app.client_id).values(**_values(app)))
    return app


def rotate_secret(conn: sa.Connection, client_id: str) -> str:
    app = get_app(conn, client_id)
    if app is None:
        raise AppError(f"No app with client_id {client_id!r}; see `ehrgate apps list`.")
    if app.client_type != "confidential-symmetric":
        raise AppError(f"App {client_id!r} is {app.client_type}; only confidential-symmetric clients have a secret.")
    secret = new_token(32)
    conn.execute(apps.update().where(apps.c.client_id == client_id).values(secret_hash=digest(secret)))
    return secret


REGISTRY_CHANGES = {"add": "registered", "rotate-secret": "given a new client secret", "remove": "removed"}


def record_change(w: WriteSession, change: str, client_id: str, *, actor: str, user: str | None = None,
                  via: str, request_id: str | None = None, now: float) -> None:
    """An AuditEvent (subtype ``app-registry``) for a change to the registry, in ``w`` (the change's
    own transaction): which app, what happened, who (``actor``: a username or ``cli:<OS user>``;
    ``user``: their FHIR record when they have one) and how (``via``: page, api, cli)."""
    from .audit import audit_event

    w.create("AuditEvent", audit_event(
        "app-registry", client_id=client_id, user=user, actor=actor, request_id=request_id, now=now,
        description=f"App {client_id} {REGISTRY_CHANGES[change]} by {actor} ({via})."))


def remove_app(conn: sa.Connection, client_id: str) -> None:
    result = conn.execute(apps.delete().where(apps.c.client_id == client_id))
    if result.rowcount == 0:
        raise AppError(f"No app with client_id {client_id!r}; see `ehrgate apps list`.")
    _forget_approvals(conn, client_id)


def _forget_approvals(conn: sa.Connection, client_id: str) -> None:
    """Users' remembered approvals of a removed app: an app registered later under the same
    client_id is another app, and asks again."""
    conn.execute(consents.delete().where(consents.c.client_id == client_id))


def sync_config_apps(conn: sa.Connection, configured: list[App], *, now: int) -> None:
    """Make the database match ``apps:`` for apps that came from the config file. A secret rotated
    with the CLI is kept unless the config gives ``secret_hash``."""
    existing = {a.client_id: a for a in list_apps(conn)}
    for app in configured:
        old = existing.get(app.client_id)
        if old is None:
            conn.execute(apps.insert().values(**_values(app), created=now))
            continue
        if old.source != "config":
            raise AppError(
                f"App {app.client_id!r} in the config file was also added with the CLI or API; remove one of them."
            )
        if not app.secret_hash:
            app = replace(app, secret_hash=old.secret_hash)
        conn.execute(apps.update().where(apps.c.client_id == app.client_id).values(**_values(app)))
    names = {a.client_id for a in configured}
    for cid, old in existing.items():
        if old.source == "config" and cid not in names:
            conn.execute(apps.delete().where(apps.c.client_id == cid))
            _forget_approvals(conn, cid)

"""The authorization server's parts wired together, and its routes.

``SmartServer(settings, store)`` opens the key ring, syncs ``apps:`` from ehrgate.yaml, and exposes
``routes()`` (Starlette routes to mount before the FHIR routes), ``policy`` (the FHIR API's
``AccessPolicy``) and ``capability_security()`` (the CapabilityStatement ``rest.security``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.store.service import Store, WriteSession
from ..ratelimit import RateLimiter
from ..settings import Settings, SettingsError
from .apps import App, apps_from_config, get_app, sync_config_apps
from .audit import audit_event
from .bearer import BearerPolicy
from .grants import active_grant
from .keys import KeyRing
from .tokens import ACCESS_TOKEN_ALGS, TokenIssuer

__all__ = ["SmartServer", "smart_routes"]

log = logging.getLogger("ehrgate.smart")
T = TypeVar("T")

AUTH = "/auth"


class SmartServer:
    def __init__(self, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.origin = settings.public_base
        self.fhir_base = self.origin + "/fhir"
        self.issuer = self.fhir_base
        self.auth_base = self.origin + AUTH
        self.token_url = self.auth_base + "/token"
        self.secure_cookies = self.origin.startswith("https://")
        ttl = max(settings.access_token_lifetime, 3600)
        self.keys = KeyRing(Path(settings.data_dir) / "keys", retire_after=ttl, clock=clock)
        if settings.access_token_alg not in ACCESS_TOKEN_ALGS:
            raise SettingsError(f"Setting 'access_token_alg' has value {settings.access_token_alg!r}. "
                                f"Expected one of {', '.join(ACCESS_TOKEN_ALGS)}.")
        self.tokens = TokenIssuer(self.keys, self.issuer, clock=clock, access_alg=settings.access_token_alg)
        self.policy = BearerPolicy(
            self.tokens, self._grant_active, required=settings.auth_required,
            recheck=float(settings.revocation_check_seconds), realm=self.fhir_base, clock=clock,
        )
        self.rate = RateLimiter(settings.token_rate_limit)  # token requests per client (token.token)
        # token requests per client address that neither authenticated nor presented a valid grant
        self.token_failures = RateLimiter(settings.token_rate_limit)
        # failed sign-ins (/auth/login) per client address: ten a minute, then wait (password guessing)
        self.login_failures = RateLimiter(10)
        self._jwks_cache: dict[str, tuple[float, Any]] = {}
        configured = apps_from_config(settings.config, settings.environment)
        with store.writer() as w:
            sync_config_apps(w.conn, configured, now=self.now())
        if not settings.auth_required:
            log.warning("auth_required is false: the FHIR API answers requests without an access token.")

    # -- helpers ------------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Embedded SQLite answers in microseconds: inline. PostgreSQL: a worker thread."""
        if self.store.inline:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.store.reader() as conn:
            return fn(conn, *args, **kwargs)

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.store.writer() as w:
            return fn(w, *args, **kwargs)

    async def reading(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.db(self.read, fn, *args, **kwargs)

    async def writing(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.db(self.write, fn, *args, **kwargs)

    async def _grant_active(self, grant_id: str) -> bool:
        return await self.reading(active_grant, grant_id)

    async def app(self, client_id: str) -> App | None:
        return await self.reading(get_app, client_id)

    def audit(self, w: WriteSession, subtype: str, request: Request | None = None, **fields: Any) -> None:
        """Record an AuditEvent in the caller's transaction (the store's one write path)."""
        request_id = request.scope.get("state", {}).get("request_id") if request is not None else None
        w.create("AuditEvent", audit_event(subtype, request_id=request_id, now=self.clock(), **fields))

    def absolute_user(self, fhir_user: str) -> str:
        return f"{self.fhir_base}/{fhir_user}" if fhir_user else ""

    def forget_grant(self, grant_id: str | None) -> None:
        if grant_id:
            self.policy.forget_grant(grant_id)

    # -- public surface -------------------------------------------------------------------------

    def capability_security(self) -> dict[str, Any]:
        """CapabilityStatement.rest.security (SMART App Launch 2.2 §Conformance; the oauth-uris
        extension that the Python fhirclient reads). Strictly R4."""
        ext = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        return {
            "cors": True,
            "service": [{
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR",
                            "display": "SMART-on-FHIR"}],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }],
            "extension": [{
                "url": ext,
                "extension": [
                    {"url": "authorize", "valueUri": self.auth_base + "/authorize"},
                    {"url": "token", "valueUri": self.token_url},
                    {"url": "introspect", "valueUri": self.auth_base + "/introspect"},
                    {"url": "revoke", "valueUri": self.auth_base + "/revoke"},
                    {"url": "manage", "valueUri": self.origin + "/auth/apps"},
                ],
            }],
        }

    def routes(self) -> list[Route]:
        return smart_routes(self)


def _bind(srv: SmartServer, fn: Callable[[SmartServer, Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await fn(srv, request)

    endpoint.__name__ = fn.__name__
    return endpoint


def smart_routes(srv: SmartServer) -> list[Route]:
    """The authorization server's routes. Mount them BEFORE the FHIR routes: ``/fhir/{type}/{id}``
    would otherwise answer ``/fhir/.well-known/smart-configuration``."""
    from . import account, admin, authorize, discovery, ehr, registry, token

    table: list[tuple[str, Callable[[SmartServer, Request], Awaitable[Response]], list[str]]] = [
        ("/fhir/.well-known/smart-configuration", discovery.smart_configuration, ["GET", "OPTIONS"]),
        ("/fhir/.well-known/openid-configuration", discovery.openid_configuration, ["GET", "OPTIONS"]),
        ("/.well-known/smart-configuration", discovery.smart_configuration, ["GET", "OPTIONS"]),
        ("/.well-known/openid-configuration", discovery.openid_configuration, ["GET", "OPTIONS"]),
        (AUTH + "/jwks", discovery.jwks, ["GET", "OPTIONS"]),
        (AUTH + "/style.json", discovery.style, ["GET", "OPTIONS"]),
        (AUTH + "/authorize", authorize.authorize, ["GET", "POST"]),
        (AUTH + "/continue", authorize.resume, ["GET"]),
        (AUTH + "/login", authorize.login, ["GET", "POST"]),
        (AUTH + "/logout", authorize.logout, ["POST"]),
        (AUTH + "/patient", authorize.pick_patient, ["GET", "POST"]),
        (AUTH + "/consent", authorize.consent, ["POST"]),
        (AUTH + "/token", token.token, ["POST", "OPTIONS"]),
        (AUTH + "/introspect", token.introspect, ["POST", "OPTIONS"]),
        (AUTH + "/revoke", token.revoke, ["POST", "OPTIONS"]),
        (account.PATH, account.connected_apps, ["GET"]),
        (account.PATH + "/revoke", account.revoke_app, ["POST"]),
        (account.PATH + "/forget", account.forget_approval, ["POST"]),
        (registry.PATH, registry.registry, ["GET"]),
        (registry.PATH, registry.add, ["POST"]),
        (registry.PATH + "/{client_id}/{action}", registry.app_action, ["POST"]),
        ("/ehr", ehr.home, ["GET"]),
        ("/ehr/patient/{id}", ehr.chart, ["GET"]),
        ("/ehr/launch", ehr.launch, ["POST"]),
        ("/admin/apps", admin.apps_collection, ["GET", "POST"]),
        ("/admin/apps/{client_id}", admin.app_item, ["GET", "DELETE"]),
        ("/admin/apps/{client_id}/rotate-secret", admin.rotate, ["POST"]),
    ]
    return [Route(path, _bind(srv, fn), methods=methods) for path, fn, methods in table]

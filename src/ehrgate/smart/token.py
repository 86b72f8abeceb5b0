"""The token endpoint (RFC 6749 §3.2, §4.1.3, §6, §4.4), introspection (RFC 7662) and revocation
(RFC 7009).

Client authentication (SMART App Launch 2.2 §Client Authentication): public clients send
``client_id``; symmetric clients HTTP Basic or ``client_secret`` in the body; asymmetric clients a
``private_key_jwt`` assertion (RFC 7523). A refresh request without any client identification is
accepted for public clients (the npm fhirclient refreshes that way): the refresh token names it.

Every state change (code use, rotation, revocation, replay handling) and its AuditEvent commit in
one transaction; failures that revoke something commit the revocation before the error is sent.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import sqlalchemy as sa
from joserfc.jwk import KeySet
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ..ratelimit import client_key
from . import grants as G
from .apps import App
from .errors import (
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from .pkce import PkceError, verify
from .policy import TokenContext
from .scopes import ScopeError, parse_scopes
from .tokens import TokenError, _unverified_claims, _unverified_header, verify_client_assertion
from .web import cors, json_response, oauth_error, preflight

if TYPE_CHECKING:
    from ..fhir.store.service import WriteSession
    from .server import SmartServer

__all__ = ["introspect", "revoke", "token"]

log = logging.getLogger("ehrgate.smart")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_JWKS_TTL = 300.0
_JWKS_REFETCH = 10.0


async def _form(request: Request) -> FormData:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise InvalidRequest("Send the request form-encoded (Content-Type: application/x-www-form-urlencoded).")
    form = await request.form()
    for key in set(form.keys()):
        if len(form.getlist(key)) > 1:
            raise InvalidRequest(f"Parameter {key!r} is repeated; send it once (RFC 6749 §3.2).")
    return form


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


# -- client authentication --------------------------------------------------------------------


class ClientAuth:
    def __init__(self, app: App | None, client_id: str, method: str, jti: tuple[str, int] | None = None) -> None:
        self.app = app
        self.client_id = client_id
        self.method = method
        self.jti = jti
        """A verified client assertion's (jti, exp) still to be recorded (``claim_jti``)."""


def claim_jti(srv: SmartServer, w: WriteSession, auth: ClientAuth) -> None:
    """Record the client assertion's jti in the grant's own transaction (one transaction per token
    request instead of two); a jti seen before aborts it (RFC 7523 §3: replay)."""
    if auth.jti is not None and not G.record_jti(w.conn, auth.client_id, auth.jti[0], expires=auth.jti[1], now=srv.now()):
        raise InvalidClient("The client assertion's jti was already used; sign a new assertion with a fresh jti.")


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not UTF-8, or not even ASCII
        raise InvalidClient("The Basic credentials are not base64 of client_id:client_secret.",
                            headers={"WWW-Authenticate": 'Basic realm="token"'}) from None
    cid, sep, secret = raw.partition(":")
    if not sep:
        raise InvalidClient("The Basic credentials must be client_id:client_secret.", headers={"WWW-Authenticate": 'Basic realm="token"'})
    return unquote_plus(cid), unquote_plus(secret)


async def _client_keys(srv: SmartServer, app: App, kid: Any = None) -> KeySet:
    """The client's keys: its registered ``jwks``, or its ``jwks_uri``'s set, cached five minutes; a
    ``kid`` the cached set lacks (the client rotated its key) fetches it again, at most every
    ``_JWKS_REFETCH`` seconds."""
    if app.jwks:
        ks = app.keyset()
        assert ks is not None
        return ks
    cached = srv._jwks_cache.get(app.jwks_uri)
    if cached and time.monotonic() - cached[0] < _JWKS_TTL:
        known = kid is None or any(k.kid == kid for k in cached[1].keys)
        if known or time.monotonic() - cached[0] < _JWKS_REFETCH:
            return cached[1]  # type: ignore[no-any-return]

    def fetch() -> Any:
        req = urllib.request.Request(app.jwks_uri, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - http(s) checked at registration
            return json.loads(resp.read(1_000_000))

    import anyio

    try:
        data = await anyio.to_thread.run_sync(fetch)
        ks = KeySet.import_key_set(data)
    except Exception:  # noqa: BLE001 - any network or format failure
        raise InvalidClient(f"The jwks_uri registered for client {app.client_id!r} could not be fetched or is not a JWKS.") from None
    srv._jwks_cache[app.jwks_uri] = (time.monotonic(), ks)
    return ks


async def authenticate(
    srv: SmartServer, request: Request, form: FormData, *, allow_anonymous: bool = False, defer_jti: bool = False
) -> ClientAuth:
    """``defer_jti``: leave recording a client assertion's jti to the caller's transaction (``claim_jti``)."""
    basic = _basic(request)
    assertion_type = _field(form, "client_assertion_type")
    assertion = _field(form, "client_assertion")
    body_id = _field(form, "client_id")
    used = [name for name, sent in (("HTTP Basic", basic), ("client_assertion", assertion_type or assertion),
                                    ("client_secret", _field(form, "client_secret"))) if sent]
    if len(used) > 1:  # RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request
        raise InvalidRequest(f"The request authenticates the client in more than one way ({' and '.join(used)}); "
                             "use exactly one.")
    if assertion_type or assertion:
        if assertion_type != JWT_BEARER:
            raise InvalidClient(f"client_assertion_type must be {JWT_BEARER!r}.")
        if not assertion:
            raise InvalidClient("Missing 'client_assertion'.")
        claimed = str(_unverified_claims(assertion).get("iss") or "")
        if body_id and claimed != body_id:
            raise InvalidClient("The client assertion's iss does not match client_id.")
        app = await srv.app(claimed) if claimed else None
        if app is None:
            raise InvalidClient("The client assertion names an unknown client (iss); register the app first.")
        if app.client_type != "confidential-asymmetric":
            raise InvalidClient(f"Client {app.client_id!r} is not registered for private_key_jwt authentication.")
        try:
            keys = await _client_keys(srv, app, _unverified_header(assertion).get("kid"))
            claims = verify_client_assertion(assertion, keys, client_id=app.client_id,
                                             token_url=srv.token_url, now=srv.clock())
        except TokenError as exc:
            raise InvalidClient(str(exc)) from None
        cid, jti, exp = app.client_id, str(claims["jti"]), int(claims["exp"])
        if defer_jti:
            return ClientAuth(app, app.client_id, "private_key_jwt", (jti, exp))
        try:
            fresh = await srv.writing(lambda w: G.record_jti(w.conn, cid, jti, expires=exp, now=srv.now()))
        except sa.exc.IntegrityError:  # the same jti raced in on another connection
            fresh = False
        if not fresh:
            raise InvalidClient("The client assertion's jti was already used; sign a new assertion with a fresh jti.")
        return ClientAuth(app, app.client_id, "private_key_jwt")
    if basic:
        cid, secret = basic
        if body_id and body_id != cid:
            raise InvalidClient("The client_id in the body is not the client of the Basic credentials; send one client.",
                                headers={"WWW-Authenticate": 'Basic realm="token"'})
        app = await srv.app(cid)
        if app is None or not app.check_secret(secret):
            raise InvalidClient("Client authentication failed: unknown client_id or wrong secret.",
                                headers={"WWW-Authenticate": 'Basic realm="token"'})
        return ClientAuth(app, cid, "client_secret_basic")
    secret = _field(form, "client_secret")
    if secret:
        app = await srv.app(body_id)
        if app is None or not app.check_secret(secret):
            raise InvalidClient("Client authentication failed: unknown client_id or wrong secret.")
        return ClientAuth(app, body_id, "client_secret_post")
    if body_id:
        app = await srv.app(body_id)
        if app is None:
            raise InvalidClient(f"Client {body_id!r} is not registered.")
        if not app.public:
            raise InvalidClient(f"Client {body_id!r} is confidential; authenticate it (Basic or client_assertion).")
        return ClientAuth(app, body_id, "none")
    if allow_anonymous:
        return ClientAuth(None, "", "none")
    raise InvalidClient("No client identification: send client_id (public clients) or authenticate the client.")


# -- token endpoint ---------------------------------------------------------------------------


async def token(srv: SmartServer, request: Request) -> Response:
    """Two budgets of ``token_rate_limit`` requests a minute (then 429 with Retry-After): a client's
    own counts only requests in which it authenticated or - a public client, which cannot - that
    presented a valid grant; every other request counts against its address (``client_key``), so a
    stranger sending a client's ``client_id`` spends its own address's budget, not the client's. An
    authenticated client is not held back by its address (a NAT or proxy may be shared)."""
    if request.method == "OPTIONS":
        return preflight(request)
    address = client_key(request.client.host if request.client else "")
    blocked = srv.token_failures.check(address)  # counted on arrival (attempts sent at once all count)
    authenticated = False
    try:
        form = await _form(request)
        grant_type = _field(form, "grant_type")
        handler = GRANT_TYPES.get(grant_type)
        if handler is None:
            if not grant_type:
                raise InvalidRequest("Missing 'grant_type'.")
            raise UnsupportedGrantType(
                f"grant_type {grant_type!r} is not supported; use authorization_code, refresh_token or client_credentials."
            )
        auth = await authenticate(srv, request, form, allow_anonymous=grant_type == "refresh_token", defer_jti=True)
        authenticated = auth.method != "none"
        client = auth.client_id
        if authenticated:
            if not blocked:
                srv.token_failures.forgive(address)
            wait = srv.rate.check(client)
        else:  # a public client (or an anonymous refresh): its budget counts only a valid grant, below
            if blocked:
                raise SlowDown("", blocked)  # worded for the address below
            client = client or await _refresh_client(srv, form)
            wait = srv.rate.wait(client) if client else 0
        if wait:
            raise SlowDown(f"Too many token requests for this client; retry after {wait} seconds.", wait)
        try:
            body = await handler(srv, request, form, auth)
        except sa.exc.IntegrityError:
            if auth.jti is None:
                raise
            # the same jti raced in on another connection
            raise InvalidClient("The client assertion's jti was already used; sign a new assertion with a fresh jti.") from None
        if not authenticated:
            srv.token_failures.forgive(address)
            srv.rate.hit(client)
    except OAuthError as exc:
        if blocked and not authenticated:
            slow = SlowDown(f"Too many failed token requests from this address; retry after {blocked} seconds.", blocked)
            return oauth_error(slow, request, cors_open=True)
        return oauth_error(exc, request, cors_open=True)
    return json_response(body, headers=cors(request))


async def _refresh_client(srv: SmartServer, form: FormData) -> str:
    """The client an anonymous refresh is for: the one its refresh token names ("" if none)."""
    value = _field(form, "refresh_token")
    if not value:
        return ""
    _row, grant = await srv.reading(lambda conn: G.find_refresh(conn, value))
    return grant.client_id if grant else ""


def _result(w: WriteSession, fn: Any) -> Any:
    """Run a grant step; a GrantError becomes a value so the transaction still commits."""
    try:
        return fn()
    except G.GrantError as exc:
        return exc


def _token_body(
    srv: SmartServer, w: WriteSession, grant: G.Grant, scope: str, *, refresh: bool, nonce: str | None = None,
    auth_time: int | None = None, with_id_token: bool = True,
) -> dict[str, Any]:
    ctx_extra = grant.context
    role = str(ctx_extra.get("role", ""))
    fhir_user = str(ctx_extra.get("fhir_user", ""))
    ctx = TokenContext(
        client_id=grant.client_id, scope=scope, grant_id=grant.id, sub=grant.user_id or grant.client_id, role=role,
        fhir_user=srv.absolute_user(fhir_user), patient=grant.patient, encounter=grant.encounter,
    )
    lifetime = srv.settings.access_token_lifetime
    access, _exp = srv.tokens.access_token(ctx, lifetime)
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}
    scopes = parse_scopes(scope)
    if grant.patient:
        body["patient"] = grant.patient
    if grant.encounter:
        body["encounter"] = grant.encounter
    for key in ("need_patient_banner", "smart_style_url", "practice_id", "fhirContext", "intent", "tenant"):
        if key in ctx_extra:
            body[key] = ctx_extra[key]
    if with_id_token and grant.user_id and "openid" in scopes:  # OpenID Connect Core §3.1.3.3: openid alone asks
        user_claim = "fhirUser" in scopes or "profile" in scopes
        body["id_token"] = srv.tokens.id_token(
            client_id=grant.client_id, sub=grant.user_id, fhir_user=srv.absolute_user(fhir_user) if user_claim else "",
            nonce=nonce, lifetime=lifetime, auth_time=auth_time,
        )
    if refresh and ("offline_access" in scopes or "online_access" in scopes):
        body["refresh_token"] = G.issue_refresh(w.conn, grant, now=srv.now(), lifetime=_refresh_lifetime(srv, grant))
    return body


def _refresh_lifetime(srv: SmartServer, grant: G.Grant) -> int | None:
    """Seconds a refresh token of ``grant`` lives (None: no expiry): offline_access grants by the
    ``refresh_token_lifetime`` setting, online_access ones as long as a sign-in."""
    life = srv.settings.refresh_token_lifetime if grant.offline else srv.settings.session_lifetime
    return life or None


async def _authorization_code(srv: SmartServer, request: Request, form: FormData, auth: ClientAuth) -> dict[str, Any]:
    code = _field(form, "code")
    if not code:
        raise InvalidRequest("Missing 'code'.")
    redirect_uri = _field(form, "redirect_uri")
    verifier = _field(form, "code_verifier")
    if auth.app is None:
        raise InvalidClient("No client identification.")
    if not auth.app.redirect_uris:
        raise UnauthorizedClient(f"Client {auth.client_id!r} is not registered for the authorization_code grant.")
    registered = auth.app.redirect_uris

    def step(w: WriteSession) -> Any:
        claim_jti(srv, w, auth)
        use = _result(w, lambda: G.use_code(w.conn, code, client_id=auth.client_id, now=srv.now()))
        if isinstance(use, G.GrantError):
            if use.revoked_grant:
                srv.audit(w, "token-issue", request, outcome="serious", client_id=auth.client_id,
                          grant_id=use.revoked_grant, description="Authorization code replayed; the grant was revoked.")
            return InvalidGrant(str(use)), use.revoked_grant
        # "" stored: the authorization request left redirect_uri out (one registered), so may this one
        if redirect_uri != use.redirect_uri and not (use.redirect_uri == "" and redirect_uri in registered):
            return InvalidGrant("redirect_uri does not match the one sent to the authorize endpoint."), None
        try:
            verify(verifier, use.code_challenge, use.challenge_method)
        except PkceError as exc:
            return InvalidGrant(str(exc)), None
        grant = use.grant
        body = _token_body(srv, w, grant, grant.scope, refresh=True, nonce=use.nonce, auth_time=use.auth_time)
        srv.audit(w, "token-issue", request, client_id=grant.client_id, user=grant.context.get("fhir_user") or None,
                  patient=grant.patient, grant_id=grant.id, description="Tokens issued for an authorization code.")
        return body, None

    out, revoked = await srv.writing(step)
    srv.forget_grant(revoked)
    if isinstance(out, OAuthError):
        raise out
    log.info("token issued client=%s grant_type=authorization_code", auth.client_id)
    return out  # type: ignore[no-any-return]


async def _refresh_token(srv: SmartServer, request: Request, form: FormData, auth: ClientAuth) -> dict[str, Any]:
    """Reuse detection comes before every other check of the request (RFC 6749 §10.4, OAuth 2.0
    Security BCP §4.14): a rotated refresh token presented again revokes its grant whatever scope or
    client the request names."""
    value = _field(form, "refresh_token")
    if not value:
        raise InvalidRequest("Missing 'refresh_token'.")

    def refused(w: WriteSession, error: G.GrantError, client_id: str) -> tuple[OAuthError, str | None]:
        if error.revoked_grant:
            srv.audit(w, "token-refresh", request, outcome="serious", client_id=client_id,
                      grant_id=error.revoked_grant, description="A rotated refresh token was reused; the grant was revoked.")
        return InvalidGrant(str(error)), error.revoked_grant

    def step(w: WriteSession) -> Any:
        claim_jti(srv, w, auth)
        row, grant = G.find_refresh(w.conn, value)
        if row is None or grant is None:
            return InvalidGrant("The refresh token is not valid."), None
        if row.used is not None:  # rotated or revoked: use_refresh refuses it, revoking the grant on reuse
            reused = _result(w, lambda: G.use_refresh(w.conn, value, now=srv.now()))
            assert isinstance(reused, G.GrantError)
            return refused(w, reused, grant.client_id)
        try:
            requested = parse_scopes(_field(form, "scope")) if _field(form, "scope") else None
        except ScopeError as exc:
            return InvalidScope(str(exc)), None
        if auth.app is None:
            owner = srv_app_sync(w, grant.client_id)
            if owner is None or not owner.public:
                return InvalidClient("Authenticate the client to refresh its tokens."), None
        elif grant.client_id != auth.client_id:
            return InvalidGrant("The refresh token was issued to another client."), None
        scope = grant.scope
        if requested is not None:
            wider = requested.uncovered_by(parse_scopes(grant.scope))
            if wider:
                return InvalidScope(
                    f"Scope {wider[0].raw!r} was not part of the original grant; a refresh can only keep or narrow scopes."
                ), None
            scope = str(requested)
        used = _result(w, lambda: G.use_refresh(w.conn, value, now=srv.now()))
        if isinstance(used, G.GrantError):
            return refused(w, used, grant.client_id)
        body = _token_body(srv, w, used, scope, refresh=True, with_id_token=False)
        if "refresh_token" not in body:  # the narrowed scope dropped offline/online access: keep refreshing possible
            body["refresh_token"] = G.issue_refresh(w.conn, used, now=srv.now(), lifetime=_refresh_lifetime(srv, used))
        srv.audit(w, "token-refresh", request, client_id=used.client_id, user=used.context.get("fhir_user") or None,
                  patient=used.patient, grant_id=used.id, description="Access token refreshed.")
        return body, None

    out, revoked = await srv.writing(step)
    srv.forget_grant(revoked)
    if isinstance(out, OAuthError):
        raise out
    return out  # type: ignore[no-any-return]


def srv_app_sync(w: WriteSession, client_id: str) -> App | None:
    from .apps import get_app

    return get_app(w.conn, client_id)


async def _client_credentials(srv: SmartServer, request: Request, form: FormData, auth: ClientAuth) -> dict[str, Any]:
    app = auth.app
    if app is None or app.public:
        raise UnauthorizedClient("client_credentials needs a confidential client (SMART Backend Services: private_key_jwt).")
    try:
        requested = parse_scopes(_field(form, "scope") or " ".join(
            s.raw for s in app.allowed_scopes if s.resource and s.resource.context == "system"))
    except ScopeError as exc:
        raise InvalidScope(str(exc)) from None
    if not len(requested):
        raise InvalidScope(f"Client {app.client_id!r} has no system/ scopes registered; request e.g. scope=system/*.rs.")
    bad = [s.raw for s in requested if s.resource is None or s.resource.context != "system"]
    if bad:
        raise InvalidScope(f"Scope {bad[0]!r} cannot be used with client_credentials; request system/ scopes.")
    outside = requested.uncovered_by(app.allowed_scopes)
    if outside:
        raise InvalidScope(f"Scope {outside[0].raw!r} is not registered for client {app.client_id!r}.")
    scope = str(requested)

    def step(w: WriteSession) -> dict[str, Any]:
        claim_jti(srv, w, auth)
        grant = G.create_grant(w.conn, client_id=app.client_id, user_id=None, scope=scope, now=srv.now())
        body = _token_body(srv, w, grant, scope, refresh=False, with_id_token=False)
        srv.audit(w, "token-issue", request, client_id=app.client_id, grant_id=grant.id,
                  description="Backend services token issued (client_credentials).")
        return body

    return await srv.writing(step)


GRANT_TYPES = {
    "authorization_code": _authorization_code,
    "refresh_token": _refresh_token,
    "client_credentials": _client_credentials,
}


# -- introspection and revocation -------------------------------------------------------------


async def _introspecting_caller(srv: SmartServer, request: Request, form: FormData) -> tuple[str, bool]:
    """RFC 7662 §2.1: who asks, as (client_id, whether it may see every client's tokens). A client -
    a confidential one authenticated as at the token endpoint, a public one by its client_id - sees
    its own tokens; a bearer access token of this server with a system/ scope (a resource server)
    sees every token."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        auth = await authenticate(srv, request, form, allow_anonymous=True)
        if not auth.client_id:
            raise InvalidClient("Introspection needs authorization (RFC 7662 §2.1): authenticate the client whose token it "
                                "is (a public client sends its client_id), or send a bearer token with a system/ scope.")
        return auth.client_id, False
    if _field(form, "client_secret") or _field(form, "client_assertion"):
        raise InvalidRequest("The request authorizes in more than one way (a bearer token and client credentials); use one.")
    ctx = srv.policy.context(value.strip())
    if ctx is None or ctx.exp <= srv.clock() or (ctx.grant_id and not await srv._grant_active(ctx.grant_id)):
        raise InvalidToken("The bearer token is not a current access token of this server.", realm=srv.policy.realm)
    if not any(s.context == "system" for s in ctx.scopes.resource_scopes):
        raise InsufficientScope("Introspecting with a bearer token needs a system/ scope (a backend services token); "
                                "a client introspecting its own tokens authenticates as itself instead.", realm=srv.policy.realm)
    return ctx.client_id, True


async def introspect(srv: SmartServer, request: Request) -> Response:
    """RFC 7662. The caller must be authorized (§2.1, against token scanning; see
    ``_introspecting_caller``). §2.2: a token the caller may not see - another client's, access and
    refresh tokens alike - is answered ``active: false``, as an unknown one is."""
    if request.method == "OPTIONS":
        return preflight(request)
    try:
        form = await _form(request)
        caller, sees_all = await _introspecting_caller(srv, request, form)
    except OAuthError as exc:
        return oauth_error(exc, request, cors_open=True)
    value = _field(form, "token")
    inactive = json_response({"active": False}, headers=cors(request))
    if not value:
        return inactive
    ctx = srv.policy.context(value)
    if ctx is not None:
        if not (sees_all or ctx.client_id == caller):
            return inactive
        if ctx.exp <= srv.clock() or (ctx.grant_id and not await srv._grant_active(ctx.grant_id)):
            return inactive
        body: dict[str, Any] = {
            "active": True, "client_id": ctx.client_id, "scope": ctx.scope, "exp": ctx.exp, "iss": srv.issuer,
            "sub": ctx.sub, "token_type": "Bearer",
        }
        if ctx.patient:
            body["patient"] = ctx.patient
        if ctx.encounter:
            body["encounter"] = ctx.encounter
        if ctx.fhir_user:
            body["fhirUser"] = ctx.fhir_user
        return json_response(body, headers=cors(request))
    row, grant = await srv.reading(lambda conn: G.find_refresh(conn, value))
    if row is None or grant is None or grant.revoked is not None or row.used is not None:
        return inactive
    if row.expires is not None and row.expires <= srv.now():
        return inactive
    if not (sees_all or grant.client_id == caller):
        return inactive
    body = {"active": True, "client_id": grant.client_id, "scope": grant.scope, "iss": srv.issuer,
            "sub": grant.user_id or grant.client_id, "token_type": "refresh_token"}
    if row.expires is not None:
        body["exp"] = row.expires
    if grant.patient:
        body["patient"] = grant.patient
    return json_response(body, headers=cors(request))


async def revoke(srv: SmartServer, request: Request) -> Response:
    """RFC 7009: revoking an access or refresh token ends its whole grant. Unknown tokens: 200."""
    if request.method == "OPTIONS":
        return preflight(request)
    try:
        form = await _form(request)
        auth = await authenticate(srv, request, form, allow_anonymous=True)
        value = _field(form, "token")
        if not value:
            raise InvalidRequest("Missing 'token'.")
    except OAuthError as exc:
        return oauth_error(exc, request, cors_open=True)
    ctx = srv.policy.context(value)
    grant_id = ctx.grant_id if ctx else None
    client_id = ctx.client_id if ctx else None
    if grant_id is None:
        _row, grant = await srv.reading(lambda conn: G.find_refresh(conn, value))
        if grant is not None:
            grant_id, client_id = grant.id, grant.client_id
    if grant_id and client_id:
        # RFC 7009 §2.1: a confidential client authenticates, and a client revokes only its own tokens
        if auth.app is None:
            owner = await srv.app(client_id)
            if owner is not None and not owner.public:
                return oauth_error(InvalidClient(f"Client {client_id!r} is confidential; authenticate it to revoke its "
                                                 "tokens."), request, cors_open=True)
        elif auth.client_id != client_id:
            return oauth_error(InvalidGrant("The token was issued to another client; a client can revoke only its own "
                                            "tokens."), request, cors_open=True)

    if grant_id:

        def step(w: WriteSession) -> None:
            if G.revoke_grant(w.conn, grant_id, reason="revoked", now=srv.now()):
                srv.audit(w, "token-revoke", request, client_id=client_id, grant_id=grant_id,
                          description="Token revoked; the grant and all its tokens ended.")

        await srv.writing(step)
        srv.forget_grant(grant_id)
    return Response(None, 200, {**cors(request), "Cache-Control": "no-store"})

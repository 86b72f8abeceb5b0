"""A SMART App Launch 2.2 client: discovery, PKCE (S256), standalone and EHR launch, the code
exchange, refresh, and SMART Backend Services (client_credentials with private_key_jwt)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from ._errors import AuthorizationError, DiscoveryError, StateMismatch, TokenRequestError
from ._transport import HttpResponse, Transport, UrllibTransport

__all__ = ["AuthorizationRequest", "SmartClient", "SmartConfiguration", "TokenSet", "pkce_pair"]

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636 §4.1–4.2."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass(frozen=True)
class SmartConfiguration:
    fhir_base: str
    authorization_endpoint: str
    token_endpoint: str
    capabilities: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.raw.get(key)


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str
    redirect_uri: str
    scope: str


@dataclass
class TokenSet:
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None
    patient: str | None = None
    encounter: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    obtained_at: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenSet:
        return cls(str(data["access_token"]), str(data.get("token_type", "Bearer")), int(data.get("expires_in") or 0),
                   str(data.get("scope", "")), data.get("refresh_token"), data.get("id_token"), data.get("patient"),
                   data.get("encounter"), dict(data))

    @property
    def expired(self) -> bool:
        return bool(self.expires_in) and time.time() >= self.obtained_at + self.expires_in - 30

    @property
    def scopes(self) -> set[str]:
        return set(self.scope.split())

    @property
    def fhir_context(self) -> list[dict[str, Any]]:
        """``fhirContext`` of the token response as SMART 2.2 objects (``reference``, ``canonical`` or
        ``identifier``, with ``type``/``role`` when sent); STU2's ``"Type/id"`` strings are converted."""
        items = self.raw.get("fhirContext") or []
        if not isinstance(items, list):
            return []
        return [{"reference": i} if isinstance(i, str) else dict(i) for i in items if isinstance(i, (str, dict))]

    def __repr__(self) -> str:  # never print tokens
        return f"TokenSet(scope={self.scope!r}, patient={self.patient!r}, expires_in={self.expires_in})"


class SmartClient:
    """One app talking to one FHIR server. Authentication: public (``client_id`` only), symmetric
    (``client_secret``, sent with HTTP Basic) or asymmetric (``private_key`` — a joserfc key with a
    ``kid``, signing RS384 or ES384 assertions)."""

    def __init__(
        self, fhir_base: str, client_id: str, *, redirect_uri: str = "", client_secret: str | None = None,
        private_key: Any = None, assertion_alg: str | None = None, transport: Transport | None = None,
    ) -> None:
        self.fhir_base = fhir_base.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.client_secret = client_secret
        self.private_key = private_key
        self.assertion_alg = assertion_alg or ("ES384" if getattr(private_key, "key_type", "") == "EC" else "RS384")
        self.transport: Transport = transport or UrllibTransport()
        self._config: SmartConfiguration | None = None

    # -- discovery ------------------------------------------------------------------------------

    def discover(self) -> SmartConfiguration:
        if self._config is not None:
            return self._config
        url = self.fhir_base + "/.well-known/smart-configuration"
        resp = self.transport.request("GET", url, headers={"Accept": "application/json"})
        if resp.status != 200:
            raise DiscoveryError(f"{url} answered HTTP {resp.status}; is {self.fhir_base} a SMART-enabled FHIR server?")
        doc = resp.json()
        if not isinstance(doc, dict):
            raise DiscoveryError(f"{url} is not a JSON object; is {self.fhir_base} a SMART-enabled FHIR server?")
        for key in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(doc.get(key), str):
                raise DiscoveryError(f"{url} has no {key}.")
        if "S256" not in (doc.get("code_challenge_methods_supported") or []):
            raise DiscoveryError(f"{url} does not list S256 in code_challenge_methods_supported; refusing to launch without PKCE.")
        self._config = SmartConfiguration(self.fhir_base, doc["authorization_endpoint"], doc["token_endpoint"],
                                          tuple(doc.get("capabilities") or ()), doc)
        return self._config

    # -- launches -------------------------------------------------------------------------------

    def authorization_request(self, scope: str, *, launch: str | None = None, aud: str | None = None,
                              nonce: str | None = None) -> AuthorizationRequest:
        """The URL to send the browser to (standalone launch; EHR launch when ``launch`` is given)."""
        if not self.redirect_uri:
            raise ValueError("SmartClient needs a redirect_uri for the authorization code flow.")
        config = self.discover()
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri, "scope": scope,
                  "state": state, "aud": aud or self.fhir_base, "code_challenge": challenge, "code_challenge_method": "S256"}
        if launch:
            params["launch"] = launch
        if nonce:
            params["nonce"] = nonce
        return AuthorizationRequest(config.authorization_endpoint + "?" + urlencode(params), state, verifier,
                                    self.redirect_uri, scope)

    def ehr_launch(self, launch_url: str, scope: str, **kwargs: Any) -> AuthorizationRequest:
        """Handle the EHR's request to our launch URL (``?iss=…&launch=…``)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(launch_url).query).items()}
        iss, launch = query.get("iss"), query.get("launch")
        if not iss or not launch:
            raise AuthorizationError("invalid_request", "The launch URL must carry iss and launch.")
        if iss.rstrip("/") != self.fhir_base:
            raise AuthorizationError("invalid_request", f"The launch came from {iss}, not the configured server {self.fhir_base}.")
        scope_with_launch = scope if "launch" in scope.split() else f"launch {scope}"
        return self.authorization_request(scope_with_launch, launch=launch, **kwargs)

    def complete(self, request: AuthorizationRequest, callback_url: str) -> TokenSet:
        """Check the redirect (state, error) and exchange the code."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
        if query.get("state") != request.state:
            raise StateMismatch()
        if "error" in query:
            raise AuthorizationError(query["error"], query.get("error_description", ""))
        if "code" not in query:
            raise AuthorizationError("invalid_request", "The redirect carries neither code nor error.")
        return self._token({"grant_type": "authorization_code", "code": query["code"],
                            "redirect_uri": request.redirect_uri, "code_verifier": request.code_verifier},
                           default_scope=request.scope)

    def refresh(self, tokens: TokenSet, scope: str | None = None) -> TokenSet:
        if not tokens.refresh_token:
            raise TokenRequestError(400, "invalid_request", "These tokens have no refresh_token (ask for offline_access).")
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        if scope:
            form["scope"] = scope
        fresh = self._token(form, default_scope=scope or tokens.scope)
        if fresh.refresh_token is None:
            fresh.refresh_token = tokens.refresh_token
        for key in ("patient", "encounter"):
            if getattr(fresh, key) is None:
                setattr(fresh, key, getattr(tokens, key))
        return fresh

    def backend_token(self, scope: str) -> TokenSet:
        """SMART Backend Services: client_credentials with a signed assertion."""
        if self.private_key is None:
            raise ValueError("backend_token needs private_key (a joserfc RSA or EC key with a kid).")
        return self._token({"grant_type": "client_credentials", "scope": scope}, default_scope=scope)

    # -- FHIR calls -----------------------------------------------------------------------------

    def get(self, path: str, tokens: TokenSet) -> HttpResponse:
        url = path if path.startswith("http") else f"{self.fhir_base}/{path.lstrip('/')}"
        return self.transport.request("GET", url, headers={"Authorization": f"Bearer {tokens.access_token}",
                                                           "Accept": "application/fhir+json"})

    # -- token endpoint -------------------------------------------------------------------------

    def _assertion(self, audience: str) -> str:
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now, "exp": now + 240,
                  "jti": secrets.token_urlsafe(16)}
        header = {"alg": self.assertion_alg, "kid": self.private_key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.private_key, algorithms=[self.assertion_alg])

    def _token(self, form: dict[str, str], default_scope: str = "") -> TokenSet:
        """``default_scope``: the scope granted when the response leaves ``scope`` out (RFC 6749 §5.1:
        it is then the one requested; after a refresh, §6, the original grant's)."""
        config = self.discover()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if self.private_key is not None:
            form = {**form, "client_assertion_type": JWT_BEARER, "client_assertion": self._assertion(config.token_endpoint)}
        elif self.client_secret:
            from urllib.parse import quote

            basic = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        else:
            form = {**form, "client_id": self.client_id}
        resp = self.transport.request("POST", config.token_endpoint, headers=headers, body=urlencode(form).encode())
        if resp.status != 200:
            try:
                data = resp.json()
            except Exception:  # noqa: BLE001 - an error page or garbage
                data = {}
            if not isinstance(data, dict):
                data = {}
            raise TokenRequestError(resp.status, str(data.get("error", "http_error")), str(data.get("error_description", "")))
        data = resp.json()
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise TokenRequestError(resp.status, "invalid_response", "The token response has no access_token.")
        try:
            tokens = TokenSet.from_json(data)
        except (TypeError, ValueError):
            raise TokenRequestError(resp.status, "invalid_response",
                                    f"The token response's expires_in {data.get('expires_in')!r} is not a number of seconds.") from None
        if "scope" not in data:
            tokens.scope = default_scope
        return tokens

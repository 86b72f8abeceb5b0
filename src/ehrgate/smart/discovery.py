"""Discovery documents: ``.well-known/smart-configuration`` (SMART App Launch 2.2 §Conformance),
``.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 §3), the JWKS and the style
document behind ``smart_style_url``. All public and CORS-open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from .keys import ALG
from .tokens import ASSERTION_ALGS
from .web import cors, json_response, preflight

if TYPE_CHECKING:
    from .server import SmartServer

__all__ = ["CAPABILITIES", "jwks", "openid_configuration", "smart_configuration", "style"]

CAPABILITIES = (
    "launch-ehr", "launch-standalone", "authorize-post",
    "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
    "sso-openid-connect", "context-banner", "context-style",
    "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
    "permission-offline", "permission-online", "permission-patient", "permission-user",
    "permission-v1", "permission-v2",
)
SCOPES_SUPPORTED = (
    "openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access",
    "patient/*.cruds", "user/*.cruds", "system/*.cruds", "patient/*.read", "user/*.read", "system/*.read",
    "patient/*.write", "user/*.write", "system/*.write", "patient/*.rs", "user/*.rs", "system/*.rs",
)
INTROSPECTION_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
"""RFC 8414 §2; "none": a public client, for its own tokens. A bearer token with a system/ scope is
accepted too (RFC 7662 §2.1), which is not a client authentication method and so is not listed."""
REVOCATION_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
"""RFC 8414 §2 / RFC 7009 §2.1: a confidential client authenticates as at the token endpoint; "none":
a public client names itself (``client_id``) and may revoke only its own tokens."""
STYLE = {
    "color_background": "#f6f8fa",
    "color_error": "#cf222e",
    "color_highlight": "#0b4f6c",
    "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
    "color_success": "#1a7f37",
    "color_text": "#1b1f24",
    "dim_border_radius": "6px",
    "dim_font_size": "16px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    "font_family_heading": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
}


def smart_configuration_document(srv: SmartServer) -> dict[str, Any]:
    auth = srv.auth_base
    return {
        "issuer": srv.issuer,
        "jwks_uri": auth + "/jwks",
        "authorization_endpoint": auth + "/authorize",
        "token_endpoint": srv.token_url,
        "introspection_endpoint": auth + "/introspect",
        "revocation_endpoint": auth + "/revoke",
        "management_endpoint": srv.origin + "/auth/apps",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": list(INTROSPECTION_AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": list(REVOCATION_AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "scopes_supported": list(SCOPES_SUPPORTED),
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(CAPABILITIES),
    }


async def smart_configuration(srv: SmartServer, request: Request) -> Response:
    if request.method == "OPTIONS":
        return preflight(request)
    return json_response(smart_configuration_document(srv), no_store=False, headers=cors(request))


async def openid_configuration(srv: SmartServer, request: Request) -> Response:
    if request.method == "OPTIONS":
        return preflight(request)
    doc = {
        "issuer": srv.issuer,
        "authorization_endpoint": srv.auth_base + "/authorize",
        "token_endpoint": srv.token_url,
        "jwks_uri": srv.auth_base + "/jwks",
        "introspection_endpoint": srv.auth_base + "/introspect",
        "introspection_endpoint_auth_methods_supported": list(INTROSPECTION_AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint": srv.auth_base + "/revoke",
        "revocation_endpoint_auth_methods_supported": list(REVOCATION_AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALG],
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "auth_time", "fhirUser"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,  # Discovery §3: true when left out
    }
    return json_response(doc, no_store=False, headers=cors(request))


async def jwks(srv: SmartServer, request: Request) -> Response:
    if request.method == "OPTIONS":
        return preflight(request)
    srv.keys.maybe_reload()
    return json_response(srv.keys.jwks(), no_store=False, headers={**cors(request), "Cache-Control": "max-age=60"})


async def style(srv: SmartServer, request: Request) -> Response:
    if request.method == "OPTIONS":
        return preflight(request)
    return json_response(STYLE, no_store=False, headers={**cors(request), "Cache-Control": "max-age=3600"})

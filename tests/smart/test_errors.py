"""OAuth errors render themselves (status, body, headers) without a web framework."""

from __future__ import annotations

import json

from ehrgate.smart import errors as e


def test_each_rfc6749_code_has_a_class() -> None:
    codes = {cls.error for cls in vars(e).values() if isinstance(cls, type) and issubclass(cls, e.OAuthError)}
    assert {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
            "unsupported_response_type", "invalid_scope", "access_denied", "server_error",
            "temporarily_unavailable"} <= codes


def test_render() -> None:
    status, body, headers = e.InvalidGrant("The code has expired; start the authorization again.").render()
    assert status == 400
    assert json.loads(body) == {"error": "invalid_grant", "error_description": "The code has expired; start the authorization again."}
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"
    assert e.InvalidClient("x").render()[0] == 401
    status, _, headers = e.SlowDown("Too many token requests.", 7).render()
    assert status == 429 and headers["Retry-After"] == "7"
    assert e.AccessDenied("The user denied access.").redirect_query("s1") == (
        "error=access_denied&error_description=The+user+denied+access.&state=s1"
    )


def test_every_401_names_an_authentication_scheme() -> None:
    """RFC 7235 §3.1: a 401 carries WWW-Authenticate. RFC 6749 §5.2 lets invalid_client be a 401 to
    say which schemes the token endpoint takes, so every invalid_client names Basic (browsers do not
    prompt for it on a cross-origin request), whether or not the client used the header."""
    for exc in (e.InvalidClient("Client 'x' is not registered."),
                e.InvalidClient("wrong secret", headers={"WWW-Authenticate": 'Basic realm="token"'})):
        status, _, headers = exc.render()
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="token"'
    for bearer_exc in (e.InvalidToken("expired", realm="http://x/fhir"), e.InsufficientScope("no system/", realm="http://x/fhir")):
        status, body, headers = bearer_exc.render()
        assert status == 401 and headers["WWW-Authenticate"] == f'Bearer realm="http://x/fhir", error="{bearer_exc.error}"'
        assert json.loads(body)["error"] == bearer_exc.error

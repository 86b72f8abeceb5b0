"""SMART Backend Services: client_credentials with private_key_jwt (RS384 and ES384)."""

from __future__ import annotations

import pytest

from .conftest import TOKEN_URL, World, backend_token, bearer, client_assertion

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_valid_assertion_gets_a_token(world: World, alg: str) -> None:
    r = backend_token(world.client, world.keys[alg], alg)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int) and body["scope"] == "system/*.rs"
    assert "refresh_token" not in body and "id_token" not in body
    assert r.headers["cache-control"] == "no-store"
    search = world.client.get("/fhir/Observation", headers=bearer(body["access_token"]))
    assert search.status_code == 200 and search.json()["total"] >= 4  # every patient's
    write = world.client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=bearer(body["access_token"]))
    assert write.status_code == 403 and "Patient" in write.text


def test_jti_replay_is_rejected(world: World) -> None:
    assertion = client_assertion(world.keys["RS384"], "RS384")
    data = {"grant_type": "client_credentials", "scope": "system/*.rs", "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion}
    first = world.client.post("/auth/token", data=data)
    assert first.status_code == 200
    from .conftest import remember

    remember(first.json()["access_token"])
    again = world.client.post("/auth/token", data=data)
    assert again.status_code == 401 and "jti" in again.json()["error_description"]


def test_bad_grant_type(world: World) -> None:
    r = world.client.post("/auth/token", data={"grant_type": "not_a_grant_type", "client_assertion_type": JWT_BEARER,
                                               "client_assertion": client_assertion(world.keys["RS384"], "RS384")})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_bad_assertion_type(world: World) -> None:
    r = world.client.post("/auth/token", data={"grant_type": "client_credentials", "client_assertion_type": "not_an_assertion_type",
                                               "client_assertion": client_assertion(world.keys["RS384"], "RS384")})
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


@pytest.mark.parametrize("over", [
    {"iss": "not_a_valid_iss"}, {"sub": "someone-else"}, {"aud": "http://testserver/wrong"},
    {"exp": 1}, {"exp": 4102444800}, {"jti": None},
])
def test_invalid_assertions(world: World, over: dict) -> None:
    r = backend_token(world.client, world.keys["RS384"], "RS384", **over)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_scopes_outside_registration(world: World) -> None:
    r = backend_token(world.client, world.keys["ES384"], "ES384", scope="system/*.cruds")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = backend_token(world.client, world.keys["ES384"], "ES384", scope="patient/*.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    ok = backend_token(world.client, world.keys["ES384"], "ES384", scope="system/Observation.cruds")
    assert ok.status_code == 200


def test_public_client_cannot_use_client_credentials(world: World) -> None:
    r = world.client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "public-app", "scope": "system/*.rs"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_token_url_constant() -> None:
    assert TOKEN_URL.endswith("/auth/token")


def test_keys_from_jwks_uri(world: World, store) -> None:  # type: ignore[no-untyped-def]
    import json
    import threading
    import time as _time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from joserfc.jwk import RSAKey

    from ehrgate.smart.apps import App, add_app

    key = RSAKey.generate_key(2048, auto_kid=True)
    body = json.dumps({"keys": [key.as_dict(private=False)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        with store.writer() as w:
            add_app(w.conn, App("uri-svc", "URI service", "confidential-asymmetric", jwks_uri=uri, scopes="system/*.rs"),
                    now=int(_time.time()))
        assert backend_token(world.client, key, "RS384", client_id="uri-svc").status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_rotated_key_at_the_jwks_uri_is_fetched_at_once(world: World, store) -> None:  # type: ignore[no-untyped-def]
    """A client that rotates its key (SMART Backend Services: keys at the jwks_uri) is not refused for
    the five minutes its old JWKS is cached: an assertion whose kid the cached set lacks fetches the
    set again (at most every few seconds per URI, so unknown kids cannot make us fetch it in a loop)."""
    import json
    import threading
    import time as _time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from joserfc.jwk import ECKey

    from ehrgate.smart.apps import App, add_app

    old, new = ECKey.generate_key("P-384", auto_kid=True), ECKey.generate_key("P-384", auto_kid=True)
    served = {"keys": [old.as_dict(private=False)]}
    fetches = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            fetches.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(served).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        with store.writer() as w:
            add_app(w.conn, App("rotating", "Rotating", "confidential-asymmetric", jwks_uri=uri, scopes="system/*.rs"),
                    now=int(_time.time()))
        assert backend_token(world.client, old, "ES384", client_id="rotating").status_code == 200
        served["keys"] = [new.as_dict(private=False)]  # the client rotates
        cache = world.app.state.smart._jwks_cache
        fetched, keys = cache[uri]
        cache[uri] = (fetched - 20, keys)  # fetched 20 s ago, well inside the 5-minute cache
        r = backend_token(world.client, new, "ES384", client_id="rotating")
        assert r.status_code == 200, r.text
        assert len(fetches) == 2
        stranger = ECKey.generate_key("P-384", auto_kid=True)  # a kid nobody published: one more fetch at most
        for _ in range(3):
            assert backend_token(world.client, stranger, "ES384", client_id="rotating").status_code == 401
        assert len(fetches) == 2  # just fetched: not again
    finally:
        server.shutdown()
        server.server_close()

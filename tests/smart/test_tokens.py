"""Keys and JWTs: JWKS, rotation, access/id tokens, client assertions and the JWT attack cases."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from ehrgate.smart.keys import KeyRing
from ehrgate.smart.policy import TokenContext
from ehrgate.smart.tokens import TokenError, TokenIssuer, verify_client_assertion

ISS = "http://testserver/fhir"
TOKEN_URL = "http://testserver/auth/token"


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "keys")


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256_with_public_key(claims: dict, public_pem: bytes) -> str:
    """The attacker's forgery (joserfc itself refuses to build it): HMAC keyed with the public PEM."""
    signing_input = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(claims)
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(mac)


def test_keys_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    assert not (tmp_path / "keys").exists()  # nothing until first use
    kid = ring.active.kid
    files = list((tmp_path / "keys").glob("*.json"))
    assert len(files) == 2 and all(f.stat().st_mode & 0o077 == 0 for f in files)  # RS256 and ES256
    again = KeyRing(tmp_path / "keys")
    assert again.active.kid == kid and again.active_for("ES256").kid == ring.active_for("ES256").kid
    jwks = {k["alg"]: k for k in ring.jwks()["keys"]}
    assert set(jwks) == {"RS256", "ES256"}
    assert jwks["RS256"]["kid"] == ring.active.kid and jwks["RS256"]["kty"] == "RSA"
    assert jwks["ES256"]["kid"] == ring.active_for("ES256").kid and jwks["ES256"]["kty"] == "EC"
    assert jwks["ES256"]["crv"] == "P-256" and all("d" not in k for k in jwks.values())


def test_a_key_dir_from_before_es256_gets_an_ec_key(tmp_path: Path) -> None:
    import json as _json

    ring = KeyRing(tmp_path / "keys")
    rsa = ring.active
    for path in (tmp_path / "keys").glob("*.json"):  # leave only the RSA key, its JWK without "alg"
        data = _json.loads(path.read_text())
        if data["jwk"]["kty"] == "EC":
            path.unlink()
        else:
            data["jwk"].pop("alg", None)
            path.write_text(_json.dumps(data))
    old = KeyRing(tmp_path / "keys")
    assert old.active.kid == rsa.kid and old.active.alg == "RS256"
    assert old.active_for("ES256").key.as_dict()["crv"] == "P-256"


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_access_token_round_trip(ring: KeyRing, alg: str) -> None:
    issuer = TokenIssuer(ring, ISS, access_alg=alg)
    ctx = TokenContext("app", "patient/*.rs launch/patient", grant_id="g1", sub="u1", role="patient",
                       fhir_user=ISS + "/Patient/p1", patient="p1")
    token, exp = issuer.access_token(ctx, 300)
    decoded = jwt.decode(token, KeySet.import_key_set(ring.jwks()), algorithms=[alg])
    assert decoded.header["kid"] == ring.active_for(alg).kid
    back = issuer.verify_access_token(token)
    assert back.client_id == "app" and back.patient == "p1" and back.grant_id == "g1" and back.exp == exp
    assert back.scope == ctx.scope and back.role == "patient"
    # a change of access_token_alg leaves the tokens signed before it valid
    assert TokenIssuer(ring, ISS, access_alg="RS256" if alg == "ES256" else "ES256").verify_access_token(token).exp == exp


def test_rotation_keeps_old_tokens_valid_until_retired(tmp_path: Path) -> None:
    now = [1_000_000.0]
    ring = KeyRing(tmp_path / "keys", retire_after=3600, clock=lambda: now[0])
    issuer = TokenIssuer(ring, ISS, clock=lambda: now[0])
    old, _ = issuer.access_token(TokenContext("app", "system/*.rs"), 7200)
    old_kids = {k["kid"] for k in ring.jwks()["keys"]}
    new = {k.alg: k for k in ring.rotate()}
    assert set(new) == {"RS256", "ES256"} and not {k.kid for k in new.values()} & old_kids
    assert ring.active.kid == new["RS256"].kid and ring.active_for("ES256").kid == new["ES256"].kid
    assert {k["kid"] for k in ring.jwks()["keys"]} == old_kids | {k.kid for k in new.values()}
    issuer.verify_access_token(old)  # the retired key still verifies
    fresh, _ = issuer.access_token(TokenContext("app", "system/*.rs"), 60)
    assert jwt.decode(fresh, ring.keyset, algorithms=["ES256"]).header["kid"] == new["ES256"].kid
    # another process (the CLI) sees the rotation
    other = KeyRing(tmp_path / "keys", retire_after=3600, clock=lambda: now[0])
    assert other.active.kid == new["RS256"].kid
    now[0] += 3601
    ring.load()
    assert {k["kid"] for k in ring.jwks()["keys"]} == {k.kid for k in new.values()}
    with pytest.raises(TokenError):
        issuer.verify_access_token(old)


def test_access_token_attacks(ring: KeyRing, tmp_path: Path) -> None:
    issuer = TokenIssuer(ring, ISS)
    good, _ = issuer.access_token(TokenContext("app", "user/*.rs", role="clinician"), 300)
    header, payload, _sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "ES256"
    # alg none
    with pytest.raises(TokenError, match="algorithm 'none'"):
        issuer.verify_access_token(_b64({"alg": "none", "typ": "JWT"}) + "." + payload + ".")
    # HS256 "signed" with the public key
    forged = _hs256_with_public_key(claims, ring.active.key.as_pem(private=False))
    with pytest.raises(TokenError, match="'HS256'"):
        issuer.verify_access_token(forged)
    # another key with the same kid (of either kind)
    stranger = RSAKey.generate_key(2048)
    forged = jwt.encode({"alg": "RS256", "kid": ring.active.kid}, claims, stranger, algorithms=["RS256"])
    with pytest.raises(TokenError, match="signature"):
        issuer.verify_access_token(forged)
    ec_stranger = ECKey.generate_key("P-256")
    es_kid = ring.active_for("ES256").kid
    forged = jwt.encode({"alg": "ES256", "kid": es_kid}, claims, ec_stranger, algorithms=["ES256"])
    with pytest.raises(TokenError, match="signature"):
        issuer.verify_access_token(forged)
    # an algorithm that does not fit the key the kid names
    forged = jwt.encode({"alg": "RS256", "kid": es_kid}, claims, stranger, algorithms=["RS256"])
    with pytest.raises(TokenError, match="signature"):
        issuer.verify_access_token(forged)
    # tampered payload
    evil = dict(claims, scope="user/*.cruds")
    with pytest.raises(TokenError, match="signature"):
        issuer.verify_access_token(header + "." + _b64(evil) + "." + _sig)
    # wrong issuer / audience, expired
    with pytest.raises(TokenError, match="another server"):
        TokenIssuer(ring, "http://elsewhere/fhir").verify_access_token(good)
    expired, _ = TokenIssuer(ring, ISS, clock=lambda: time.time() - 1000).access_token(TokenContext("app", "x"), 60)
    with pytest.raises(TokenError, match="expired"):
        issuer.verify_access_token(expired)
    with pytest.raises(TokenError, match="not a JWT"):
        issuer.verify_access_token("garbage")


def test_id_token(ring: KeyRing) -> None:
    token = TokenIssuer(ring, ISS).id_token(client_id="app", sub="u1", fhir_user=ISS + "/Patient/p1", nonce="n1", lifetime=300)
    decoded = jwt.decode(token, KeySet.import_key_set(ring.jwks()), algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256" and decoded.header["kid"] == ring.active.kid
    c = decoded.claims
    assert (c["iss"], c["sub"], c["aud"], c["nonce"], c["fhirUser"]) == (ISS, "u1", "app", "n1", ISS + "/Patient/p1")
    assert c["exp"] > time.time() and "iat" in c


# -- client assertions (RFC 7523) -----------------------------------------------------------------

@pytest.fixture(params=["RS384", "ES384"])
def client_key(request: pytest.FixtureRequest) -> tuple[str, object]:
    if request.param == "RS384":
        return "RS384", RSAKey.generate_key(2048, auto_kid=True)
    return "ES384", ECKey.generate_key("P-384", auto_kid=True)


def _assertion(alg: str, key: object, **over: object) -> str:
    now = int(time.time())
    claims = {"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": now + 240, "iat": now, "jti": f"j{time.time_ns()}"}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])  # type: ignore[attr-defined]


def test_client_assertion_valid(client_key: tuple[str, object]) -> None:
    alg, key = client_key
    jwks = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})  # type: ignore[attr-defined]
    claims = verify_client_assertion(_assertion(alg, key), jwks, client_id="svc", token_url=TOKEN_URL)
    assert claims["iss"] == "svc" and claims["jti"]


@pytest.mark.parametrize(
    ("over", "message"),
    [({"iss": "not_a_valid_iss"}, "iss and sub"), ({"sub": "other"}, "iss and sub"),
     ({"aud": "http://evil/token"}, "aud must be the token URL"), ({"exp": int(time.time()) - 600}, "expired"),
     ({"exp": int(time.time()) + 3600}, "five minutes"), ({"jti": None}, "jti"), ({"exp": None}, "exp")],
)
def test_client_assertion_rejections(client_key: tuple[str, object], over: dict, message: str) -> None:
    alg, key = client_key
    jwks = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})  # type: ignore[attr-defined]
    with pytest.raises(TokenError, match=message):
        verify_client_assertion(_assertion(alg, key, **over), jwks, client_id="svc", token_url=TOKEN_URL)


def test_client_assertion_alg_attacks() -> None:
    key = RSAKey.generate_key(2048, auto_kid=True)
    jwks = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    claims = {"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": now + 60, "jti": "x"}
    with pytest.raises(TokenError, match="'none'"):
        verify_client_assertion(_b64({"alg": "none"}) + "." + _b64(claims) + ".", jwks, client_id="svc", token_url=TOKEN_URL)
    forged = _hs256_with_public_key(claims, key.as_pem(private=False))
    with pytest.raises(TokenError, match="'HS256'"):
        verify_client_assertion(forged, jwks, client_id="svc", token_url=TOKEN_URL)
    rs256 = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])
    with pytest.raises(TokenError, match="RS384 or ES384"):
        verify_client_assertion(rs256, jwks, client_id="svc", token_url=TOKEN_URL)
    other = RSAKey.generate_key(2048, auto_kid=True)
    wrong_key = jwt.encode({"alg": "RS384", "kid": key.kid}, claims, other, algorithms=["RS384"])
    with pytest.raises(TokenError, match="does not verify"):
        verify_client_assertion(wrong_key, jwks, client_id="svc", token_url=TOKEN_URL)

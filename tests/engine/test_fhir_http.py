"""The ``fhir_http`` destination with SMART Backend Services, against EHRGate itself with the API closed
(auth_required) on a real uvicorn server on 127.0.0.1: the destination discovers the token endpoint,
gets a client_credentials token with a signed assertion, keeps it until it expires, and gets a new one
when the server refuses it (401). No token or assertion reaches a log line (the smart log watch)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey

from ehrgate.engine import MessageStore, SearchQuery, load_channels
from ehrgate.engine.destinations import DESTINATIONS, Context
from ehrgate.engine.destinations.base import Payload
from ehrgate.engine.errors import ChannelConfigError
from tests.smart.conftest import log_watch, quick_argon2, remember  # noqa: F401 - fixtures

from .conftest import hl7, run
from .helpers import port_of, running, send, until

TO_BUNDLE = "tests.engine.channels.sample:to_bundle"


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from ehrgate.settings import load_settings

    return load_settings(None, overrides={"data_dir": str(tmp_path / "data"), "auth_required": True}, environ={})


def register(store: Any, client_id: str, key: Any, scopes: str) -> None:
    from ehrgate.smart import apps as A

    with store.writer() as w:
        A.add_app(w.conn, A.App(client_id, "Engine", "confidential-asymmetric",
                                jwks={"keys": [key.as_dict(private=False)]}, scopes=scopes), now=int(time.time()))


def count_patients(store: Any) -> int:
    with store.reader() as conn:
        deleted = "false" if store.dialect == "postgresql" else "0"
        return int(conn.exec_driver_sql(
            f"SELECT count(*) FROM resource WHERE res_type = 'Patient' AND deleted = {deleted}").scalar())


@pytest.mark.parametrize("kind", ["RSA-jwk", "EC-pem"])
def test_backend_services_token_is_used_cached_and_renewed(messages: MessageStore, store: Any, live_server: str,
                                                           tmp_path: Path, kind: str) -> None:
    if kind == "RSA-jwk":
        key: Any = RSAKey.generate_key(2048, auto_kid=True)
        key_file = tmp_path / "engine.jwk.json"
        key_file.write_text(json.dumps(key.as_dict(private=True)))
        auth = {"client_id": "engine", "key": key_file.name, "scope": "system/Patient.cruds"}
    else:
        key = ECKey.generate_key("P-384", auto_kid=False)
        key.ensure_kid()  # the PEM carries no kid: the destination uses the same thumbprint
        key_file = tmp_path / "engine.pem"
        key_file.write_bytes(key.as_pem(private=True))
        auth = {"client_id": "engine", "key": str(key_file), "scope": "system/Patient.cruds"}
    register(store, "engine", key, "system/Patient.cruds system/Observation.rs")
    chan = {"source": {"type": "mllp", "port": 0}, "transform": [TO_BUNDLE],
            "destinations": {"fhir": {"type": "fhir_http", "url": live_server, "auth": auth, "timeout": 10,
                                      "retry": {"max_attempts": 2, "base_delay": 0.05}}}}

    async def body() -> None:
        async with running(messages, {"adt": chan}, base=tmp_path) as eng:
            raws = [hl7(f"S{i}", patient=f"MRN{i}") for i in range(3)]
            assert await send(port_of(eng, "adt"), raws) == ["AA"] * 3
            await until(lambda: [r["status"] for r in messages.search(SearchQuery(channel="adt"))] == ["SENT"] * 3,
                        what="3 SENT")
            backend = eng.runtimes["adt"].destinations["fhir"].backend  # type: ignore[attr-defined]
            first = backend._token
            assert first and backend.token_url.endswith("/auth/token")
            remember(first)
            # one token for all three messages (cached until it expires) ...
            detail = messages.get(messages.search(SearchQuery(control_id="S2"))[0]["id"])
            assert detail is not None and detail["deliveries"][0]["response"].startswith(b"HTTP 200")
            assert first.encode() not in (detail["deliveries"][0]["request"] or b"")
            # ... and renewed when the server refuses it (401), as it does a revoked or expired token
            backend._token = "not-a-valid-token"
            assert await send(port_of(eng, "adt"), [hl7("S3", patient="MRN3")]) == ["AA"]
            await until(lambda: [r["status"] for r in messages.search(SearchQuery(control_id="S3"))] == ["SENT"],
                        what="S3 SENT after a new token")
            assert backend._token not in (None, "not-a-valid-token", first)
            remember(backend._token)
        assert count_patients(store) == 4

    run(body(), timeout=90)

    async def unauthorised() -> None:
        # a scope the client is not registered for: the token request is refused, the delivery says why
        bad = DESTINATIONS["fhir_http"](load_channels({"channels": {"x": {**chan, "destinations": {"fhir": {
            **chan["destinations"]["fhir"], "auth": {**auth, "scope": "system/*.cruds"}}}}}}, tmp_path)["x"].destinations[0],
            Context(base_dir=tmp_path))
        result = await bad.deliver(Payload(1, "x", b"", json.dumps({"resourceType": "Bundle", "type": "transaction",
                                                                    "entry": []}).encode(), "ADT^A01", "X1"))
        await bad.close()
        assert not result.ok and result.retry and "refused client 'engine': invalid_scope" in (result.error or "")

    run(unauthorised())


@pytest.mark.parametrize(("auth", "message"), [
    ("yes", "option 'auth' has value 'yes'"),
    ({"client_id": "x", "key": "k"}, "option 'auth.scope' has value None"),
    ({"client_id": "x", "key": "k", "scope": "s", "token_url": "ftp://x"}, "auth.token_url"),
    ({"client_id": "x", "key": "k", "scope": "s", "secret": "no"}, "unknown key(s) secret"),
])
def test_auth_options_are_checked(auth: Any, message: str, tmp_path: Path) -> None:
    chan = {"source": {"type": "mllp", "port": 0},
            "destinations": {"fhir": {"type": "fhir_http", "url": "http://127.0.0.1:9/fhir", "auth": auth}}}
    with pytest.raises(ChannelConfigError) as err:
        load_channels({"channels": {"adt": chan}}, tmp_path)
    assert message in err.value.message


def test_unreadable_key_is_a_delivery_error_not_a_crash(tmp_path: Path) -> None:
    chan = {"source": {"type": "mllp", "port": 0}, "destinations": {"fhir": {
        "type": "fhir_http", "url": "http://127.0.0.1:9/fhir",
        "auth": {"client_id": "x", "key": "missing.jwk", "scope": "system/*.rs", "token_url": "http://127.0.0.1:9/t"}}}}
    (tmp_path / "missing.jwk").write_text("{}")  # there at load (load_channels checks), gone by the first delivery
    cfg = load_channels({"channels": {"adt": chan}}, tmp_path)["adt"].destinations[0]
    (tmp_path / "missing.jwk").unlink()
    dest = DESTINATIONS["fhir_http"](cfg, Context(base_dir=tmp_path))
    payload = Payload(1, "adt", b"", b'{"resourceType": "Bundle", "type": "transaction", "entry": []}', "ADT^A01", "1")
    result = run(dest.deliver(payload))
    run(dest.close())
    assert not result.ok and "missing.jwk cannot be read" in (result.error or "")

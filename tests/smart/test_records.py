"""Persistence of the authorization server on SQLite and PostgreSQL: users, apps, sessions,
launches, grants, codes, refresh tokens, jtis."""

from __future__ import annotations

import pytest

from ehrgate.fhir.store.service import Store
from ehrgate.smart import apps as A
from ehrgate.smart import grants as G
from ehrgate.smart import launch as L
from ehrgate.smart import sessions as S
from ehrgate.smart import users as U

NOW = 1_700_000_000


def test_users(store: Store) -> None:
    with store.writer() as w:
        u = U.add_user(w.conn, username="drsmith", password="correct horse", role="clinician",
                       fhir_user="Practitioner/pr1", display_name="Dr Smith", now=NOW)
        with pytest.raises(U.UserError, match="already exists"):
            U.add_user(w.conn, username="drsmith", password="another one", role="clinician", now=NOW)
        with pytest.raises(U.UserError, match="Role 'nurse'"):
            U.add_user(w.conn, username="x", password="12345678", role="nurse", now=NOW)
        with pytest.raises(U.UserError, match="fhirUser 'Observation/1'"):
            U.add_user(w.conn, username="y", password="12345678", role="patient", fhir_user="Observation/1", now=NOW)
    with store.reader() as conn:
        assert U.authenticate(conn, "drsmith", "correct horse") == u
        assert U.authenticate(conn, "drsmith", "wrong") is None
        assert U.authenticate(conn, "nobody", "correct horse") is None
        assert U.get_user(conn, u.id) == u
        row = conn.exec_driver_sql("SELECT password_hash FROM smart_user").first()
        assert row[0].startswith("$argon2id$") and "correct horse" not in row[0]


def test_apps(store: Store) -> None:
    with store.writer() as w:
        app, secret = A.add_app(w.conn, A.App("conf", "Conf App", "confidential-symmetric",
                                              redirect_uris=("http://127.0.0.1:9/cb",)), now=NOW)
        assert secret and app.check_secret(secret) and not app.check_secret("nope")
        pub, none = A.add_app(w.conn, A.App("pub", "Pub", "public", redirect_uris=("http://127.0.0.1:9/cb",)), now=NOW)
        assert none is None
        with pytest.raises(A.AppError, match="already exists"):
            A.add_app(w.conn, pub, now=NOW)
    with store.reader() as conn:
        got = A.get_app(conn, "conf")
        assert got is not None and got.check_secret(secret) and got.redirect_uris == ("http://127.0.0.1:9/cb",)
        assert secret not in str(conn.exec_driver_sql("SELECT * FROM smart_app").all())
        assert [a.client_id for a in A.list_apps(conn)] == ["conf", "pub"]
    with store.writer() as w:
        new = A.rotate_secret(w.conn, "conf")
        with pytest.raises(A.AppError, match="only confidential-symmetric"):
            A.rotate_secret(w.conn, "pub")
        A.remove_app(w.conn, "pub")
        with pytest.raises(A.AppError, match="No app with client_id 'pub'"):
            A.remove_app(w.conn, "pub")
    with store.reader() as conn:
        got = A.get_app(conn, "conf")
        assert got and got.check_secret(new) and not got.check_secret(secret)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (A.App("a b", "X", "public", ("http://x/cb",)), "without spaces"),
        (A.App("a", "", "public", ("http://x/cb",)), "a name is required"),
        (A.App("a", "X", "secret", ("http://x/cb",)), "type 'secret'"),
        (A.App("a", "X", "public", ("ftp://x/cb",)), "redirect_uri 'ftp://x/cb'"),
        (A.App("a", "X", "public", ("http://x/cb#frag",)), "fragment"),
        (A.App("a", "X", "public", ()), "at least one redirect_uri"),
        (A.App("a", "X", "confidential-asymmetric"), "needs jwks or jwks_uri"),
        (A.App("a", "X", "public", ("http://x/cb",), scopes="patient/Obs.rr"), "Scope"),
        (A.App("a", "X", "confidential-asymmetric", jwks={"keys": [{"kty": "RSA"}]}), "not a valid JSON Web Key Set"),
    ],
)
def test_app_validation_names_the_problem(app: A.App, message: str) -> None:
    with pytest.raises(A.AppError, match=message):
        A.validate(app)


CONFIG = {
    "environments": ["dev", "prod"],
    "apps": [
        {"client_id": "growth", "name": "Growth Chart", "type": "public",
         "redirect_uris": {"dev": ["http://127.0.0.1:9000/cb"], "prod": ["https://growth.example.org/cb"]},
         "launch_url": {"dev": "http://127.0.0.1:9000/launch", "prod": "https://growth.example.org/launch"},
         "scopes": ["launch", "openid", "patient/*.rs"]},
        {"client_id": {"dev": "dev-only", "prod": None}, "name": "Debug", "type": "public",
         "redirect_uris": ["http://127.0.0.1:9001/cb"]},
    ],
}


def test_apps_from_config_per_environment() -> None:
    dev = A.apps_from_config(CONFIG, "dev")
    assert [a.client_id for a in dev] == ["growth", "dev-only"]
    assert dev[0].redirect_uris == ("http://127.0.0.1:9000/cb",) and dev[0].scopes == "launch openid patient/*.rs"
    prod = A.apps_from_config(CONFIG, "prod")
    assert [a.client_id for a in prod] == ["growth"] and prod[0].launch_url == "https://growth.example.org/launch"
    with pytest.raises(A.AppError, match="no value for environment 'test'"):
        A.apps_from_config({"environments": ["dev", "prod", "test"], "apps": CONFIG["apps"]}, "test")
    with pytest.raises(A.AppError, match="unknown field"):
        A.apps_from_config({"apps": [{"client_id": "x", "nmae": "typo"}]}, "dev")


def test_sync_config_apps(store: Store) -> None:
    with store.writer() as w:
        A.sync_config_apps(w.conn, A.apps_from_config(CONFIG, "dev"), now=NOW)
    with store.writer() as w:
        A.sync_config_apps(w.conn, A.apps_from_config(CONFIG, "prod"), now=NOW)
    with store.reader() as conn:
        assert [a.client_id for a in A.list_apps(conn)] == ["growth"]
        assert A.get_app(conn, "growth").redirect_uris == ("https://growth.example.org/cb",)  # type: ignore[union-attr]


def test_sessions_and_online_grants(store: Store) -> None:
    with store.writer() as w:
        sid = S.new_session(w.conn, "u1", now=NOW, lifetime=100)
        session = S.get_session(w.conn, sid, now=NOW)
        assert session and session.user_id == "u1"
        online = G.create_grant(w.conn, client_id="c", user_id="u1", scope="online_access", session_hash=session.id_hash, now=NOW)
        offline = G.create_grant(w.conn, client_id="c", user_id="u1", scope="offline_access", session_hash=session.id_hash,
                                 offline=True, now=NOW)
        assert S.get_session(w.conn, sid, now=NOW + 100) is None  # expired
    with store.writer() as w:
        assert S.end_session(w.conn, sid, now=NOW + 1) == [online.id]
        assert S.get_session(w.conn, sid, now=NOW + 2) is None
        assert not G.active_grant(w.conn, online.id) and G.active_grant(w.conn, offline.id)


def test_launch_handles(store: Store) -> None:
    kw = dict(user_id="u1", session_hash="s1", patient="p1", encounter="e1", practice="pr", lifetime=300)
    with store.writer() as w:
        h = L.new_launch(w.conn, client_id="app", now=NOW, **kw)  # type: ignore[arg-type]
        with pytest.raises(L.LaunchError, match="another app"):
            L.consume_launch(w.conn, h, client_id="evil", session_hash="s1", now=NOW)
        with pytest.raises(L.LaunchError, match="another sign-in session"):
            L.consume_launch(w.conn, h, client_id="app", session_hash="s2", now=NOW)
        got = L.consume_launch(w.conn, h, client_id="app", session_hash="s1", now=NOW + 1)
        assert (got.patient, got.encounter, got.practice) == ("p1", "e1", "pr")
        with pytest.raises(L.LaunchError, match="already been used") as err:
            L.consume_launch(w.conn, h, client_id="app", session_hash="s1", now=NOW + 2)
        assert err.value.reason == "used"
        old = L.new_launch(w.conn, client_id="app", now=NOW, **kw)  # type: ignore[arg-type]
        with pytest.raises(L.LaunchError, match="expired"):
            L.consume_launch(w.conn, old, client_id="app", session_hash="s1", now=NOW + 301)
        with pytest.raises(L.LaunchError, match="not valid"):
            L.consume_launch(w.conn, "made-up", client_id="app", session_hash="s1", now=NOW)


def test_codes_are_single_use_and_replay_revokes(store: Store) -> None:
    with store.writer() as w:
        grant = G.create_grant(w.conn, client_id="app", user_id="u1", scope="patient/*.rs", patient="p1", now=NOW)
        code = G.issue_code(w.conn, grant, redirect_uri="http://x/cb", code_challenge="c" * 43, challenge_method="S256",
                            nonce="n", auth_time=NOW, now=NOW, lifetime=60)
        with pytest.raises(G.GrantError, match="another client"):
            G.use_code(w.conn, code, client_id="evil", now=NOW)
        use = G.use_code(w.conn, code, client_id="app", now=NOW + 1)
        assert use.grant.id == grant.id and use.nonce == "n"
    with store.writer() as w:
        with pytest.raises(G.GrantError, match="already used") as err:
            G.use_code(w.conn, code, client_id="app", now=NOW + 2)
        assert err.value.revoked_grant == grant.id
    with store.reader() as conn:
        assert not G.active_grant(conn, grant.id)
    with store.writer() as w:
        g2 = G.create_grant(w.conn, client_id="app", user_id="u1", scope="x", now=NOW)
        late = G.issue_code(w.conn, g2, redirect_uri="r", code_challenge="c", challenge_method="S256", nonce=None,
                            auth_time=None, now=NOW, lifetime=60)
        with pytest.raises(G.GrantError, match="expired"):
            G.use_code(w.conn, late, client_id="app", now=NOW + 61)
        with pytest.raises(G.GrantError, match="not valid"):
            G.use_code(w.conn, "nope", client_id="app", now=NOW)


def test_refresh_rotation_and_reuse(store: Store) -> None:
    with store.writer() as w:
        grant = G.create_grant(w.conn, client_id="app", user_id="u1", scope="offline_access", offline=True, now=NOW)
        r1 = G.issue_refresh(w.conn, grant, now=NOW, lifetime=1000)
        assert G.use_refresh(w.conn, r1, now=NOW + 1).id == grant.id
        r2 = G.issue_refresh(w.conn, grant, now=NOW + 1, lifetime=1000)
    with store.writer() as w:
        with pytest.raises(G.GrantError, match="already used"):
            G.use_refresh(w.conn, r1, now=NOW + 2)  # reuse after rotation
    with store.writer() as w:
        with pytest.raises(G.GrantError, match="revoked"):
            G.use_refresh(w.conn, r2, now=NOW + 3)  # the whole grant ended
        g2 = G.create_grant(w.conn, client_id="app", user_id="u1", scope="offline_access", offline=True, now=NOW)
        r3 = G.issue_refresh(w.conn, g2, now=NOW, lifetime=10)
        with pytest.raises(G.GrantError, match="expired"):
            G.use_refresh(w.conn, r3, now=NOW + 11)


def test_jti_replay(store: Store) -> None:
    with store.writer() as w:
        assert G.record_jti(w.conn, "svc", "j1", expires=NOW + 300, now=NOW)
        assert not G.record_jti(w.conn, "svc", "j1", expires=NOW + 300, now=NOW + 1)
        assert G.record_jti(w.conn, "other", "j1", expires=NOW + 300, now=NOW + 1)

"""Tables of the authorization server (created by ``migrations/versions/s001_smart.py``).

Secrets never sit in these tables in the clear: codes, refresh tokens, launch handles, session ids
and generated client secrets are stored as SHA-256 digests (they are random, high-entropy values);
passwords as argon2 hashes. Times are epoch seconds.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "apps", "codes", "consents", "grants", "jtis", "launches", "metadata", "pending", "refresh_tokens", "sessions",
    "users",
]

metadata = sa.MetaData()
T = sa.BigInteger()

users = sa.Table(
    "smart_user", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(128), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("fhir_user", sa.String(256), nullable=False, server_default=""),
    sa.Column("display_name", sa.String(256), nullable=False, server_default=""),
    sa.Column("created", T, nullable=False),
)

apps = sa.Table(
    "smart_app", metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("icon_url", sa.String(1024), nullable=False, server_default=""),
    sa.Column("launch_url", sa.String(1024), nullable=False, server_default=""),
    sa.Column("redirect_uris", sa.Text, nullable=False, server_default="[]"),
    sa.Column("client_type", sa.String(32), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False, server_default=""),
    sa.Column("jwks", sa.Text, nullable=True),
    sa.Column("jwks_uri", sa.String(1024), nullable=True),
    sa.Column("secret_hash", sa.String(128), nullable=True),
    sa.Column("source", sa.String(16), nullable=False, server_default="cli"),
    sa.Column("created", T, nullable=False),
)

sessions = sa.Table(
    "smart_session", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("created", T, nullable=False),
    sa.Column("expires", T, nullable=False),
    sa.Column("ended", T, nullable=True),
)

pending = sa.Table(
    "smart_pending", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("session_hash", sa.String(64), nullable=True),
    sa.Column("patient", sa.String(64), nullable=True),
    sa.Column("created", T, nullable=False),
    sa.Column("expires", T, nullable=False),
)

launches = sa.Table(
    "smart_launch", metadata,
    sa.Column("handle_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("session_hash", sa.String(64), nullable=False),
    sa.Column("patient", sa.String(64), nullable=True),
    sa.Column("encounter", sa.String(64), nullable=True),
    sa.Column("practice", sa.String(128), nullable=True),
    sa.Column("created", T, nullable=False),
    sa.Column("expires", T, nullable=False),
    sa.Column("used", T, nullable=True),
    sa.Column("context", sa.Text, nullable=True),  # JSON fhirContext items (migration s002)
)

grants = sa.Table(
    "smart_grant", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("patient", sa.String(64), nullable=True),
    sa.Column("encounter", sa.String(64), nullable=True),
    sa.Column("context", sa.Text, nullable=False, server_default="{}"),
    sa.Column("session_hash", sa.String(64), nullable=True),
    sa.Column("offline", sa.Boolean, nullable=False),
    sa.Column("created", T, nullable=False),
    sa.Column("revoked", T, nullable=True),
    sa.Column("revoke_reason", sa.String(64), nullable=True),
)

consents = sa.Table(  # migration s003: "do not ask me again" for an app, with the scopes approved
    "smart_consent", metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created", T, nullable=False),
)

codes = sa.Table(
    "smart_code", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("grant_id", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.String(1024), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("challenge_method", sa.String(16), nullable=False),
    sa.Column("nonce", sa.String(512), nullable=True),
    sa.Column("auth_time", T, nullable=True),
    sa.Column("created", T, nullable=False),
    sa.Column("expires", T, nullable=False),
    sa.Column("used", T, nullable=True),
)

refresh_tokens = sa.Table(
    "smart_refresh", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("grant_id", sa.String(64), nullable=False),
    sa.Column("created", T, nullable=False),
    sa.Column("expires", T, nullable=True),
    sa.Column("used", T, nullable=True),
)

jtis = sa.Table(
    "smart_jti", metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires", T, nullable=False),
)

INDEXES = (  # mirrored in migrations/versions/s001_smart.py
    ("ix_smart_grant_session", "smart_grant", ["session_hash"]),
    ("ix_smart_refresh_grant", "smart_refresh", ["grant_id"]),
    ("ix_smart_code_grant", "smart_code", ["grant_id"]),
    ("ix_smart_jti_expires", "smart_jti", ["expires"]),
)

"""SMART authorization server: users, apps, sessions, pending authorizations, launches, grants,
codes, refresh tokens, client-assertion jtis.

Revision ID: s001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s001"
down_revision = None
branch_labels = ("smart",)
depends_on = "0001"

T = sa.BigInteger()

INDEXES = (
    ("ix_smart_grant_session", "smart_grant", ["session_hash"]),
    ("ix_smart_refresh_grant", "smart_refresh", ["grant_id"]),
    ("ix_smart_code_grant", "smart_code", ["grant_id"]),
    ("ix_smart_jti_expires", "smart_jti", ["expires"]),
)


def upgrade() -> None:
    op.create_table(
        "smart_user",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(128), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("fhir_user", sa.String(256), nullable=False, server_default=""),
        sa.Column("display_name", sa.String(256), nullable=False, server_default=""),
        sa.Column("created", T, nullable=False),
    )

    op.create_table(
        "smart_app",
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

    op.create_table(
        "smart_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("created", T, nullable=False),
        sa.Column("expires", T, nullable=False),
        sa.Column("ended", T, nullable=True),
    )

    op.create_table(
        "smart_pending",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=True),
        sa.Column("patient", sa.String(64), nullable=True),
        sa.Column("created", T, nullable=False),
        sa.Column("expires", T, nullable=False),
    )

    op.create_table(
        "smart_launch",
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
    )

    op.create_table(
        "smart_grant",
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

    op.create_table(
        "smart_code",
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

    op.create_table(
        "smart_refresh",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("created", T, nullable=False),
        sa.Column("expires", T, nullable=True),
        sa.Column("used", T, nullable=True),
    )

    op.create_table(
        "smart_jti",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires", T, nullable=False),
    )
    for name, table_name, columns in INDEXES:
        op.create_index(name, table_name, columns)


def downgrade() -> None:
    for name, table_name, _columns in INDEXES:
        op.drop_index(name, table_name=table_name)
    for table in ("smart_jti", "smart_refresh", "smart_code", "smart_grant", "smart_launch", "smart_pending",
                  "smart_session", "smart_app", "smart_user"):
        op.drop_table(table)

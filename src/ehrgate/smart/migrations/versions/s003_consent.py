"""Remembered approvals: a user's "do not ask me again" for an app, with the scopes approved.

Revision ID: s003
Revises: s002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s003"
down_revision = "s002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smart_consent",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("smart_consent")

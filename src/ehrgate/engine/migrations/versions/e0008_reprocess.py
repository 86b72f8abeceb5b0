"""Engine: when and by whom each message was reprocessed (``eng_reprocess``).

Revision ID: e0008
Revises: e0007

A reprocess starts a new run of the message through its channel: its delivery rows are replaced
and attempts are numbered from 1 again (each run has its destinations' whole retry budget). One
row per reprocess - time (epoch ms), actor, and the last attempt id before it - lets the message's
history show its runs apart ("reprocessed at T by USER"), where before two "attempt 1" lines
followed one "SENT after 1 attempt(s)". Pruned with the message.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0008"
down_revision = "e0007"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "eng_reprocess",
        sa.Column("id", PK, primary_key=True, autoincrement=True),
        sa.Column("message_id", BIG, nullable=False),
        sa.Column("at", BIG, nullable=False),
        sa.Column("actor", sa.String(160), nullable=False),
        sa.Column("after_attempt", BIG, nullable=False),
    )
    op.create_index("ix_eng_reprocess_message", "eng_reprocess", ["message_id"])


def downgrade() -> None:
    op.drop_table("eng_reprocess")

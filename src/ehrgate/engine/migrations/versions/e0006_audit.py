"""Engine: the audit trail of administrative actions (``eng_audit``).

Revision ID: e0006
Revises: e0005

One row per deploy, undeploy, pause, resume, reprocess and prune, from the admin API or the CLI:
time (epoch ms), actor, how the actor was identified, role, action, target, outcome and a JSON
detail (message ids or counts, criteria; never message content or credentials). Read newest first,
by time, actor or action: hence the three indexes. Rows are never pruned with the messages.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0006"
down_revision = "e0005"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "eng_audit",
        sa.Column("id", PK, primary_key=True, autoincrement=True),
        sa.Column("at", BIG, nullable=False),
        sa.Column("actor", sa.String(160), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target", sa.String(160), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("peer", sa.String(160), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_eng_audit_at", "eng_audit", ["at"])
    op.create_index("ix_eng_audit_actor_at", "eng_audit", ["actor", "at"])
    op.create_index("ix_eng_audit_action_at", "eng_audit", ["action", "at"])


def downgrade() -> None:
    op.drop_table("eng_audit")

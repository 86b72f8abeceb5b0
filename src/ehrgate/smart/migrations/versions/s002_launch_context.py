"""EHR launch handles carry fhirContext items (SMART App Launch 2.2 §fhirContext).

Revision ID: s002
Revises: s001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s002"
down_revision = "s001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("smart_launch", sa.Column("context", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smart_launch") as batch:
        batch.drop_column("context")

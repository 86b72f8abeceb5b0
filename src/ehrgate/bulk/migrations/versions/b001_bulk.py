"""Bulk Data export: jobs, their patients, their files.

Revision ID: b001
Revises:
Depends on: 0001 (FHIR store)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b001"
down_revision = None
branch_labels = ("bulk",)
depends_on = "0001"

BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "bulk_job",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created_at", BIG, nullable=False),
        sa.Column("transaction_time", BIG, nullable=False),
        sa.Column("finished_at", BIG, nullable=True),
        sa.Column("expires_at", BIG, nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", BIG, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("cursor", sa.Text, nullable=True),
        sa.Column("progress", sa.String(255), nullable=True),
        sa.Column("manifest", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_bulk_job_state", "bulk_job", ["state", "created_at"])
    op.create_index("ix_bulk_job_owner", "bulk_job", ["client_id", "state"])
    op.create_table(
        "bulk_job_patient",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("added", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "patient_id", name="pk_bulk_job_patient"),
    )
    op.create_table(
        "bulk_file",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(96), nullable=False),
        sa.Column("path", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("count", BIG, nullable=False),
        sa.Column("size", BIG, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "name", name="pk_bulk_file"),
    )


def downgrade() -> None:
    op.drop_table("bulk_file")
    op.drop_table("bulk_job_patient")
    op.drop_index("ix_bulk_job_owner", "bulk_job")
    op.drop_index("ix_bulk_job_state", "bulk_job")
    op.drop_table("bulk_job")

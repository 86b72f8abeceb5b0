"""FHIR store: resources, versions, search index tables, compartments, conditional locks, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = ("fhir",)
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BIG = sa.BigInteger()


def _index_table(name: str, *columns: sa.Column, indexes: tuple[tuple[str, ...], ...]) -> None:
    op.create_table(
        name,
        sa.Column("res_pk", BIG, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        *columns,
    )
    op.create_index(f"ix_{name}_res", name, ["res_pk"])
    for cols in indexes:
        op.create_index(f"ix_{name}_{'_'.join(cols)}", name, list(cols))


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", BIG, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    )
    op.create_index("ix_resource_type_updated", "resource", ["res_type", "last_updated"])
    op.create_table(
        "resource_version",
        sa.Column("vpk", PK, primary_key=True, autoincrement=True),
        sa.Column("res_pk", BIG, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", BIG, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=True),
        sa.UniqueConstraint("res_pk", "version", name="uq_version_res_version"),
    )
    op.create_index("ix_version_updated", "resource_version", ["last_updated"])
    op.create_index("ix_version_type_updated", "resource_version", ["res_type", "last_updated"])
    _index_table(
        "idx_string",
        sa.Column("norm", sa.String(512), nullable=False),
        sa.Column("exact", sa.String(512), nullable=False),
        indexes=(("res_type", "param", "norm"),),
    )
    _index_table(
        "idx_token",
        sa.Column("system", sa.String(512), nullable=True),
        sa.Column("code", sa.String(512), nullable=True),
        sa.Column("text", sa.String(512), nullable=True),
        sa.Column("type_system", sa.String(512), nullable=True),
        sa.Column("type_code", sa.String(128), nullable=True),
        indexes=(("res_type", "param", "code", "system"),),
    )
    _index_table(
        "idx_reference",
        sa.Column("target_type", sa.String(64), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("url", sa.String(1024), nullable=True),
        indexes=(("res_type", "param", "target_id", "target_type"), ("target_type", "target_id")),
    )
    _index_table(
        "idx_date",
        sa.Column("low", BIG, nullable=False),
        sa.Column("high", BIG, nullable=False),
        indexes=(("res_type", "param", "low"), ("res_type", "param", "high")),
    )
    _index_table(
        "idx_number",
        sa.Column("value", sa.Float, nullable=False),
        indexes=(("res_type", "param", "value"),),
    )
    _index_table(
        "idx_quantity",
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("system", sa.String(512), nullable=True),
        sa.Column("code", sa.String(128), nullable=True),
        sa.Column("unit", sa.String(128), nullable=True),
        indexes=(("res_type", "param", "value"),),
    )
    _index_table(
        "idx_uri",
        sa.Column("uri", sa.String(1024), nullable=False),
        indexes=(("res_type", "param", "uri"),),
    )
    _index_table(
        "idx_composite",
        sa.Column("system", sa.String(512), nullable=True),
        sa.Column("code", sa.String(512), nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("value_system", sa.String(512), nullable=True),
        sa.Column("value_code", sa.String(512), nullable=True),
        sa.Column("value_unit", sa.String(128), nullable=True),
        sa.Column("value_text", sa.String(512), nullable=True),
        indexes=(("res_type", "param", "code"),),
    )
    op.create_table(
        "compartment",
        sa.Column("res_pk", BIG, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_compartment_patient", "compartment", ["patient_id", "res_type"])
    op.create_index("ix_compartment_res", "compartment", ["res_pk"])
    op.create_table(
        "cond_lock",
        sa.Column("res_type", sa.String(64), primary_key=True),
        sa.Column("criteria_hash", sa.String(64), primary_key=True),
        sa.Column("touched", BIG, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", PK, primary_key=True, autoincrement=True),
        sa.Column("vpk", BIG, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("created_at", BIG, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "outbox", "cond_lock", "compartment", "idx_composite", "idx_uri", "idx_quantity", "idx_number",
        "idx_date", "idx_reference", "idx_token", "idx_string", "resource_version", "resource",
    ):
        op.drop_table(name)

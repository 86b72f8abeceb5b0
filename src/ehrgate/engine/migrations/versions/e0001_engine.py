"""Engine: message store, deliveries, attempts, work queue, channel state, text search.

Revision ID: e0001
Revises:
Depends on: 0001 (FHIR store)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0001"
down_revision = None
branch_labels = ("engine",)
depends_on = "0001"

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "eng_message",
        sa.Column("id", PK, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("received_at", BIG, nullable=False),
        sa.Column("updated_at", BIG, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("msg_type", sa.String(40), nullable=False),
        sa.Column("control_id", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(128), nullable=False),
        sa.Column("source", sa.String(160), nullable=False),
        sa.Column("parent_id", BIG, nullable=True),
        sa.Column("duplicate_of", BIG, nullable=True),
        sa.Column("order_key", sa.String(128), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("transformed", sa.LargeBinary, nullable=True),
        sa.Column("bundle", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    # Every search filters on a time range besides its other criteria; retention walks
    # (channel, received_at) in small batches.
    op.create_index("ix_eng_message_channel_received", "eng_message", ["channel", "received_at"])
    op.create_index("ix_eng_message_status_received", "eng_message", ["status", "received_at"])
    op.create_index("ix_eng_message_received", "eng_message", ["received_at"])
    op.create_index("ix_eng_message_type_received", "eng_message", ["msg_type", "received_at"])
    op.create_index("ix_eng_message_control", "eng_message", ["control_id", "sender", "channel"])
    op.create_index("ix_eng_message_parent", "eng_message", ["parent_id"])

    op.create_table(
        "eng_message_patient",
        sa.Column("message_id", BIG, nullable=False),
        sa.Column("identifier", sa.String(128), nullable=False),
    )
    op.create_index("ix_eng_message_patient_ident", "eng_message_patient", ["identifier", "message_id"])
    op.create_index("ix_eng_message_patient_msg", "eng_message_patient", ["message_id"])

    op.create_table(
        "eng_delivery",
        sa.Column("message_id", BIG, primary_key=True),
        sa.Column("destination", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", BIG, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("request", sa.LargeBinary, nullable=True),
        sa.Column("response", sa.LargeBinary, nullable=True),
    )

    op.create_table(
        "eng_attempt",
        sa.Column("id", PK, primary_key=True, autoincrement=True),
        sa.Column("message_id", BIG, nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("at", BIG, nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_eng_attempt_message", "eng_attempt", ["message_id"])

    op.create_table(
        "eng_queue",
        sa.Column("id", PK, primary_key=True, autoincrement=True),
        sa.Column("message_id", BIG, nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("order_key", sa.String(128), nullable=False),
        sa.Column("seq", BIG, nullable=False),
        sa.Column("enqueued_at", BIG, nullable=False),
        sa.Column("next_at", BIG, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(96), nullable=True),
        sa.Column("lease_until", BIG, nullable=True),
    )
    op.create_index("ix_eng_queue_claim", "eng_queue", ["channel", "step", "next_at"])
    op.create_index("ix_eng_queue_order", "eng_queue", ["channel", "order_key", "seq", "message_id"])
    op.create_index("ix_eng_queue_message", "eng_queue", ["message_id"])

    op.create_table(
        "eng_channel_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("deployed", sa.Boolean, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", BIG, nullable=False),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE eng_message ADD COLUMN search tsvector")
        op.execute("CREATE INDEX ix_eng_message_search ON eng_message USING gin (search)")
    else:
        # Contentless: the text lives in eng_message.raw; deletes pass the original text back
        # ('delete' command), which retention does (engine/store.py).
        op.execute("CREATE VIRTUAL TABLE eng_message_fts USING fts5(body, content='')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE IF EXISTS eng_message_fts")
    for name in ("eng_channel_state", "eng_queue", "eng_attempt", "eng_delivery", "eng_message_patient",
                 "eng_message"):
        op.drop_table(name)

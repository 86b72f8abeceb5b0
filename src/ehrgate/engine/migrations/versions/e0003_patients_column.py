"""Engine: each message keeps its patient identifiers in ``eng_message.patients`` (a JSON array).

Revision ID: e0003
Revises: e0002

On SQLite, receipt no longer writes ``eng_message_patient`` rows in its transaction: the identifier
index is a B-tree keyed by random values, so each row dirtied a page of its own (two per message for
an MRN and an SSN), a third of the pages every group commit wrote and synced. The writer adds them
in batches between receipts together with the text index (``MessageStore.index_pending``, same mark
``eng_text_index.last_id``, same transaction), and a patient search first indexes whatever is
pending. PostgreSQL keeps writing the rows at receipt (several writers commit concurrently, so there
is no single mark to follow); there the column only serves ``messages show``.

Messages stored before this revision have NULL here and their rows already exist.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0003"
down_revision = "e0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("eng_message", sa.Column("patients", sa.Text, nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        # rows of the messages not yet indexed: e0002 expects them written at receipt
        op.execute("INSERT INTO eng_message_patient (message_id, identifier) SELECT m.id, j.value "
                   "FROM eng_message m, json_each(m.patients) j WHERE m.patients IS NOT NULL "
                   "AND m.id > (SELECT last_id FROM eng_text_index WHERE id = 1)")
    op.drop_column("eng_message", "patients")

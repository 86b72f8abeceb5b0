"""Engine: ``eng_message.traceparent``, the W3C trace context of each message's trace.

Revision ID: e0007
Revises: e0006

With tracing on (setting ``tracing``, docs/engine.md "Tracing") the receipt stores the traceparent of
the message's ``receive`` span with the message; the pipeline and every delivery attempt - after a
retry minutes later, or after a restart in another process - read it back and add their spans to
the same trace. NULL when tracing is off. A nullable column without a default: on PostgreSQL adding
it changes only the catalog, on SQLite only the table's declaration (no row is rewritten).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0007"
down_revision = "e0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("eng_message", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("eng_message", "traceparent")

"""Engine: the text index follows receipt (SQLite): ``eng_text_index`` holds the last message id indexed.

Revision ID: e0002
Revises: e0001

Receipt no longer writes the FTS5 index in its transaction (it was a third of the pages and of the CPU
of every commit); the writer indexes new messages in batches between receipts, and a text search first
indexes whatever is pending. Messages stored before this revision are already indexed.
PostgreSQL keeps computing the tsvector column at insert (the GIN index takes it cheaply), so the table
exists only on SQLite.
"""

from __future__ import annotations

from alembic import op

revision = "e0002"
down_revision = "e0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute("CREATE TABLE eng_text_index (id INTEGER PRIMARY KEY CHECK (id = 1), last_id INTEGER NOT NULL)")
    op.execute("INSERT INTO eng_text_index (id, last_id) SELECT 1, COALESCE(MAX(id), 0) FROM eng_message")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    # index what is pending first, so the inline indexing of e0001 finds a complete index
    op.execute("INSERT INTO eng_message_fts(rowid, body) SELECT id, CAST(substr(raw, 1, 262144) AS TEXT) FROM eng_message "
               "WHERE id > (SELECT last_id FROM eng_text_index WHERE id = 1)")
    op.execute("DROP TABLE eng_text_index")

"""Engine: the SQLite text index merges its segments a bounded amount per index step.

Revision ID: e0005
Revises: e0004

FTS5 writes a segment per transaction and, by default (``automerge`` 4), merges segments as it
goes: most transactions do a little merge work, but now and then one does a large merge, and the
largest grow with the index (measured: 256-message steps took a median 1.9 ms of CPU, 1 in 10 took
over 20 ms and the worst 46 ms once 512,000 messages were indexed). The index step runs on the
ingest writer thread, so receipts that arrive meanwhile wait for it. With ``automerge`` 0 the step
merges instead with ``('merge', n)``, at most about ``n`` pages per step (``MessageStore.index_pending``):
on the same data the median step took 5.4 ms, p99 10 ms and the worst 23 ms, and the whole run a
tenth less CPU. FTS5's ``crisismerge`` still merges at once if a level ever holds 16 segments.

PostgreSQL has no FTS5 table (a GIN index on a tsvector column): nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "e0005"
down_revision = "e0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute("INSERT INTO eng_message_fts(eng_message_fts, rank) VALUES ('automerge', 0)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute("INSERT INTO eng_message_fts(eng_message_fts, rank) VALUES ('automerge', 4)")

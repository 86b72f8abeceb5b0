"""Engine: the SQLite text index keeps which messages hold a word, not where (FTS5 ``detail=none``).

Revision ID: e0009
Revises: e0008

A text search asks for messages that hold every query word as a prefix (``"word"*`` terms ANDed:
``MessageStore.search``); it never asks for a phrase or for words near each other, the only queries
that need a word's positions. FTS5's default (``detail=full``) stores every position of every word
all the same. Without them (measured on 100,000 ~750-byte ADT messages, 256 per index step, on the
2-core bench machine): the index is 31 → 11 MB, an index step costs ~30 → ~18 µs of CPU a message,
and the p99 step (the receipts that arrive during it wait for it) 13 → 8 ms; a search by a patient's
identifier took 0.13 → 0.04 ms.

FTS5 cannot change a table's ``detail``: the table is made again and filled, up to the text index's
mark (``eng_text_index``: the messages above it are indexed by the ingest thread as before), with the
text ``index_pending`` gives it (``search_text``): retention later deletes with the same text, and
a contentless table must be told exactly what it holds. That reads every indexed message once
(~20 µs a message: about 20 s per million messages, at the first start after the upgrade).

PostgreSQL has no FTS5 table (a GIN index on a tsvector column): nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "e0009"
down_revision = "e0008"
branch_labels = None
depends_on = None

CHUNK = 2000


def _rebuild(detail: str) -> None:
    from ehrgate.engine.info import search_text  # here: alembic imports every revision file at each start

    conn = op.get_bind()
    op.execute("DROP TABLE eng_message_fts")
    op.execute(f"CREATE VIRTUAL TABLE eng_message_fts USING fts5(body, content='', detail={detail})")
    op.execute("INSERT INTO eng_message_fts(eng_message_fts, rank) VALUES ('automerge', 0)")  # e0005
    mark = int(conn.exec_driver_sql("SELECT COALESCE(MAX(last_id), 0) FROM eng_text_index").scalar() or 0)
    after = 0
    while True:
        rows = conn.exec_driver_sql(
            "SELECT id, raw FROM eng_message WHERE id > ? AND id <= ? ORDER BY id LIMIT ?", (after, mark, CHUNK)).all()
        if not rows:
            break
        conn.exec_driver_sql("INSERT INTO eng_message_fts(rowid, body) VALUES (?, ?)",
                             [(int(r[0]), search_text(bytes(r[1]))) for r in rows])
        after = int(rows[-1][0])
    if after:
        op.execute("INSERT INTO eng_message_fts(eng_message_fts) VALUES ('optimize')")  # one segment


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    _rebuild("none")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    _rebuild("full")

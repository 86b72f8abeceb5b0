"""The engine's tables: the message store, per-destination deliveries and attempts, the work queue.

Changes need a new revision in ``migrations/versions`` (branch label ``engine``).

* ``eng_message`` - one row per message received (and per child of a split): its metadata,
  status and each stage's content (``raw`` bytes exactly as received, ``transformed`` ER7,
  ``bundle`` FHIR JSON when a step produced one).
  ``traceparent``: the W3C trace context of the message's trace when tracing is on (``tracing.py``).
* ``eng_message_patient`` - patient identifiers (PID-3) of each message, for indexed search. The
  message row keeps them too (``patients``, a JSON array): on SQLite the index rows are written
  after receipt, in batches, with the text index (``MessageStore.index_pending``).
* ``eng_delivery`` - one row per (message, destination): status, attempts, request, response.
* ``eng_attempt`` - every delivery attempt: time, outcome, error, duration.
* ``eng_reprocess`` - each reprocess of a message: when, by whom, and the last attempt id before it
  (a reprocess starts a new run, whose attempts are numbered from 1 again).
* ``eng_queue`` - pending work only (rows are deleted when done, so the hot table stays small):
  ``step`` is ``''`` for the channel pipeline (filter, transform, route) or a destination name.
* ``eng_channel_state`` - desired runtime state per channel (deployed, paused), shared by every
  process on the database so ``ehrgate channel pause`` works with or without a running server.
* ``eng_audit`` - the audit trail of administrative actions (deploy, undeploy, pause, resume,
  reprocess, prune) from the admin API and the CLI: when, who, how identified, what, on what, the
  outcome and a JSON detail (ids, counts, criteria; never message content or credentials).

Text search: SQLite keeps a contentless FTS5 table ``eng_message_fts`` (rowid = message id; word
lists without positions, ``detail=none``: migration e0009);
PostgreSQL a ``tsvector`` column ``eng_message.search`` with a GIN index. See docs/engine.md.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "attempt",
    "audit",
    "channel_state",
    "delivery",
    "message",
    "message_patient",
    "metadata",
    "queue",
    "reprocess",
]

metadata = sa.MetaData()

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BIG = sa.BigInteger()

message = sa.Table(
    "eng_message",
    metadata,
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
    sa.Column("patients", sa.Text, nullable=True),
    sa.Column("traceparent", sa.String(55), nullable=True),
)

message_patient = sa.Table(
    "eng_message_patient",
    metadata,
    sa.Column("message_id", BIG, nullable=False),
    sa.Column("identifier", sa.String(128), nullable=False),
)

delivery = sa.Table(
    "eng_delivery",
    metadata,
    sa.Column("message_id", BIG, primary_key=True),
    sa.Column("destination", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("updated_at", BIG, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("request", sa.LargeBinary, nullable=True),
    sa.Column("response", sa.LargeBinary, nullable=True),
)

attempt = sa.Table(
    "eng_attempt",
    metadata,
    sa.Column("id", PK, primary_key=True, autoincrement=True),
    sa.Column("message_id", BIG, nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("at", BIG, nullable=False),
    sa.Column("outcome", sa.String(12), nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

reprocess = sa.Table(
    "eng_reprocess",
    metadata,
    sa.Column("id", PK, primary_key=True, autoincrement=True),
    sa.Column("message_id", BIG, nullable=False),
    sa.Column("at", BIG, nullable=False),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("after_attempt", BIG, nullable=False),
)

queue = sa.Table(
    "eng_queue",
    metadata,
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

channel_state = sa.Table(
    "eng_channel_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("deployed", sa.Boolean, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("updated_at", BIG, nullable=False),
)

audit = sa.Table(
    "eng_audit",
    metadata,
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

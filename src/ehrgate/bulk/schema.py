"""The bulk export tables. Changes need a new revision in ``migrations/versions`` (branch ``bulk``).

* ``bulk_job`` - one row per $export request: what was asked (``request``, JSON), who asked
  (``client_id``, ``subject``), its state (``queued`` → ``running`` → ``completed`` | ``failed``),
  the worker lease (``lease_owner``, ``lease_until``; a crashed worker's lease runs out and the
  job is claimed again), the pipeline's checkpoint (``step``, ``cursor``, JSON) and, once done,
  the manifest. ``DELETE`` of the status URL removes the row, its files and the directory.
* ``bulk_job_patient`` - the patients of a Patient- or Group-level job (step ``select``);
  ``added`` marks members that joined the Group after ``_since`` (their whole compartment is
  exported, per the IG).
* ``bulk_file`` - every finished NDJSON file: the name in its URL, the path under the job's
  directory, kind (``output`` | ``error`` | ``deleted``), type, line count and size.
  A file is registered in the same transaction as the checkpoint that follows it, so a file on
  disk without a row is an unfinished write and is removed on resume.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["file", "job", "job_patient", "metadata"]

metadata = sa.MetaData()

BIG = sa.BigInteger()

job = sa.Table(
    "bulk_job",
    metadata,
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
    sa.Index("ix_bulk_job_state", "state", "created_at"),
    sa.Index("ix_bulk_job_owner", "client_id", "state"),
)

job_patient = sa.Table(
    "bulk_job_patient",
    metadata,
    sa.Column("job_id", sa.String(32), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("added", sa.Boolean, nullable=False),
    sa.PrimaryKeyConstraint("job_id", "patient_id", name="pk_bulk_job_patient"),
)

file = sa.Table(
    "bulk_file",
    metadata,
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

"""The store's tables. Changes to these tables need a new migration in ``migrations/versions``.

Resource JSON is kept once per version (``resource_version.raw``) and served as stored; the
``resource`` row carries its current version number; (res_pk, version) finds the JSON. Search never reads JSON: every searchable value is
extracted on write into one index table per search-parameter type, keyed by ``resource.pk``.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata"]

metadata = sa.MetaData()

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets BIGINT identity.
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BIG = sa.BigInteger()

resource = sa.Table(
    "resource",
    metadata,
    sa.Column("pk", PK, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", BIG, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    sa.Index("ix_resource_type_updated", "res_type", "last_updated"),
)

resource_version = sa.Table(
    "resource_version",
    metadata,
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
    sa.Index("ix_version_updated", "last_updated"),
    sa.Index("ix_version_type_updated", "res_type", "last_updated"),
)


def _index_table(name: str, *columns: sa.Column, indexes: tuple[tuple[str, ...], ...]) -> sa.Table:
    table = sa.Table(
        name,
        metadata,
        sa.Column("res_pk", BIG, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        *columns,
        sa.Index(f"ix_{name}_res", "res_pk"),
    )
    for cols in indexes:
        sa.Index(f"ix_{name}_{'_'.join(cols)}", *[table.c[c] for c in cols])
    return table


idx_string = _index_table(
    "idx_string",
    sa.Column("norm", sa.String(512), nullable=False),
    sa.Column("exact", sa.String(512), nullable=False),
    indexes=(("res_type", "param", "norm"),),
)
idx_token = _index_table(
    "idx_token",
    sa.Column("system", sa.String(512), nullable=True),
    sa.Column("code", sa.String(512), nullable=True),
    sa.Column("text", sa.String(512), nullable=True),
    sa.Column("type_system", sa.String(512), nullable=True),
    sa.Column("type_code", sa.String(128), nullable=True),
    # res_pk before system: one code's rows come in storage order (search/sql.py, ordered_lead).
    indexes=(("res_type", "param", "code", "res_pk", "system"),),
)
idx_reference = _index_table(
    "idx_reference",
    sa.Column("target_type", sa.String(64), nullable=True),
    sa.Column("target_id", sa.String(64), nullable=True),
    sa.Column("url", sa.String(1024), nullable=True),
    indexes=(("res_type", "param", "target_id", "target_type"), ("target_type", "target_id")),
)
idx_date = _index_table(
    "idx_date",
    sa.Column("low", BIG, nullable=False),
    sa.Column("high", BIG, nullable=False),
    indexes=(("res_type", "param", "low"), ("res_type", "param", "high")),
)
idx_number = _index_table(
    "idx_number",
    sa.Column("value", sa.Float, nullable=False),
    indexes=(("res_type", "param", "value"),),
)
idx_quantity = _index_table(
    "idx_quantity",
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("system", sa.String(512), nullable=True),
    sa.Column("code", sa.String(128), nullable=True),
    sa.Column("unit", sa.String(128), nullable=True),
    indexes=(("res_type", "param", "value"),),
)
idx_uri = _index_table(
    "idx_uri",
    sa.Column("uri", sa.String(1024), nullable=False),
    indexes=(("res_type", "param", "uri"),),
)
idx_composite = _index_table(
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

compartment = sa.Table(
    "compartment",
    metadata,
    sa.Column("res_pk", BIG, nullable=False),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Index("ix_compartment_patient", "patient_id", "res_type"),
    sa.Index("ix_compartment_res", "res_pk"),
)

# Serialises conditional creates/updates for one (type, criteria) across processes: the row is
# upserted (locked) inside the write transaction before the search that decides create-or-match.
cond_lock = sa.Table(
    "cond_lock",
    metadata,
    sa.Column("res_type", sa.String(64), primary_key=True),
    sa.Column("criteria_hash", sa.String(64), primary_key=True),
    sa.Column("touched", BIG, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", PK, primary_key=True, autoincrement=True),
    sa.Column("vpk", BIG, nullable=False),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("created_at", BIG, nullable=False),
)

INDEX_TABLES = {
    "strings": idx_string,
    "tokens": idx_token,
    "references": idx_reference,
    "dates": idx_date,
    "numbers": idx_number,
    "quantities": idx_quantity,
    "uris": idx_uri,
    "composites": idx_composite,
}

"""FHIR store: the token index is ordered by resource within a code.

Revision ID: 0002
Revises: 0001

``ix_idx_token_res_type_param_code_system`` becomes ``(res_type, param, code, res_pk, system)``: a
search led by one code (``Observation?code=http://loinc.org|8867-4``) walks the matches in storage
order and stops after a page, instead of collecting and sorting every match first — so its cost does
not grow with the store. ``system`` stays in the index (checked inside it, never in the table).
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_idx_token_res_type_param_code_system", table_name="idx_token")
    op.create_index("ix_idx_token_res_type_param_code_res_pk_system", "idx_token",
                    ["res_type", "param", "code", "res_pk", "system"])


def downgrade() -> None:
    op.drop_index("ix_idx_token_res_type_param_code_res_pk_system", table_name="idx_token")
    op.create_index("ix_idx_token_res_type_param_code_system", "idx_token", ["res_type", "param", "code", "system"])

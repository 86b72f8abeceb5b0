"""Applying an ``Access`` (fhir/access.py) to reads and writes, the same way everywhere.

Resources outside what the caller may see answer exactly as if they did not exist (404), so a
patient-scoped token cannot even learn that another patient's resource exists.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa

from .access import Access
from .errors import NotFound
from .search.compartment import PATIENT_COMPARTMENT
from .store import schema as t

__all__ = ["confined", "check_visible", "check_write", "visible"]

R, C = t.resource, t.compartment


def confined(access: Access, res_type: str) -> str | None:
    """The patient whose compartment bounds ``res_type`` for this caller, if any."""
    if access.patient is not None and res_type in PATIENT_COMPARTMENT:
        return access.patient
    return None


def visible(conn: sa.Connection, access: Access, res_type: str, res_id: str) -> bool:
    patient = confined(access, res_type)
    if patient is not None:
        row = conn.execute(
            sa.select(sa.literal(1))
            .select_from(C.join(R, R.c.pk == C.c.res_pk))
            .where(R.c.res_type == res_type, R.c.res_id == res_id, C.c.patient_id == patient)
            .limit(1)
        ).first()
        if row is None:
            return False
    criteria = access.filters_for(res_type)
    if criteria:
        from urllib.parse import urlencode

        from .errors import InvalidSearch
        from .search.engine import match_ids

        for text in criteria:
            items = [("_id", res_id), *parse_qsl(text, keep_blank_values=True)]
            try:
                if match_ids(conn, res_type, urlencode(items)):
                    return True
            except InvalidSearch:
                continue  # the constraint names a parameter this type does not have
        return False
    return True


def check_visible(conn: sa.Connection, access: Access, res_type: str, res_id: str) -> None:
    if not visible(conn, access, res_type, res_id):
        raise NotFound(f"{res_type}/{res_id} is not known.")


def check_write(
    conn: sa.Connection,
    access: Access,
    interaction: str,
    res_type: str,
    res_id: str | None,
    resource: Any,
    extract: Any,
) -> None:
    """Before a write: the scope allows it, the existing resource is visible, the new one stays
    inside the caller's compartment (a patient-scoped app cannot write about someone else)."""
    access.require(interaction, res_type)
    if res_id is not None and interaction in ("read", "update", "patch", "delete"):
        exists = conn.execute(
            sa.select(R.c.pk).where(R.c.res_type == res_type, R.c.res_id == res_id, R.c.deleted == sa.false())
        ).first()
        if exists is not None and not visible(conn, access, res_type, res_id):
            raise NotFound(f"{res_type}/{res_id} is not known.")
    patient = confined(access, res_type)
    if patient is not None and isinstance(resource, dict):
        rows = extract({**resource, "id": resource.get("id") or res_id or "new"})
        if patient not in rows.compartments:
            from .errors import Forbidden

            raise Forbidden(
                f"This {res_type} is not about Patient/{patient}; a patient-scoped token can only write "
                "resources in its own patient's compartment."
            )

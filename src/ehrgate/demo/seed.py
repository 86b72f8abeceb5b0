"""Seeding ``ehrgate demo``: synthetic patients into an empty database, through the store."""

from __future__ import annotations

import sqlalchemy as sa

from ..fhir.bundles import process_transaction
from ..fhir.store.service import Store
from ..fhir.validation import known_resource_types
from ..settings import Settings

__all__ = ["seed_demo"]


def is_empty(store: Store) -> bool:
    with store.reader() as conn:
        return conn.execute(sa.text("SELECT 1 FROM resource LIMIT 1")).first() is None


def seed_demo(store: Store, settings: Settings) -> str | None:
    """Load the synthetic demo data if the store is empty; return a one-line summary."""
    from .synthetic import generate_demo_bundles

    if not is_empty(store):
        return None
    types = frozenset(known_resource_types())
    count = 0
    for bundle in generate_demo_bundles(patients=settings.demo_patients, seed=settings.demo_seed):
        process_transaction(store, bundle, types)
        count += len(bundle.get("entry") or [])
    return f"Seeded {count} synthetic resources for {settings.demo_patients} patients."

"""The one database: the FHIR store, opened and migrated with the tables of every package.

Apart from ``app.py`` so that the commands that only open the database (``ehrgate messages``,
``apps``, ``users``, ``load``...) do not import the HTTP application, Starlette and the FHIR API.
"""

from __future__ import annotations

from pathlib import Path

from .fhir.store.engine import create_engine, migrate
from .fhir.store.service import Store
from .settings import Settings

__all__ = ["MIGRATION_DIRS", "open_store"]

# Migration chains of the packages that own tables besides the FHIR store (each has a branch
# label and depends on the FHIR chain). Appended to as packages gain tables.
MIGRATION_DIRS: list[Path] = [
    Path(__file__).parent / "engine" / "migrations" / "versions",
    Path(__file__).parent / "bulk" / "migrations" / "versions",
    Path(__file__).parent / "smart" / "migrations" / "versions",
]


def open_store(settings: Settings) -> Store:
    engine = create_engine(settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous,
                           sqlite_mmap_bytes=int(settings.sqlite_mmap_mb) * 1024 * 1024)
    migrate(engine, MIGRATION_DIRS)
    return Store(engine)

"""Bulk Data Access 2.0 (hl7.org/fhir/uv/bulkdata): ``$export`` at system, Patient and Group level.

HTTP only starts, polls and serves (``kickoff.py``, ``status.py``); the export itself is a durable
job in the database (``jobs.py``) run by a worker (``worker.py``) as a pipeline of named steps
(``steps.py``: select → expand → write → manifest) that stream rows (``sources.py``) into NDJSON
files (``ndjson.py``). ``client.py`` is the matching command-line client. See docs/bulk.md.
"""

from __future__ import annotations

from pathlib import Path

from .service import BulkExports, bulk_routes

__all__ = ["MIGRATIONS", "BulkExports", "bulk_routes"]

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
"""This package's alembic chain (branch label ``bulk``, rooted on the FHIR store's ``0001``)."""

"""SMART App Launch 2.2 authorization server: scopes, PKCE, keys and tokens, apps and users,
launch, the HTTP endpoints, and the access policy the FHIR API calls (``policy.py``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MIGRATIONS"]

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
"""This package's alembic chain (branch label ``smart``, rooted on the FHIR store's ``0001``)."""

"""Small helpers shared by the validation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ehrgate.fhir.errors import Issue
from ehrgate.fhir.validation import validate

REPO = Path(__file__).resolve().parents[3]
FHIR_CORPUS = REPO.parent / "shared" / "corpus" / "fhir"


def corpus(name: str) -> Path:
    """``../shared/corpus/fhir/<name>``, or skip (visibly) when this checkout has no corpus."""
    path = FHIR_CORPUS / name
    if not path.is_dir():
        pytest.skip(f"FHIR corpus folder {path} is absent (a fresh clone has no ../shared)")
    return path


def issues_at(resource: dict[str, Any]) -> dict[str, str]:
    """expression -> issue code, for compact assertions."""
    return {i.expression or "": i.code for i in validate(resource)}


def only_issue(resource: dict[str, Any]) -> Issue:
    found = validate(resource)
    assert len(found) == 1, found
    return found[0]

"""MDM → DocumentReference (mdm.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from .conftest import convert_sample, current, errors, load, pick

CASES: list[tuple[str, str, Any]] = [
    ("mdm_t02.hl7", "DocumentReference.status", "current"),
    ("mdm_t02.hl7", "DocumentReference.docStatus", "final"),
    ("mdm_t02.hl7", "DocumentReference.masterIdentifier.value", "DOC-3001"),
    ("mdm_t02.hl7", "DocumentReference.identifier[0].value", "ds-3001.txt"),
    ("mdm_t02.hl7", "DocumentReference.type.coding[0].code", "DS"),
    ("mdm_t02.hl7", "DocumentReference.date", "2024-03-18T15:30:00-05:00"),
    ("mdm_t02.hl7", "DocumentReference.author[0].display", "Dr Aaron A Attend"),
    ("mdm_t02.hl7", "DocumentReference.content[0].attachment.contentType", "text/plain; charset=utf-8"),
    ("mdm_t10.hl7", "DocumentReference.content[0].attachment.contentType", "application/pdf"),
    ("mdm_t10.hl7", "DocumentReference.relatesTo[0].code", "replaces"),
    ("mdm_t10.hl7", "DocumentReference.relatesTo[0].target.identifier.value", "DOC-3001"),
    ("mdm_t10.hl7", "DocumentReference.docStatus", "final"),
    ("mdm_t01.hl7", "DocumentReference.docStatus", "preliminary"),
    ("mdm_t01.hl7", "DocumentReference.content[0].attachment.title", "content not sent in this message"),
]


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_document_values(name: str, path: str, expected: Any) -> None:
    assert pick(convert_sample(name).bundle, path) == expected


def test_inline_content_is_the_text_sent() -> None:
    data = pick(convert_sample("mdm_t02.hl7").bundle, "DocumentReference.content[0].attachment.data")
    assert base64.b64decode(data).decode() == "Discharge summary\nPatient improved and was discharged home."
    pdf = pick(convert_sample("mdm_t10.hl7").bundle, "DocumentReference.content[0].attachment.data")
    assert base64.b64decode(pdf) == b"%PDF-1.4 corrected summary"


def test_every_sample_is_valid_and_loads(store: Any) -> None:
    for name in ("mdm_t02.hl7", "mdm_t10.hl7", "mdm_t01.hl7"):
        bundle = convert_sample(name).bundle
        assert errors(bundle) == [], name
        load(store, bundle)
    assert len(current(store, "DocumentReference")) == 3
    replaced = current(store, "DocumentReference", "identifier=urn:ehrgate:id:TRANSCR|DOC-3002")
    assert replaced[0]["relatesTo"][0]["target"]["identifier"]["value"] == "DOC-3001"

"""Coding system names (HL7 table 0396, as sent in CWE-3/6/12) → FHIR code system URIs.

The URIs are the ones HL7 Terminology (THO) and the FHIR R4 specification register for each system
(http://hl7.org/fhir/R4/terminologies-systems.html); the v2-to-FHIR IG defers to them ("the
vocabulary table will give the actual uri", CWE-to-CodeableConcept, CWE.3). ``HL7nnnn`` names map
to the THO v2 table code systems. A name that is not listed (local systems such as ``L``, ``99zzz``
or a lab's own mnemonic) keeps its identity as ``urn:ehrgate:codesystem:<name>``, so the original
name survives and two local systems never collide; channels can register their own names through
``ConversionOptions.code_systems``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote

__all__ = ["LOCAL_PREFIX", "SYSTEMS", "code_system_uri", "v2_table"]

LOCAL_PREFIX = "urn:ehrgate:codesystem:"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

SYSTEMS: dict[str, str] = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNOMED": SNOMED,
    "SNOMEDCT": SNOMED,
    "SNOMED-CT": SNOMED,
    "SNOMED CT": SNOMED,
    "UCUM": UCUM,
    "ANSI+": UCUM,  # unit names in v2.3-era messages carry UCUM codes under this label
    "ISO+": UCUM,
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://terminology.hl7.org/CodeSystem/MVX",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "C5": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "urn:oid:2.16.840.1.113883.6.285",
    "HCPT": "urn:oid:2.16.840.1.113883.6.285",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "CDCPHINVS": "urn:oid:2.16.840.1.114222.4.5.274",
    "NUCC": "http://nucc.org/provider-taxonomy",
    "NCIT": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
    "UML": "http://www.nlm.nih.gov/research/umls",
    "UMLS": "http://www.nlm.nih.gov/research/umls",
    "NPI": "http://hl7.org/fhir/sid/us-npi",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "ISO3166": "urn:iso:std:iso:3166",
    "ISO639": "urn:ietf:bcp:47",
    "ISO6391": "urn:ietf:bcp:47",
    "ISO6392": "urn:ietf:bcp:47",
    "ISO 639-1": "urn:ietf:bcp:47",
    "ISO 639-2": "urn:ietf:bcp:47",
    "IETF": "urn:ietf:bcp:47",
    "FDDX": "http://www.fdbhealth.com/",
    "FDBDX": "http://www.fdbhealth.com/",
    "UPC": "urn:oid:2.16.840.1.113883.6.243",
    "HL7_V3_ACTCODE": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
}

_TABLE = re.compile(r"HL7[_ ]?(\d{4})")


def v2_table(number: str) -> str:
    """'0001' → the THO code system of v2 table 0001."""
    return f"http://terminology.hl7.org/CodeSystem/v2-{number}"


def code_system_uri(name: str, extra: dict[str, str] | None = None) -> str:
    """The URI for a coding system name; '' for an empty name."""
    if not name:
        return ""
    if extra:
        found = extra.get(name.strip())
        if found:
            return found
    return _builtin_uri(name.strip())


@lru_cache(maxsize=1024)
def _builtin_uri(name: str) -> str:
    if not name:
        return ""
    found = SYSTEMS.get(name) or SYSTEMS.get(name.upper())
    if found:
        return found
    table = _TABLE.fullmatch(name.upper())
    if table:
        return v2_table(table.group(1))
    if name.startswith(("http://", "https://", "urn:")) and " " not in name:
        return name
    if _OID.fullmatch(name):
        return "urn:oid:" + name
    return LOCAL_PREFIX + quote(name, safe="")


_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")

"""The HL7 v2 message ``ehrgate demo`` leaves in its data directory, for the printed
``ehrgate hl7 send`` line: an ADT^A04 (register a patient) for a patient the synthetic data does not
have, so sending it shows the whole bridge - MLLP, the ACK, the message store, HL7 v2 → FHIR and
the new Patient in the FHIR API - with a file the user can open, edit and send again.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SAMPLE_FILE", "SAMPLE_MRN", "write_sample"]

SAMPLE_FILE = "sample-adt-a04.hl7"
SAMPLE_MRN = "DEMO-1001"

_SEGMENTS = (
    "MSH|^~\\&|DEMO-REG|DEMO HOSPITAL|EHRGATE|EHRGATE|20260105093000-0500||ADT^A04^ADT_A01|DEMO-A04-0001|P|2.5.1",
    "EVN|A04|20260105093000-0500",
    f"PID|1||{SAMPLE_MRN}^^^DEMO^MR||Sample^Samuel^Q||19800214|M|||12 Harbor Road^^Springfield^MA^01101^USA^H"
    "||^PRN^PH^^1^413^5550142|||S^Never Married^HL70002",
    "PV1|1|O|CLINIC^^^DEMO^^^MAIN|R|||D100^Demo^Dana^^^Dr^MD^^DEMO||||||||||||V-DEMO-0001^^^DEMO^VN"
    "|||||||||||||||||||||||||20260105093000-0500",
    "AL1|1|DA|7980^Penicillin G^RXNORM|MO|Rash",
)


def write_sample(data_dir: str | Path) -> Path:
    """Write the sample message into ``data_dir`` unless a file of that name is there already (the
    user may have edited it); returns its path."""
    path = Path(data_dir) / SAMPLE_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(("\r".join(_SEGMENTS) + "\r").encode("ascii"))
    return path

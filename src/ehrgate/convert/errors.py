"""The conversion error: one class, carrying where the problem is and its HL7 table 0357 code.

    HL7Error (ehrgate.hl7)
    └── ConversionError (102 data type error, 101 required field missing, 200 unsupported message type)

A conversion error sends the message to ERROR with ``str(exc)`` as its text, and, when the channel
acknowledges on processing, an AE ACK whose ERR segment ``AckError.from_exception(exc)`` builds from
``code`` and ``location`` (ERR-2 as ``segment^sequence^field^repetition^component``).
"""

from __future__ import annotations

from ..hl7 import ErrorLocation, HL7Error

__all__ = ["DATA_TYPE_ERROR", "REQUIRED_FIELD_MISSING", "UNSUPPORTED_MESSAGE_TYPE", "ConversionError"]

DATA_TYPE_ERROR = 102
REQUIRED_FIELD_MISSING = 101
UNSUPPORTED_MESSAGE_TYPE = 200


class ConversionError(HL7Error):
    """A message that cannot be converted. The text starts with the field, as in
    ``PID-7: '1983021' is not a valid HL7 date (expected YYYY[MM[DD[HH[MM[SS]]]]])``."""

    code = DATA_TYPE_ERROR

    def __init__(self, where: str, problem: str, *, code: int | None = None,
                 location: ErrorLocation | None = None) -> None:
        super().__init__(f"{where}: {problem}" if where else problem, code=code,
                         location=location or parse_where(where))
        self.where = where
        self.problem = problem


def parse_where(where: str) -> ErrorLocation | None:
    """'OBX[3]-5(2).1' → ErrorLocation('OBX', 3, 5, 2, 1); None for text that is not such a path."""
    if len(where) < 3 or not where[:3].isalnum():
        return None
    seg, rest = where[:3], where[3:]
    seq = 1
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or not rest[1:close].isdigit():
            return None
        seq, rest = int(rest[1:close]), rest[close + 1:]
    if not rest.startswith("-"):
        return ErrorLocation(seg, seq) if not rest else None
    rest = rest[1:]
    rep: int | None = None
    head, _, comps = rest.partition(".")
    if "(" in head:
        head, _, r = head.partition("(")
        rep = int(r.rstrip(")")) if r.rstrip(")").isdigit() else None
    if not head.isdigit():
        return None
    comp = comps.split(".")[0] if comps else ""
    return ErrorLocation(seg, seq, int(head), rep if rep is not None else (1 if comp.isdigit() else None),
                         int(comp) if comp.isdigit() else None)

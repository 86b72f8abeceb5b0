"""HL7 v2 data types → FHIR R4 data types, per the v2-to-FHIR IG datatype maps
(mappings/datatypes/*.csv: CX[Identifier], XPN[HumanName], XAD[Address], XTN[ContactPoint],
CWE[CodeableConcept], DTM[dateTime], EI[Identifier], HD[uri], SN[Quantity/Range/Ratio], ED[Attachment]).

Each function takes a ``Value`` (one repetition, see ``values.py``) and the conversion's ``Ctx``
and returns plain JSON-ready dicts, or None when the value holds nothing FHIR can carry. Values
that are malformed where FHIR needs them well-formed (a date, a number) raise ConversionError
naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from .codesystems import UCUM, code_system_uri, v2_table
from .dtm import date, datetime_, zone
from .errors import ConversionError
from .options import ConversionOptions
from .tables import ADDRESS_TYPE, ADDRESS_USE, NAME_USE, TELECOM_SYSTEM, TELECOM_USE
from .values import Value

__all__ = [
    "AUTHORITY_PREFIX", "COMPARED", "Ctx", "V2_0203", "WELL_KNOWN_AUTHORITIES", "absent_code", "address", "codeable",
    "coding", "contact_point", "decimal", "ei_identifier", "hd_system", "human_name", "identifier", "quantity",
]

AUTHORITY_PREFIX = "urn:ehrgate:id:"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

JSON = dict[str, Any]


class Ctx:
    """Per-message conversion context: options, the resolved time zone, the default authority."""

    __slots__ = ("code_systems", "default_authority", "identifier_systems", "options", "tz")

    tz: ZoneInfo | timedelta

    def __init__(self, options: ConversionOptions, default_authority: str = "") -> None:
        self.options = options
        self.code_systems = dict(options.code_systems)
        self.identifier_systems: Mapping[str, str] = options.identifier_systems
        self.tz = zone(options.timezone)
        self.default_authority = default_authority


# -- numbers (NM, HL7 v2.5 section 2.A.47) --------------------------------------------------------

_NM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
COMPARED = re.compile(r"(<=|>=|<|>)\s*([+-]?(?:\d+\.?\d*|\.\d+))")


def decimal(raw: str, where: str) -> int | float | Decimal:
    """HL7 NM → a JSON number keeping the digits sent ('1.50' stays 1.50)."""
    text = raw.strip()
    if not _NM.fullmatch(text):
        raise ConversionError(where, f"{raw!r} is not a valid HL7 number (expected digits with an optional sign "
                                     "and decimal point, e.g. '-12.5')")
    text = text.lstrip("+")
    neg = text.startswith("-")
    body = text.lstrip("-").lstrip("0") or "0"
    if body.startswith("."):
        body = "0" + body
    if body.endswith("."):
        body = body[:-1]
    text = ("-" if neg else "") + body
    if "." not in text:
        return int(text)
    value = float(text)
    return value if repr(value) == text else Decimal(text)


# -- identifiers (CX, EI, HD) ----------------------------------------------------------------------

_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


#: Assigning authorities whose namespace IDs name a national identifier system.
WELL_KNOWN_AUTHORITIES = {"NPI": "http://hl7.org/fhir/sid/us-npi", "SSA": "http://hl7.org/fhir/sid/us-ssn",
                          "USSSA": "http://hl7.org/fhir/sid/us-ssn", "CMS": "http://hl7.org/fhir/sid/us-mbi"}


def _namespace_uri(ns: str, ctx: Ctx) -> str:
    found = ctx.identifier_systems.get(ns) or WELL_KNOWN_AUTHORITIES.get(ns.upper())
    if found:
        return found
    if _OID.fullmatch(ns):
        return "urn:oid:" + ns
    if ns.startswith(("http://", "https://", "urn:")) and _URI.fullmatch(ns):
        return ns
    return AUTHORITY_PREFIX + quote(ns, safe="")


def hd_system(hd: Value, ctx: Ctx, first: int = 1) -> str:
    """HD (namespace ID, universal ID, universal ID type) → an identifier system URI (HD-to-uri).

    ``identifier_systems`` (per channel) and a few national authorities (NPI, SSA) map a namespace
    first. Otherwise a universal ID wins when it is one (type ISO: an OID, UUID, URI), as the IG's
    own MDM^T02 example does: it is the same whichever system sends it. A bare namespace becomes
    ``urn:ehrgate:id:<namespace>``."""
    ns, uid, kind = hd[first], hd[first + 1], hd[first + 2].upper()
    if ns and (ns in ctx.identifier_systems or ns.upper() in WELL_KNOWN_AUTHORITIES):
        return _namespace_uri(ns, ctx)
    if uid:
        if kind in ("ISO", "", "L") and _OID.fullmatch(uid):
            return "urn:oid:" + uid
        if kind in ("UUID", "GUID", "") and _UUID.fullmatch(uid):
            return "urn:uuid:" + uid.lower()
        if _URI.fullmatch(uid) and kind in ("URI", "URL", "DNS", ""):
            return uid
    if ns:
        return _namespace_uri(ns, ctx)
    return _namespace_uri(uid, ctx) if uid else ""


def _type(code: str, text: str = "") -> JSON:
    out: JSON = {"coding": [{"system": V2_0203, "code": code}]}
    if text:
        out["text"] = text
    return out


def identifier(v: Value | None, ctx: Ctx, *, type_code: str = "", default_system: bool = True) -> JSON | None:
    """CX → Identifier (CX-to-Identifier): CX.1 value, CX.4 system, CX.5 type, CX.7/CX.8 period.

    An empty CX.4 means the sender's own authority: the system of MSH-4 (else MSH-3)."""
    if v is None or not v[1]:
        return None
    out: JSON = {}
    kind = v[5] or type_code
    if kind:
        out["type"] = _type(" ".join(kind.split()))
    system = hd_system(v.part(4), ctx) or (ctx.default_authority if default_system else "")
    if system:
        out["system"] = system
    out["value"] = v[1]
    start, end = v[7], v[8]
    if start or end:
        period: JSON = {}
        if start:
            period["start"] = date(start, f"{v.where}.7")
        if end:
            period["end"] = date(end, f"{v.where}.8")
        out["period"] = period
    return out


def ei_identifier(v: Value | None, ctx: Ctx, type_code: str = "") -> JSON | None:
    """EI (entity ID, namespace ID, universal ID, universal ID type) → Identifier."""
    if v is None or not v[1]:
        return None
    out: JSON = {}
    if type_code:
        out["type"] = _type(type_code)
    system = hd_system(v, ctx, first=2) or ctx.default_authority
    if system:
        out["system"] = system
    out["value"] = v[1]
    return out


# -- names, addresses, telecom --------------------------------------------------------------------


def _clean(text: str) -> str:
    """Runs of whitespace become one space (FHIR strings and codes may not hold line breaks or
    doubled spaces in codes); values arrive stripped already."""
    if "  " in text or "\t" in text or "\n" in text or "\r" in text:
        return " ".join(text.split())
    return text.strip()



def _period(out: JSON, v: Value, start_at: int, end_at: int, ctx: Ctx) -> None:
    """``out["period"]`` from the DTM components ``start_at`` and ``end_at`` of ``v`` (XPN-12/13,
    XAD-13/14, XTN-13/14: the dates a name, an address or a number was valid), when either is valued."""
    start, end = v[start_at], v[end_at]
    if start or end:
        period: JSON = {}
        if start:
            period["start"] = datetime_(start, f"{v.where}.{start_at}", ctx)
        if end:
            period["end"] = datetime_(end, f"{v.where}.{end_at}", ctx)
        out["period"] = period

def human_name(v: Value | None, ctx: Ctx, *, offset: int = 0) -> JSON | None:
    """XPN → HumanName (XPN-to-HumanName). ``offset`` 1 reads an XCN, whose name starts at component 2."""
    if v is None:
        return None
    o = offset
    out: JSON = {}
    use = NAME_USE.get(v[7 + o * 3].upper()) if not o else NAME_USE.get(v[10].upper())
    if use:
        out["use"] = use
    family = _clean(v[1 + o])
    if family:
        out["family"] = family
    given = [_clean(x) for x in (v[2 + o], v[3 + o]) if x.strip()]
    if given:
        out["given"] = given
    prefix = _clean(v[5 + o])
    if prefix:
        out["prefix"] = [prefix]
    suffixes = [_clean(x) for x in ((v[4 + o], v[6 + o], v[14]) if not o else (v[5], v[21])) if x.strip()]
    if suffixes:
        out["suffix"] = suffixes
    if not o:
        _period(out, v, 12, 13, ctx)
    if "family" not in out and "given" not in out:
        return None
    return out


def address(v: Value | None, ctx: Ctx) -> JSON | None:
    """XAD → Address (XAD-to-Address): SAD street line, other designation, city, state, zip,
    country, type (table 0190 → use/type), county (district), validity period."""
    if v is None:
        return None
    out: JSON = {}
    kind = v[7].upper()
    if kind in ADDRESS_USE:
        out["use"] = ADDRESS_USE[kind]
    if kind in ADDRESS_TYPE:
        out["type"] = ADDRESS_TYPE[kind]
    street = v.part(1)
    first, name, number = street[1], street[2], street[3]
    # SAD[Address]: SAD.1, SAD.2 (street name), SAD.3 (dwelling number) → line[1-3]; XAD.2 → line[4];
    # XAD.19 (addressee) → line[5]. A street name or number that SAD.1 already spells out is its
    # parsed part, not another line (docs/convert.md).
    parts = (first, *(x for x in (name, number) if x and x not in first), v[2], v[19])
    lines = [_clean(x) for x in parts if x.strip()]
    if lines:
        out["line"] = lines
    for key, n in (("city", 3), ("district", 9), ("state", 4), ("postalCode", 5), ("country", 6)):
        text = _clean(v[n])
        if text:
            out[key] = text
    _period(out, v, 13, 14, ctx)
    return out if set(out) - {"use", "type"} else None


def contact_point(v: Value | None, ctx: Ctx, *, default_use: str = "") -> JSON | None:
    """XTN → ContactPoint (XTN-to-ContactPoint). The value is XTN.1, the e-mail address XTN.4 for
    Internet/X.400, else built from XTN.5-XTN.8 (country, area, local number, extension) or XTN.12."""
    if v is None:
        return None
    equipment = v[3].upper()
    email = equipment in ("INTERNET", "X.400") or (not equipment and bool(v[4]) and not v[1])
    parts: list[JSON] = []
    if email:
        value = v[4] or v[1]
    elif v[12]:
        value = v[12]  # the unformatted number, complete as dialled
    elif v[7]:
        value = " ".join(x for x in (("+" + v[5]) if v[5] else "", v[6], v[7]) if x)
        if v[8]:
            value += " X" + v[8]
    else:
        value = v[1]
    if not email:
        for n, name in ((5, "country"), (6, "area"), (7, "local"), (8, "extension")):
            if v[n]:
                parts.append({"url": f"http://hl7.org/fhir/StructureDefinition/contactpoint-{name}",
                              "valueString": v[n]})
    value = _clean(value)
    if not value:
        return None
    out: JSON = {}
    if parts:
        out["extension"] = parts
    out.update({"system": "email" if email else TELECOM_SYSTEM.get(equipment, "phone"), "value": value})
    use = TELECOM_USE.get(v[2].upper()) or ("mobile" if equipment == "CP" else "") or (
        default_use if not v[2] else "")
    if use:
        out["use"] = use
    rank = v[18]
    if rank.isdigit() and 0 < int(rank) < 2**31:  # a positiveInt
        out["rank"] = int(rank)
    _period(out, v, 13, 14, ctx)
    return out


# -- coded values (CWE, CE, CNE, ID, IS) -----------------------------------------------------------

_TRIPLES = ((1, 2, 3, 7), (4, 5, 6, 8), (10, 11, 12, 13))


def coding(v: Value | None, ctx: Ctx, table: str = "", triple: int = 0) -> JSON | None:
    """One triplet of a CWE → Coding; an empty coding system defaults to v2 table ``table``."""
    if v is None:
        return None
    c, t, s, ver = _TRIPLES[triple]
    if len(v.comps) < c:
        return None
    code = _clean(v[c])
    if not code:
        return None
    out: JSON = {}
    system = code_system_uri(v[s], ctx.code_systems) or (v2_table(table) if table and triple == 0 else "")
    if system:
        out["system"] = system
    version = v[ver]
    if version:
        out["version"] = version
    out["code"] = code
    display = _clean(v[t])
    if display:
        out["display"] = display
    return out


def codeable(v: Value | None, ctx: Ctx, table: str = "") -> JSON | None:
    """CWE/CE/CNE → CodeableConcept (CWE-to-CodeableConcept): the primary, alternate and second
    alternate triplets become codings; CWE.9 original text, or the text of a code-less value, ``text``."""
    if v is None:
        return None
    codings = []
    for n in range(3 if len(v.comps) > 3 else 1):
        found = coding(v, ctx, table, n)
        if found is not None and found not in codings:
            codings.append(found)
    out: JSON = {}
    if codings:
        out["coding"] = codings
    text = _clean(v[9]) or ("" if v[1] else _clean(v[2]))
    if text:
        out["text"] = text
    return out or None


def codeable_or_text(v: Value | None, text: str, ctx: Ctx) -> JSON | None:
    """``codeable(v)`` with ``text`` (a separate description field, e.g. DG1-4, PR1-4) as its text
    when it has none; None when there is neither a code nor a text."""
    code = codeable(v, ctx)
    if code is None and not text:
        return None
    code = code or {}
    if text and "text" not in code:
        code["text"] = text
    return code


def absent_code() -> JSON:
    """A CodeableConcept for a required code the message left empty (data-absent-reason 'unknown')."""
    return {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                           "valueCode": "unknown"}]}


def quantity(value: int | float | Decimal, unit: Value | None, ctx: Ctx) -> JSON:
    """NM + CWE units → Quantity (CWE-to-Quantity): a unit code only travels with its system."""
    out: JSON = {"value": value}
    if unit is not None:
        code, text, system = _clean(unit[1]), _clean(unit[2]), code_system_uri(unit[3], ctx.code_systems)
        if text or code:
            out["unit"] = text or code
        if code and system:
            out["system"] = system
            out["code"] = code
        elif code and _looks_ucum(code) and not unit[3]:
            out["system"] = UCUM
            out["code"] = code
    return out


_UCUM_COMMON = frozenset({"%", "mg/dL", "g/dL", "mmol/L", "mL", "L", "mg", "g", "kg", "cm", "mm", "[degF]", "Cel",
                          "mm[Hg]", "/min", "10*3/uL", "10*6/uL", "fL", "pg", "U/L", "[IU]/L", "meq/L", "ug/dL",
                          "ng/mL", "pg/mL", "umol/L", "mL/min", "[in_i]", "[lb_av]", "kg/m2", "/uL"})
"""Unit codes sent without a coding system that are unambiguous UCUM (judgement call, docs/convert.md)."""


def _looks_ucum(code: str) -> bool:
    return code in _UCUM_COMMON


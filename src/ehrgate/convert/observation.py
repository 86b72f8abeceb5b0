"""OBX → Observation, NTE → Annotation, SPM → Specimen, ED → Attachment (IG segment maps
OBX[Observation], NTE[Observation], SPM[Specimen]; datatype maps SN[Quantity/Range/Ratio], ED[Attachment]).

OBX-5 is read by its type OBX-2: NM → valueQuantity (units OBX-6), ST/TX/FT → valueString, coded
types → valueCodeableConcept, SN → valueQuantity/valueRange/valueRatio (or the text when it is
none of those), DT/DTM/TS → valueDateTime, TM → valueTime, DR → valuePeriod, NR → valueRange, ED
and RP → an Attachment (the R5 valueAttachment extension, as the IG says). A repeated coded or numeric OBX-5 becomes one
component per repetition.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from .bundle import Builder, search_key
from .datatypes import COMPARED, absent_code, address, codeable, decimal, ei_identifier, identifier, quantity
from .dtm import datetime_, instant, is_null_date
from .encounter import EncounterRef
from .errors import ConversionError
from .parties import organization, organization_from_cwe, practitioner
from .patient import PatientRef
from .tables import INTERPRETATION, OBSERVATION_STATUS
from .values import Seg, Value

__all__ = ["OBX_FIELDS", "SPM_FIELDS", "attachment", "notes", "obr_specimen", "observation", "specimen"]

JSON = dict[str, Any]
THO = "http://terminology.hl7.org/CodeSystem/"
OBX_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 14, 15, 16, 17, 19, 20, 21, 23, 24, 29})
SPM_FIELDS = frozenset({1, 2, 4, 7, 8, 12, 14, 17, 18, 24, 27, 30})
NTE_FIELDS = frozenset({1, 2, 3, 4})
ANALYSIS_TIME = "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time"
VALUE_ATTACHMENT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment"

_MIME = {"PDF": "application/pdf", "JPEG": "image/jpeg", "JPG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
         "TIFF": "image/tiff", "TIF": "image/tiff", "RTF": "application/rtf", "HTML": "text/html", "XML": "application/xml",
         "TEXT": "text/plain", "PLAIN": "text/plain", "TXT": "text/plain", "OCTET-STREAM": "application/octet-stream",
         "MSWORD": "application/msword", "DICOM": "application/dicom", "BASIC": "audio/basic"}
_COMPARATORS = {"<", "<=", ">", ">="}
_RANGE = re.compile(r"\s*([<>]=?)?\s*(-?\d+(?:\.\d+)?)?\s*(?:(?:-|to)\s*(-?\d+(?:\.\d+)?))?\s*")
_CODED = frozenset({"CWE", "CE", "CNE", "IS", "ID", "CF", "CV"})
_TEXT = frozenset({"ST", "TX", "FT"})


def notes(segs: list[Seg]) -> list[JSON]:
    """NTE segments → Annotations (NTE-3 comment lines of one NTE joined by line feeds)."""
    out = []
    for nte in segs:
        text = "\n".join(v.text(formatted=True) for v in nte.reps(3)).strip()  # NTE-3 is FT
        if text:
            out.append({"text": text})
    return out


def attachment(v: Value) -> JSON:
    """ED (source, type, subtype, encoding, data) → Attachment with base64 data (ED-to-Attachment)."""
    kind, subtype, encoding, data = v[2], v[3], v[4].upper(), v[5]
    mime = subtype if "/" in subtype else _MIME.get(subtype.upper()) or _MIME.get(kind.upper(), "")
    out: JSON = {}
    if mime:
        out["contentType"] = mime.lower()
    if encoding in ("BASE64", "B64"):
        cleaned = "".join(data.split())
        try:
            base64.b64decode(cleaned, validate=True)
        except (binascii.Error, ValueError):
            raise ConversionError(f"{v.where}.5", f"{data[:20]!r}... is not valid base64 data (ED-4 says "
                                  "'Base64')") from None
        out["data"] = cleaned
    elif encoding == "HEX":
        try:
            out["data"] = base64.b64encode(bytes.fromhex(data)).decode()
        except ValueError:
            raise ConversionError(f"{v.where}.5", f"{data[:20]!r}... is not valid hexadecimal data (ED-4 says "
                                  "'Hex')") from None
    elif data:
        out["data"] = base64.b64encode(data.encode()).decode()
        out.setdefault("contentType", "text/plain")
    return out


def _sn(v: Value, units: Value | None, b: Builder) -> dict[str, Any]:
    """SN (comparator, num1, separator/suffix, num2) → valueQuantity/Range/Ratio, else valueString."""
    where = v.where
    comparator, num1, sep, num2 = v[1], v[2], v[3], v[4]
    if comparator in ("", "=", *_COMPARATORS) and num1 and not sep and not num2:
        q = quantity(decimal(num1, where), units, b.ctx)
        if comparator in _COMPARATORS:
            q["comparator"] = comparator
        return {"valueQuantity": q}
    if comparator in ("", "=") and num1 and num2 and sep in ("-", "^"):
        return {"valueRange": {"low": quantity(decimal(num1, where), units, b.ctx),
                               "high": quantity(decimal(num2, where), units, b.ctx)}}
    if comparator in ("", "=") and num1 and num2 and sep in (":", "/"):
        # OBX[Observation] OBX-6: the units go to valueRatio.numerator and .denominator alike
        return {"valueRatio": {"numerator": quantity(decimal(num1, where), units, b.ctx),
                               "denominator": quantity(decimal(num2, where), units, b.ctx)}}
    # OBX[Observation] OBX-5 valueString: OBX-5.1 + OBX-5.2 + OBX-5.3 + OBX-5.4 + OBX-6 (the unit sent)
    unit = (units[1] or units[2]) if units is not None else ""
    text = " ".join(x for x in (comparator, num1, sep, num2) if x)
    return {"valueString": f"{text} {unit}" if unit else text} if text else {}


def _value(obx: Seg, kind: str, v: Value, b: Builder) -> dict[str, Any]:
    ctx = b.ctx
    units = obx.value(6)
    if kind == "NM":
        compared = COMPARED.fullmatch(v[1])
        if compared:  # '<15' sent as NM: read it as the SN it is
            q = quantity(decimal(compared.group(2), v.where), units, ctx)
            q["comparator"] = compared.group(1)
            return {"valueQuantity": q}
        return {"valueQuantity": quantity(decimal(v[1], v.where), units, ctx)} if v[1] else {}
    if kind == "SN":
        return _sn(v, units, b)
    if kind in _CODED:
        cc = codeable(v, ctx)
        return {"valueCodeableConcept": cc} if cc else {}
    if kind in ("DT", "DTM", "TS"):
        return {"valueDateTime": datetime_(v[1], v.where, ctx)} if v[1] else {}
    if kind == "DR":  # OBX[Observation]: IF OBX-2 EQUALS "DR" valuePeriod (DR[Period])
        start, end = v.part(1)[1], v.part(2)[1]
        period = {k: datetime_(t, f"{v.where}.{n}", ctx) for k, t, n in (("start", start, 1), ("end", end, 2)) if t}
        return {"valuePeriod": period} if period else {}
    if kind == "TM":
        raw = v[1].split("+")[0].split("-")[0]
        if not re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d+)?)?)?", raw):
            raise ConversionError(v.where, f"{v[1]!r} is not a valid HL7 time (expected HH[MM[SS[.S]]])")
        return {"valueTime": f"{raw[:2]}:{raw[2:4] or '00'}:{raw[4:6] or '00'}"}
    if kind == "NR":
        low, high = v[1], v[2]
        rng: JSON = {}
        if low:
            rng["low"] = quantity(decimal(low, v.where), units, ctx)
        if high:
            rng["high"] = quantity(decimal(high, v.where), units, ctx)
        return {"valueRange": rng} if rng else {}
    if kind == "VR":  # value range: OBX-5.1 + "-" + OBX-5.2 (OBX[Observation], IF OBX-2 EQUALS "VR")
        text = "-".join(x for x in (v[1], v[2]) if x)
        return {"valueString": text} if text else {}
    if kind == "RP" and v[1]:  # IF OBX-2 EQUALS "RP": valueAttachment (RP[Attachment]: pointer, type/subtype)
        mime = v[4] if "/" in v[4] else _MIME.get(v[4].upper()) or _MIME.get(v[3].upper(), "")
        pointer: JSON = {"contentType": mime.lower()} if mime else {}
        pointer["url"] = v[1]
        return {"extension": [{"url": VALUE_ATTACHMENT, "valueAttachment": pointer}]}
    if kind == "ED":
        found = attachment(v)
        return {"extension": [{"url": VALUE_ATTACHMENT, "valueAttachment": found}]} if found else {}
    text = v.text()
    return {"valueString": text} if text else {}


def _reference_range(text: str, units: Value | None, b: Builder) -> JSON:
    out: JSON = {"text": text}
    m = _RANGE.fullmatch(text)
    if m and (m.group(2) or m.group(3)):
        op, a, c = m.groups()
        try:
            if op in ("<", "<=") and a and not c:
                out["high"] = quantity(decimal(a, ""), units, b.ctx)
            elif op in (">", ">=") and a and not c:
                out["low"] = quantity(decimal(a, ""), units, b.ctx)
            elif not op and a and c:
                out["low"] = quantity(decimal(a, ""), units, b.ctx)
                out["high"] = quantity(decimal(c, ""), units, b.ctx)
        except ConversionError:
            pass
    for part in ("low", "high"):
        if part in out and "comparator" in out[part]:
            del out[part]["comparator"]
    return out


def observation(b: Builder, obx: Seg, who: PatientRef, *, scope: str, visit: EncounterRef | None = None,
                nte: Sequence[Seg] = (), effective: str = "", issued: str = "", category: str = "",
                extra: JSON | None = None, occurrence: int = 1) -> str:
    """OBX (+ its NTEs) → Observation, keyed by ``scope`` (its report or message), code, sub-ID and
    ``occurrence`` (the n-th OBX with that code and sub-ID in the scope)."""
    ctx = b.ctx
    code = codeable(obx.value(3), ctx)
    if code is None:
        b.warnings.append(f"{obx.where(3)}: empty; the Observation's code is marked unknown (data-absent-reason)")
        code = absent_code()
    raw_status = obx.text(11).upper()
    out: JSON = {"status": OBSERVATION_STATUS.get(raw_status, "unknown")}
    instance = ei_identifier(obx.value(21), ctx)
    if instance:
        out["identifier"] = [instance]
    if extra:
        out.update(extra)
    kind = obx.text(2).upper()
    categories = [{"coding": [{"system": THO + "observation-category", "code": category}]}] if category else []
    observation_type = obx.text(29)  # OBX[Observation]: OBX-29 → category (table 0936)
    if observation_type:
        categories.append({"coding": [{"system": THO + "v2-0936", "code": observation_type}]})
    if categories:
        out["category"] = categories
    out["code"] = code
    if who.url:
        out["subject"] = who.ref()
    if visit is not None:
        out["encounter"] = visit.ref()
    when = obx.text(14)
    if when and not is_null_date(when):
        out["effectiveDateTime"] = datetime_(when, obx.where(14), ctx)
    elif effective:
        out["effectiveDateTime"] = effective
    if issued:
        out["issued"] = issued
    analysed = obx.text(19)
    if analysed and not is_null_date(analysed):  # OBX[Observation]: OBX-19 → observation-analysis-date-time
        try:  # lenient, like ORC-9 in the order's Provenance: metadata does not cost the result
            out["extension"] = [{"url": ANALYSIS_TIME, "valueDateTime": datetime_(analysed, obx.where(19), ctx)}]
        except ConversionError as exc:
            b.warnings.append(f"{exc}; the analysis time is left out")
    performers = [p for p in (practitioner(b, v) for v in obx.reps(16)) if p]
    labs = [p for p in (organization(b, v) for v in obx.reps(23)) if p]
    lab_address = address(obx.value(24), ctx) if labs and "reference" in labs[0] else None
    if lab_address:  # OBX-24 → the performing organization's address (OBX[Observation], XAD[Address])
        b.resource(labs[0]["reference"]).setdefault("address", [lab_address])
    performers += labs
    # OBX-15 producer (CWE[Organization]): the lab OBX-23 names from v2.5 on, read when OBX-23 is empty
    producer = organization_from_cwe(b, obx.value(15)) if not obx.has(23) else None
    if producer:
        performers.append(producer)
    if performers:
        out["performer"] = performers
    values = [v for v in obx.reps(5) if not v.empty()]
    if raw_status == "X":
        out["dataAbsentReason"] = {"coding": [{"system": THO + "data-absent-reason", "code": "cannot-be-obtained"}]}
    elif raw_status == "N" and not values:  # OBX[Observation]: IF OBX-11 IS "N" dataAbsentReason "not-asked"
        out["dataAbsentReason"] = {"coding": [{"system": THO + "data-absent-reason", "code": "not-asked"}]}
    elif kind in _TEXT and values:
        text = "\n".join(v.text(formatted=kind == "FT") for v in values).strip()
        if text:
            out["valueString"] = text
    elif len(values) == 1:
        found = _value(obx, kind, values[0], b)
        if "extension" in found and "extension" in out:  # an ED value beside the analysis time
            found["extension"] = out["extension"] + found["extension"]
        out.update(found)
    elif len(values) > 1:
        comps = []
        for v in values:
            found = _value(obx, kind, v, b)
            if found and "extension" not in found:
                comps.append({"code": code, **found})
        if comps:
            out["component"] = comps
    flags: list[JSON] = []
    for v in obx.reps(8):
        flag = v[1]
        if flag in INTERPRETATION:
            flags.append({"coding": [{"system": THO + "v3-ObservationInterpretation", "code": flag,
                                      "display": INTERPRETATION[flag]}]})
        elif flag:
            coded = codeable(v, ctx, "0078")
            if coded:
                flags.append(coded)
    if flags:
        out["interpretation"] = flags
    method = codeable(obx.value(17), ctx)
    if method:
        out["method"] = method
    site = codeable(obx.value(20), ctx)
    if site:
        out["bodySite"] = site
    ranges = obx.string(7)
    if ranges:
        out["referenceRange"] = [_reference_range(ranges, obx.value(6), b)]
    annotations = notes(list(nte))
    if annotations:
        out["note"] = annotations
    coding = (code.get("coding") or [{}])[0]
    key = f"{scope}|obx|{coding.get('system', '')}|{coding.get('code', code.get('text', ''))}|{obx.text(4)}|{occurrence}"
    return b.identity("Observation", out, instance, key)


def specimen(b: Builder, spm: Seg, who: PatientRef, *, scope: str) -> str:
    """SPM → Specimen, keyed by its filler (else placer) specimen ID, else by its place in ``scope``."""
    ctx = b.ctx
    out: JSON = {}
    idents = []
    sid = spm.value(2)
    if sid is not None:
        for n, kind in ((1, "PGN"), (2, "FGN")):  # EIP-to-Identifier-Placer/FillerAssignedIdentifier
            found = ei_identifier(sid.part(n), ctx, kind)
            if found:
                idents.append(found)
    if idents:
        out["identifier"] = idents
    kind_cc = codeable(spm.value(4), ctx, "0487")
    if kind_cc:
        out["type"] = kind_cc
    if who.url:
        out["subject"] = who.ref()
    received = spm.text(18)
    if received:
        out["receivedTime"] = datetime_(received, spm.where(18), ctx)
    collection: JSON = {}
    when = spm.value(17)
    if when is not None:
        start, end = (x if not is_null_date(x) else "" for x in (when.part(1)[1], when.part(2)[1]))
        if start and end:
            collection["collectedPeriod"] = {"start": datetime_(start, spm.where(17), ctx),
                                             "end": datetime_(end, spm.where(17), ctx)}
        elif start:
            collection["collectedDateTime"] = datetime_(start, spm.where(17), ctx)
    amount = spm.value(12)
    if amount is not None and amount[1]:
        unit = amount.part(2)
        collection["quantity"] = quantity(decimal(amount[1], spm.where(12)), unit if unit[1] else None, ctx)
    method = codeable(spm.value(7), ctx, "0488")
    if method:
        collection["method"] = method
    site = codeable(spm.value(8), ctx)
    if site:
        collection["bodySite"] = site
    if collection:
        out["collection"] = collection
    conditions = [c for c in (codeable(v, ctx, "0493") for v in spm.reps(24)) if c]
    if conditions:
        out["condition"] = conditions
    container = codeable(spm.value(27), ctx)
    if container:
        out["container"] = [{"type": container}]
    description = spm.string(14)
    if description:
        out["note"] = [{"text": description}]
    accession = identifier(spm.value(30), ctx)  # SPM-30 accession ID (CX, v2.7+)
    if accession:
        out["accessionIdentifier"] = accession
    key_ident = next((i for i in reversed(idents)), None)
    if key_ident is not None:
        criteria = search_key(key_ident)
        return b.upsert("Specimen", out, criteria)
    return b.keyed("Specimen", out, f"{scope}|spm|{spm.text(1) or spm.seq}")


def obr_specimen(b: Builder, obr: Seg, who: PatientRef, key: str) -> str | None:
    """OBR → the Specimen of a result without SPM (v2.3/v2.4; IG ORU_R01 OBR[Specimen] and
    SPS[Specimen-Source]): OBR-15 source (type, free text, body site), OBR-14 received, OBR-7/8
    collection time (OBR-10, the collector, is ``order_people``'s). None unless OBR-14 or OBR-15 is valued."""
    source, received = obr.value(15), obr.text(14)
    if source is None and not received:
        return None
    ctx = b.ctx
    out: JSON = {}
    kind = codeable(source.part(1), ctx, "0070") if source is not None else None
    if kind:
        out["type"] = kind
    if who.url:
        out["subject"] = who.ref()
    if received and not is_null_date(received):
        out["receivedTime"] = datetime_(received, obr.where(14), ctx)
    collection: JSON = {}
    start, end = (t if not is_null_date(t) else "" for t in (obr.text(7), obr.text(8)))
    if start and end:
        collection["collectedPeriod"] = {"start": datetime_(start, obr.where(7), ctx),
                                         "end": datetime_(end, obr.where(8), ctx)}
    elif start:
        collection["collectedDateTime"] = datetime_(start, obr.where(7), ctx)
    site = codeable(source.part(4), ctx, "0163") if source is not None else None
    if site:
        collection["bodySite"] = site
    if collection:
        out["collection"] = collection
    if source is not None and source[3]:
        out["note"] = [{"text": source[3]}]
    return b.keyed("Specimen", out, key)


def issued_at(raw: str, where: str, b: Builder) -> str:
    if raw and is_null_date(raw):  # '0000': a sender's "no date", read as empty like a 00000000 birth date
        b.warnings.append(f"{where}: {raw!r} is an all-zero date; left out")
        return ""
    return instant(raw, where, b.ctx) if raw else ""

"""One entry point for every message family: ``convert(message, options) -> ConversionResult``.

The family is MSH-9.1 (table 0076); the trigger MSH-9.2 (EVN-1 for v2.1 messages, which have
none). After the family's mapping, every segment it did not read is counted in
``ignored_segments``, and every valued field of a segment it read that no mapping uses in
``ignored_fields`` (issue 5: "segments and fields the mapping does not use are ignored, and counted").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

from ..hl7 import Message
from . import adt, mdm, orders, oru, siu, vxu
from .account import GT1_FIELDS
from .bundle import Builder
from .clinical import AL1_FIELDS, DG1_FIELDS, IAM_FIELDS, IN1_FIELDS, IN2_FIELDS
from .datatypes import AUTHORITY_PREFIX, Ctx, hd_system
from .encounter import PV1_FIELDS, PV2_FIELDS
from .errors import REQUIRED_FIELD_MISSING, UNSUPPORTED_MESSAGE_TYPE, ConversionError
from .observation import NTE_FIELDS, OBX_FIELDS, SPM_FIELDS
from .options import ConversionOptions, ConversionResult
from .parties import event
from .patient import NK1_FIELDS, PD1_FIELDS, PID_FIELDS
from .procedure import PR1_FIELDS
from .roles import PRT_FIELDS, ROL_FIELDS
from .service_request import OBR_ORDER_FIELDS, ORC_FIELDS, TQ1_FIELDS
from .values import Seg

__all__ = ["FAMILIES", "FIELDS", "convert"]

Family = Callable[[Builder, list[Seg], str], None]

FAMILIES: dict[str, Family] = {
    "ADT": adt.convert, "ORU": oru.convert, "OUL": oru.convert, "ORM": orders.convert, "OML": orders.convert,
    "SIU": siu.convert, "VXU": vxu.convert, "MDM": mdm.convert,
}

#: The fields each segment's mappings read; valued fields outside these are counted as ignored.
FIELDS: dict[str, frozenset[int]] = {
    "MSH": frozenset(range(1, 30)),  # the envelope: routing and acknowledgment read the rest
    "EVN": frozenset({1, 2, 4, 5, 6, 7}), "PID": PID_FIELDS, "PD1": PD1_FIELDS, "NK1": NK1_FIELDS,
    "PV1": PV1_FIELDS, "PV2": PV2_FIELDS, "AL1": AL1_FIELDS, "IAM": IAM_FIELDS, "DG1": DG1_FIELDS,
    "IN1": IN1_FIELDS, "MRG": adt.MRG_FIELDS, "OBX": OBX_FIELDS, "NTE": NTE_FIELDS, "SPM": SPM_FIELDS,
    "ORC": ORC_FIELDS, "OBR": OBR_ORDER_FIELDS | oru.OBR_REPORT_FIELDS, "TQ1": TQ1_FIELDS,
    "SCH": siu.SCH_FIELDS, "AIS": siu.AIS_FIELDS, "AIL": siu.AIL_FIELDS, "AIP": siu.AIP_FIELDS,
    "AIG": siu.AIG_FIELDS, "RXA": vxu.RXA_FIELDS, "RXR": vxu.RXR_FIELDS, "TXA": mdm.TXA_FIELDS,
    "PR1": PR1_FIELDS, "ROL": ROL_FIELDS, "PRT": PRT_FIELDS, "GT1": GT1_FIELDS, "IN2": IN2_FIELDS,
}


def _segments(message: Message) -> list[Seg]:
    d = message.delimiters
    seen: Counter[str] = Counter()
    out = []
    for segment in message.segments:
        name = segment.name
        seen[name] += 1
        out.append(Seg(segment, seen[name], d))
    return out


def convert(message: Message, options: ConversionOptions | None = None) -> ConversionResult:
    """Convert one parsed message into a FHIR R4 transaction Bundle. Raises ConversionError."""
    options = options or ConversionOptions()
    segs = _segments(message)
    msh = segs[0]
    kind = msh.value(9)
    code = kind[1].upper() if kind is not None else ""
    trigger = kind[2].upper() if kind is not None else ""
    if not code:
        raise ConversionError("MSH-9", "missing (expected the message type, e.g. 'ADT^A01')",
                              code=REQUIRED_FIELD_MISSING)
    family = FAMILIES.get(code)
    if family is None:
        shown = "^".join(x for x in (code, trigger) if x)
        raise ConversionError("MSH-9", f"{shown!r} is not a message type this conversion handles (expected "
                              f"{', '.join(sorted(FAMILIES))})", code=UNSUPPORTED_MESSAGE_TYPE)
    if not trigger:
        evn = next((s for s in segs if s.name == "EVN"), None)
        trigger = evn.text(1).upper() if evn is not None else ""
    sender = msh.value(4) or msh.value(3)
    authority = hd_system(sender, Ctx(options)) if sender is not None else ""
    # Without MSH-4/MSH-3 the channel is the sender: identifiers never go without a system (a
    # system-less identifier would match every system's identifier of the same value).
    ctx = Ctx(options, authority or AUTHORITY_PREFIX + quote(options.channel or "default", safe=""))
    b = Builder(msh, options, ctx, f"{code}^{trigger}" if trigger else code)
    evn = next((s for s in segs if s.name == "EVN"), None)
    b.use(msh, evn)
    b.event = evn
    if evn is not None:
        event(b, evn)
    family(b, segs, trigger)
    bundle = b.bundle()
    ignored_segments: Counter[str] = Counter()
    ignored_fields: Counter[str] = Counter()
    for seg in segs:
        if seg.index not in b.used:
            ignored_segments[seg.name] += 1
            continue
        mapped = FIELDS.get(seg.name)
        if mapped is None:
            continue
        for n in seg.valued():
            if n not in mapped:
                ignored_fields[f"{seg.name}-{n}"] += 1
    return ConversionResult(bundle, b.message_type, b.control_id, ignored_segments, ignored_fields, b.warnings)

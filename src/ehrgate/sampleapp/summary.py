"""FHIR R4 resources → what the summary page shows (Patient, Condition, Observation).
Pure: JSON in, small dicts out; missing elements become empty strings, never errors."""

from __future__ import annotations

from datetime import date
from typing import Any

__all__ = ["concept", "conditions", "demographics", "labs", "outcome_text"]


def concept(cc: dict[str, Any] | None) -> str:
    if not cc:
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for coding in cc.get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
    for coding in cc.get("coding") or []:
        if coding.get("code"):
            return str(coding["code"])
    return ""


def _name(resource: dict[str, Any]) -> str:
    names = resource.get("name") or []
    official = [n for n in names if n.get("use") == "official"] or names
    for name in official:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p).strip()
        if text:
            return text
    return f"Patient {resource.get('id', '')}".strip()


def _age(birth: str, today: date) -> str:
    try:
        born = date.fromisoformat(birth[:10]) if len(birth) >= 10 else None
    except ValueError:
        born = None
    if born is None:
        return ""
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return f"{years} y"


def demographics(patient: dict[str, Any], today: date | None = None) -> dict[str, str]:
    mrn = ""
    for ident in patient.get("identifier") or []:
        if concept(ident.get("type")).upper() in ("MR", "MEDICAL RECORD NUMBER") or not mrn:
            mrn = str(ident.get("value") or "")
    address = ""
    for addr in patient.get("address") or []:
        address = ", ".join(p for p in [*(addr.get("line") or []), addr.get("city") or "", addr.get("state") or ""] if p)
        break
    phone = next((str(t.get("value")) for t in patient.get("telecom") or [] if t.get("system") == "phone"), "")
    birth = str(patient.get("birthDate") or "")
    return {
        "id": str(patient.get("id") or ""), "name": _name(patient), "birthDate": birth,
        "age": _age(birth, today or date.today()), "gender": str(patient.get("gender") or ""), "mrn": mrn,
        "address": address, "phone": phone,
    }


def _entries(bundle: dict[str, Any], res_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry") or []
            if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == res_type]


def conditions(bundle: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for c in _entries(bundle, "Condition"):
        onset = str(c.get("onsetDateTime") or (c.get("onsetPeriod") or {}).get("start") or c.get("recordedDate") or "")
        rows.append({"name": concept(c.get("code")) or "Unnamed condition", "status": concept(c.get("clinicalStatus")),
                     "category": ", ".join(concept(cat) for cat in c.get("category") or [] if concept(cat)),
                     "onset": onset[:10]})
    rows.sort(key=lambda r: r["onset"], reverse=True)
    return rows


def _value(obs: dict[str, Any]) -> str:
    q = obs.get("valueQuantity")
    if q:
        unit = q.get("unit") or q.get("code") or ""
        return f"{q.get('comparator', '')}{q.get('value', '')} {unit}".strip()
    if obs.get("valueCodeableConcept"):
        return concept(obs["valueCodeableConcept"])
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime"):
        if key in obs:
            return str(obs[key])
    parts = [f"{concept(c.get('code'))}: {_value(c)}" for c in obs.get("component") or []]
    return "; ".join(parts)


def labs(bundle: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for o in _entries(bundle, "Observation"):
        when = str(o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start") or o.get("issued") or "")
        flag = ", ".join(concept(i) for i in o.get("interpretation") or [] if concept(i))
        rows.append({"name": concept(o.get("code")) or "Unnamed test", "value": _value(o), "flag": flag,
                     "date": when[:10]})
    return rows


def outcome_text(body: Any) -> str:
    """The diagnostics of an OperationOutcome, for the 'details' line of an unavailable section."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or "") for i in body.get("issue") or []]
        return " ".join(t for t in texts if t)
    return ""

"""The EHR simulator's launch pages: a patient list, a minimal chart (patient banner and the
registered apps) and the EHR launch (SMART App Launch 2.2 §EHR Launch): the app's launch_url opens
in a new tab with ``iss`` = the FHIR base and ``launch`` = a fresh single-use handle bound to this
session, the app, the patient, the encounter and the practice."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .apps import list_apps
from .authorize import _session_user, patient_name, search_patients
from .launch import new_launch
from .users import ENGINE_ONLY_ROLES
from .web import check_csrf, error_page, page

if TYPE_CHECKING:
    from ..fhir.store.service import WriteSession
    from .server import SmartServer

__all__ = ["chart", "home", "launch"]


async def _clinician(srv: SmartServer, request: Request) -> Any:
    found = await _session_user(srv, request)
    if found is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            # After signing in the browser GETs `next`: a form's target (the launch) would answer
            # 405. Go back to the chart the form was on instead.
            patient = str((await request.form()).get("patient") or "")
            back = f"/ehr/patient/{quote(patient, safe='')}" if patient else "/ehr"
        return RedirectResponse(f"/auth/login?{urlencode({'next': back})}", status_code=303)
    if found[2].role in ENGINE_ONLY_ROLES:
        return error_page(request, "Only clinicians can open charts",
                          f"You are signed in as an engine {found[2].role}: that account is for the HL7 v2 engine's "
                          "console (/console) and admin API. Sign out and sign in with a clinician account.", status=403,
                          secure=srv.secure_cookies, user=found[2])
    if found[2].role not in ("clinician", "admin"):
        return error_page(request, "Only clinicians can open charts",
                          "You are signed in as a patient. Sign out and sign in with a clinician account, or open "
                          "your own record with the sample app.", status=403, secure=srv.secure_cookies,
                          link=("/sample-app", "Open the sample app"), user=found[2])
    return found


def _chart_link(form: Any) -> tuple[str, str]:
    patient = str(form.get("patient") or "")
    return (f"/ehr/patient/{quote(patient, safe='')}", "Back to the chart") if patient else ("/ehr", "Back to the patient list")


async def home(srv: SmartServer, request: Request) -> Response:
    found = await _clinician(srv, request)
    if isinstance(found, Response):
        return found
    text = request.query_params.get("q", "")
    patients = await srv.reading(lambda conn: search_patients(conn, srv.fhir_base, text, limit=50))
    return page(request, "ehr_home.html", secure=srv.secure_cookies, user=found[2], q=text, patients=patients)


def _encounters(conn: Any, srv: SmartServer, patient_id: str) -> list[dict[str, str]]:
    from ..fhir.search.engine import run_search
    from ..fhir.search.query import parse_query

    query = parse_query("Encounter", [("patient", patient_id), ("_count", "10"), ("_sort", "-date")], base_url=srv.fhir_base)
    out = []
    for _t, res_id, raw in run_search(conn, query, count=10).rows:
        enc = json.loads(raw)
        kind = ((enc.get("type") or [{}])[0].get("text") or (enc.get("class") or {}).get("display")
                or (enc.get("class") or {}).get("code") or "Encounter")
        start = (enc.get("period") or {}).get("start", "")[:10]
        out.append({"id": res_id, "label": f"{start} {kind}".strip()})
    return out


CONTEXT_TYPES = {"DiagnosticReport": "Report", "ServiceRequest": "Order", "MedicationRequest": "Prescription"}
"""Resources a clinician may launch an app *for* (sent as ``fhirContext``; SMART App Launch 2.2 §fhirContext).
Patient and Encounter are not among them: they travel as ``patient`` and ``encounter``."""


def _label(resource: dict[str, Any]) -> str:
    for key in ("code", "medicationCodeableConcept"):
        cc = resource.get(key) or {}
        text = cc.get("text") or next((c.get("display") for c in cc.get("coding") or [] if c.get("display")), None)
        if text:
            return str(text)
    return str(resource.get("id", ""))


def _context_choices(conn: Any, srv: SmartServer, patient_id: str) -> list[dict[str, str]]:
    from ..fhir.search.engine import run_search
    from ..fhir.search.query import parse_query

    out = []
    for res_type, kind in CONTEXT_TYPES.items():
        query = parse_query(res_type, [("patient", patient_id), ("_count", "5"), ("_sort", "-_lastUpdated")],
                            base_url=srv.fhir_base)
        for _t, res_id, raw in run_search(conn, query, count=5).rows:
            out.append({"reference": f"{res_type}/{res_id}", "label": f"{kind}: {_label(json.loads(raw))}"})
    return out


def _context_item(conn: Any, srv: SmartServer, value: str, patient_id: str | None) -> dict[str, str] | None:
    """A ``fhirContext`` object for ``Type/id`` if that resource is in the launched patient's record."""
    from ..fhir.search.engine import run_search
    from ..fhir.search.query import parse_query

    res_type, _, res_id = value.partition("/")
    if res_type not in CONTEXT_TYPES or not res_id or not patient_id:
        return None
    query = parse_query(res_type, [("_id", res_id), ("patient", patient_id)], base_url=srv.fhir_base)
    if not run_search(conn, query, count=1).rows:
        return None
    return {"reference": f"{res_type}/{res_id}", "type": res_type}


async def chart(srv: SmartServer, request: Request) -> Response:
    from ..fhir.errors import FhirError

    found = await _clinician(srv, request)
    if isinstance(found, Response):
        return found
    patient_id = request.path_params["id"]

    def load(conn: Any) -> Any:
        try:
            stored = srv.store.read("Patient", patient_id, conn)
        except FhirError:
            return None
        resource = json.loads(stored.raw or b"{}")
        apps = [a for a in list_apps(conn) if a.launch_url]
        return resource, apps, _encounters(conn, srv, patient_id), _context_choices(conn, srv, patient_id)

    loaded = await srv.reading(load)
    if loaded is None:
        return error_page(request, "Unknown patient", f"No patient with id {patient_id!r}.",
                          status=404, secure=srv.secure_cookies, link=("/ehr", "Back to the patient list"))
    resource, apps, encounters, choices = loaded
    patient = {"id": patient_id, "name": patient_name(resource), "birthDate": resource.get("birthDate", ""),
               "gender": resource.get("gender", "")}
    return page(request, "chart.html", secure=srv.secure_cookies, user=found[2], patient=patient, apps=apps,
                encounters=encounters, choices=choices)


async def launch(srv: SmartServer, request: Request) -> Response:
    found = await _clinician(srv, request)
    if isinstance(found, Response):
        return found
    _sid, session, user = found
    form = await request.form()
    if not check_csrf(request, form.get("csrf")):
        return error_page(request, "The chart page has expired", "Reload the chart and launch the app again.",
                          status=403, secure=srv.secure_cookies, link=_chart_link(form))
    client_id = str(form.get("client_id") or "")
    patient = str(form.get("patient") or "") or None
    encounter = str(form.get("encounter") or "") or None
    app = await srv.app(client_id)
    if app is None or not app.launch_url:
        return error_page(request, "Unknown app", f"No launchable app {client_id!r} is registered.",
                          status=404, secure=srv.secure_cookies, link=_chart_link(form))
    wanted = [str(v) for v in form.getlist("context") if isinstance(v, str) and v]
    fhir_context = []
    for value in wanted:
        item = await srv.reading(lambda conn, v=value: _context_item(conn, srv, v, patient))
        if item is None:
            return error_page(request, "That record cannot be opened with the app",
                              f"{value!r} is not a report, order or prescription in this patient's record. Reload the "
                              "chart and choose again.", status=400, secure=srv.secure_cookies)
        fhir_context.append(item)

    def start(w: WriteSession) -> str:
        handle = new_launch(w.conn, client_id=client_id, user_id=user.id, session_hash=session.id_hash, patient=patient,
                            encounter=encounter, practice=srv.settings.practice_id or None, now=srv.now(),
                            lifetime=srv.settings.launch_lifetime, fhir_context=fhir_context)
        srv.audit(w, "launch", request, client_id=client_id, user=user.fhir_user or None, patient=patient,
                  description=f"EHR launch of {app.name} started from the chart.")
        return handle

    handle = await srv.writing(start)
    joiner = "&" if urlsplit(app.launch_url).query else "?"
    target = app.launch_url + joiner + urlencode({"iss": srv.fhir_base, "launch": handle})
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

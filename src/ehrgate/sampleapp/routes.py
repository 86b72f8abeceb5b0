"""The sample app's pages. Each browser gets a cookie naming its in-memory session; a session holds
pending authorizations (keyed by ``state``) and one *visit* per completed launch, so two tabs
launched for two patients do not overwrite each other. Tokens never leave the server process, never
reach a log line, and sessions are memory only (a restart asks for a new launch).

Flows (SMART App Launch 2.2): ``/sample-app/launch?iss=…&launch=…`` (EHR launch) and
``/sample-app/start`` (standalone launch) send the browser to the authorize endpoint with PKCE;
``/sample-app/callback`` checks ``state`` and exchanges the code; ``/sample-app/patient/{visit}``
renders the summary, refreshing the access token when it has expired.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..client import AuthorizationRequest, SmartClient, SmartClientError, TokenSet, Transport
from .explain import Explanation, explain
from .grants import Access, section_access
from .summary import concept, conditions, demographics, labs, outcome_text

__all__ = ["EHR_SCOPE", "PREFIX", "STANDALONE_SCOPE", "SampleApp", "sample_app_routes"]

log = logging.getLogger("ehrgate.sampleapp")
T = TypeVar("T")

PREFIX = "/sample-app"
COOKIE = "ehrgate_sample_app"
DATA_SCOPES = (
    "openid fhirUser offline_access patient/Patient.rs patient/Condition.rs patient/Observation.rs "
    "patient/DiagnosticReport.rs"  # to name the report an EHR launch was opened for (fhirContext)
)
EHR_SCOPE = "launch " + DATA_SCOPES
STANDALONE_SCOPE = "launch/patient " + DATA_SCOPES
LAB = "laboratory"
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "frame-ancestors 'self'"}
TEMPLATES = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                        autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


@dataclass
class Visit:
    """One completed launch: its tokens and how it started."""

    tokens: TokenSet
    kind: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    notice: str = ""
    patient_name: str = ""
    """Once the summary has read it: the patient's name, for the home page's list."""


@dataclass
class BrowserSession:
    pending: dict[str, tuple[AuthorizationRequest, str, float]] = field(default_factory=dict)
    visits: dict[str, Visit] = field(default_factory=dict)
    touched: float = 0.0


@dataclass(frozen=True)
class Section:
    title: str
    access: Access
    rows: list[dict[str, str]] = field(default_factory=list)
    problem: str = ""

    @property
    def available(self) -> bool:
        return self.access.allowed and not self.problem


class SampleApp:
    """The app: one public SMART client of the FHIR server at ``fhir_base``."""

    def __init__(
        self, fhir_base: str, client_id: str, *, redirect_uri: str | None = None, transport: Transport | None = None,
        secure_cookies: bool = False, clock: Callable[[], float] = time.time, max_sessions: int = 2000,
        session_ttl: float = 8 * 3600, pending_ttl: float = 900,
    ) -> None:
        origin = fhir_base.rstrip("/").rsplit("/fhir", 1)[0]
        self.fhir_base = fhir_base.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri or origin + PREFIX + "/callback"
        self.launch_url = origin + PREFIX + "/launch"
        self.client = SmartClient(self.fhir_base, client_id, redirect_uri=self.redirect_uri, transport=transport)
        self.secure = secure_cookies
        self.clock = clock
        self.max_sessions = max_sessions
        self.session_ttl = session_ttl
        self.pending_ttl = pending_ttl
        self.sessions: OrderedDict[str, BrowserSession] = OrderedDict()

    # -- sessions (memory) ----------------------------------------------------------------------

    def session(self, request: Request) -> tuple[str, BrowserSession, bool]:
        """(cookie value, session, whether the cookie is new)."""
        now = self.clock()
        while self.sessions:
            oldest_id, oldest = next(iter(self.sessions.items()))
            if now - oldest.touched < self.session_ttl and len(self.sessions) < self.max_sessions:
                break
            del self.sessions[oldest_id]
        sid = request.cookies.get(COOKIE, "")
        found = self.sessions.get(sid) if sid else None
        new = found is None
        if found is None:
            sid, found = secrets.token_urlsafe(32), BrowserSession()
            self.sessions[sid] = found
        found.touched = now
        self.sessions.move_to_end(sid)
        for state in [s for s, (_r, _k, t) in found.pending.items() if now - t > self.pending_ttl]:
            del found.pending[state]
        return sid, found, new

    def _with_cookie(self, response: Response, sid: str, new: bool) -> Response:
        if new:
            response.set_cookie(COOKIE, sid, path=PREFIX, httponly=True, samesite="lax", secure=self.secure)
        return response

    # -- rendering ------------------------------------------------------------------------------

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(prefix=PREFIX, fhir_base=self.fhir_base, client_id=self.client_id,
                                                        launch_url=self.launch_url, redirect_uri=self.redirect_uri, **context)
        return HTMLResponse(html, status, headers=dict(PAGE_HEADERS))

    def problem(self, why: Explanation, status: int = 400) -> HTMLResponse:
        return self.page("problem.html", status=status, why=why)

    async def call(self, fn: Callable[[], T]) -> T:
        """Client calls block (they may even call this same server): run them in a worker thread."""
        return await anyio.to_thread.run_sync(fn)

    # -- launches -------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        sid, session, new = self.session(request)
        visits = [(vid, v) for vid, v in reversed(session.visits.items())]
        return self._with_cookie(self.page("home.html", visits=visits), sid, new)

    async def _begin(self, request: Request, kind: str, make: Callable[[], AuthorizationRequest]) -> Response:
        sid, session, new = self.session(request)
        try:
            auth = await self.call(make)
        except SmartClientError as exc:
            return self._with_cookie(self.problem(explain(exc), status=502 if "unreach" in explain(exc).code else 400),
                                     sid, new)
        session.pending[auth.state] = (auth, kind, self.clock())
        response = RedirectResponse(auth.url, status_code=303, headers=dict(PAGE_HEADERS))
        return self._with_cookie(response, sid, new)

    async def start(self, request: Request) -> Response:
        return await self._begin(request, "standalone launch",
                                 lambda: self.client.authorization_request(STANDALONE_SCOPE, nonce=secrets.token_urlsafe(12)))

    async def launch(self, request: Request) -> Response:
        if not request.query_params.get("iss") and not request.query_params.get("launch"):
            return RedirectResponse(PREFIX, status_code=303)
        url = str(request.url)
        return await self._begin(request, "EHR launch",
                                 lambda: self.client.ehr_launch(url, EHR_SCOPE, nonce=secrets.token_urlsafe(12)))

    async def callback(self, request: Request) -> Response:
        sid, session, new = self.session(request)
        state = request.query_params.get("state", "")
        parked = session.pending.pop(state, None) if state else None
        if parked is None:
            why = explain("state_mismatch") if session.visits or not new else explain("session_ended")
            if request.query_params.get("error"):
                why = explain(request.query_params["error"], request.query_params.get("error_description", ""))
            return self._with_cookie(self.problem(why), sid, new)
        auth, kind, _t = parked
        url = str(request.url)
        try:
            tokens = await self.call(lambda: self.client.complete(auth, url))
        except SmartClientError as exc:
            log.info("sample app: launch failed (%s)", type(exc).__name__)
            return self._with_cookie(self.problem(explain(exc)), sid, new)
        vid = secrets.token_urlsafe(9)
        session.visits[vid] = Visit(tokens, kind)
        while len(session.visits) > 20:
            session.visits.pop(next(iter(session.visits)))
        log.info("sample app: %s completed, visit %s, patient %s", kind, vid, tokens.patient)
        return self._with_cookie(RedirectResponse(f"{PREFIX}/patient/{quote(vid)}", status_code=303,
                                                  headers=dict(PAGE_HEADERS)), sid, new)

    # -- the summary ----------------------------------------------------------------------------

    def _visit(self, request: Request) -> tuple[str, BrowserSession, bool, Visit | None]:
        sid, session, new = self.session(request)
        return sid, session, new, session.visits.get(request.path_params["visit"])

    async def _fresh(self, visit: Visit) -> Explanation | None:
        if not visit.tokens.expired:
            return None
        if not visit.tokens.refresh_token:
            return explain("session_ended")
        try:
            visit.tokens = await self.call(lambda: self.client.refresh(visit.tokens))
        except SmartClientError as exc:
            return explain(exc)
        visit.notice = "The app's access had expired and was renewed automatically."
        return None

    async def summary(self, request: Request) -> Response:
        sid, _session, new, visit = self._visit(request)
        if visit is None:
            return self._with_cookie(self.problem(explain("session_ended"), status=404), sid, new)
        why = await self._fresh(visit)
        if why is not None:
            return self._with_cookie(self.problem(why, status=401), sid, new)
        tokens = visit.tokens
        granted = tokens.scope
        patient_id = tokens.patient
        notice, visit.notice = visit.notice, ""
        if not patient_id:
            none = Access("none", "No patient was chosen for this launch, so there is nothing to show. Launch the app "
                                  "from a patient's chart, or choose a patient when the EHR asks.")
            sections = [Section("Conditions", none), Section("Recent lab results", none)]
            return self._with_cookie(self.page("summary.html", visit=visit, vid=request.path_params["visit"],
                                               patient=None, patient_access=none, sections=sections, context=[],
                                               notice=notice, expires_in=self._expires_in(tokens)), sid, new)
        loaded = await self.call(lambda: self._load(tokens, patient_id, granted))
        if isinstance(loaded.get("patient"), dict) and loaded["patient"].get("name"):
            visit.patient_name = str(loaded["patient"]["name"])
        page = self.page("summary.html", visit=visit, vid=request.path_params["visit"], notice=notice,
                         expires_in=self._expires_in(tokens), **loaded)
        return self._with_cookie(page, sid, new)

    def _expires_in(self, tokens: TokenSet) -> int:
        return max(0, int(tokens.obtained_at + tokens.expires_in - self.clock()) // 60) if tokens.expires_in else 0

    def _fetch(self, path: str, tokens: TokenSet, label: str) -> tuple[Any, str]:
        """GET a FHIR path; (json, '') or (None, why it could not be shown)."""
        try:
            resp = self.client.get(path, tokens)
        except SmartClientError:
            return None, f"The EHR did not answer, so {label} cannot be shown. Reload the page to try again."
        try:
            body = resp.json() if resp.body else None
        except SmartClientError:
            body = None
        if resp.status == 200:
            return body, ""
        said = outcome_text(body)
        if resp.status == 401:
            return None, "The app's access has ended (it was revoked, or you signed out). Launch the app again."
        if resp.status == 403:
            return None, f"The EHR refused to share {label} with this app. {said}".strip()
        if resp.status == 404:
            return None, f"The EHR has no {label} for this patient record."
        return None, f"The EHR could not provide {label} (HTTP {resp.status}). Reload the page to try again."

    def _load(self, tokens: TokenSet, patient_id: str, granted: str) -> dict[str, Any]:
        patient_access = section_access(granted, "Patient", "demographics", need="r")
        patient, patient_problem = None, ""
        if patient_access.allowed:
            body, patient_problem = self._fetch(f"Patient/{quote(patient_id)}", tokens, "the patient's demographics")
            patient = demographics(body) if body else None
        if patient_problem:
            patient_access = Access("none", patient_problem)

        sections = []
        cond_access = section_access(granted, "Condition", "conditions")
        rows: list[dict[str, str]] = []
        problem = ""
        if cond_access.allowed:
            body, problem = self._fetch(f"Condition?patient={quote(patient_id)}&_count=100", tokens, "conditions")
            rows = conditions(body) if body else []
        sections.append(Section("Conditions", cond_access, rows, problem))

        lab_access = section_access(granted, "Observation", "laboratory results", category=LAB)
        rows, problem = [], ""
        if lab_access.allowed:
            body, problem = self._fetch(f"Observation?patient={quote(patient_id)}&category={LAB}&_sort=-date&_count=10",
                                        tokens, "laboratory results")
            rows = labs(body) if body else []
        sections.append(Section("Recent lab results", lab_access, rows, problem))

        context = []
        for item in tokens.fhir_context:
            ref = str(item.get("reference") or item.get("canonical") or "")
            label = ref
            if item.get("reference") and "/" in ref:
                body, _why = self._fetch(ref, tokens, "the launch context")
                if isinstance(body, dict):
                    label = f"{concept(body.get('code')) or body.get('resourceType', '')} ({ref})"
            context.append({"label": label, "type": str(item.get("type") or ref.split("/")[0]), "role": str(item.get("role") or "")})
        return {"patient": patient, "patient_access": patient_access, "sections": sections, "context": context}

    async def renew(self, request: Request) -> Response:
        """Refresh the access token now (the button under the summary)."""
        sid, _session, new, visit = self._visit(request)
        if visit is None:
            return self._with_cookie(self.problem(explain("session_ended"), status=404), sid, new)
        form = await request.form()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, visit.csrf):
            return self._with_cookie(self.problem(Explanation(
                "The page was out of date", "Reload the patient summary and press the button again.", "csrf")), sid, new)
        current = visit.tokens
        try:
            visit.tokens = await self.call(lambda: self.client.refresh(current))
        except SmartClientError as exc:
            return self._with_cookie(self.problem(explain(exc)), sid, new)
        visit.notice = "Access renewed."
        return self._with_cookie(RedirectResponse(f"{PREFIX}/patient/{quote(request.path_params['visit'])}",
                                                  status_code=303, headers=dict(PAGE_HEADERS)), sid, new)

    def routes(self) -> list[Route]:
        table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
            (PREFIX, self.home, ["GET"]),
            (PREFIX + "/", self.home, ["GET"]),
            (PREFIX + "/start", self.start, ["GET"]),
            (PREFIX + "/launch", self.launch, ["GET"]),
            (PREFIX + "/callback", self.callback, ["GET"]),
            (PREFIX + "/patient/{visit}", self.summary, ["GET"]),
            (PREFIX + "/patient/{visit}/renew", self.renew, ["POST"]),
        ]
        return [Route(path, fn, methods=methods) for path, fn, methods in table]


def sample_app_routes(fhir_base: str, client_id: str, **options: Any) -> list[Route]:
    """The routes to mount in the server; ``options`` go to ``SampleApp``."""
    return SampleApp(fhir_base, client_id, **options).routes()

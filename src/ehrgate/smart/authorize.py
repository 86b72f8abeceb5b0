"""The authorize endpoint and the pages behind it: sign-in, patient picker, consent.

RFC 6749 §4.1.1–4.1.2 with SMART App Launch 2.2 (§App Launch: Launch and Authorization):

1. ``/auth/authorize`` (GET or POST) checks the client and the exact redirect URI first; if either
   is wrong it shows an error page and never redirects (§4.1.2.1). Other errors go back to the app
   as ``error=…&state=…``. ``aud`` must be this server's FHIR base, PKCE S256 is required.
2. The valid request is parked (``sessions.Pending``) and the browser goes through sign-in, the
   EHR launch handle check, the patient picker (``launch/patient`` for clinicians) and consent.
3. Consent issues a single-use code bound to the grant, PKCE challenge, redirect URI and nonce.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..ratelimit import client_key
from . import grants as G
from .apps import App
from .errors import (
    AccessDenied,
    ConsentRequired,
    InteractionRequired,
    InvalidRequest,
    InvalidScope,
    LoginRequired,
    OAuthError,
    RegistrationNotSupported,
    RequestNotSupported,
    RequestUriNotSupported,
    UnsupportedResponseType,
)
from .hashing import digest
from .launch import LaunchError, consume_launch, rebind_launch
from .pkce import PkceError, check_challenge
from .scopes import ScopeError, ScopeSet, category_alternatives, describe, parse_scopes
from .sessions import (
    delete_pending,
    end_session,
    get_pending,
    get_session,
    new_pending,
    new_session,
    update_pending,
)
from .users import ENGINE_ONLY_ROLES, User, authenticate, get_user
from .web import SESSION_COOKIE, check_csrf, error_page, page, set_cookie

if TYPE_CHECKING:
    from ..fhir.store.service import WriteSession
    from .server import SmartServer

__all__ = ["authorize", "consent", "login", "logout", "pick_patient", "resume"]

log = logging.getLogger("ehrgate.smart")
START_AGAIN = "Go back to the app and start again."


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _with_query(uri: str, query: str) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + query


def _app_error(redirect_uri: str, exc: OAuthError, state: str | None) -> RedirectResponse:
    return _redirect(_with_query(redirect_uri, exc.redirect_query(state)))


# -- 1. the authorization request --------------------------------------------------------------

_UNSUPPORTED: dict[str, type[OAuthError]] = {
    "request": RequestNotSupported, "request_uri": RequestUriNotSupported, "registration": RegistrationNotSupported,
}


def _validate(srv: SmartServer, app: App, params: dict[str, str]) -> dict[str, Any]:
    """Everything after client and redirect URI; raises OAuthError (sent back to the app)."""
    for name, error in _UNSUPPORTED.items():  # OpenID Connect Core §6: refused, never silently ignored
        if name in params:
            raise error(f"The '{name}' parameter is not supported by this server; send the parameters themselves.")
    if not params.get("response_type"):
        raise InvalidRequest("Missing 'response_type'; send response_type=code.")
    if params.get("response_type") != "code":
        raise UnsupportedResponseType(f"response_type {params.get('response_type')!r} is not supported; use 'code'.")
    if not params.get("state"):
        raise InvalidRequest("Missing 'state'; SMART apps must send a random state value.")
    aud = params.get("aud", "")
    if aud.rstrip("/") != srv.fhir_base:
        raise InvalidRequest(f"'aud' must be this server's FHIR base URL {srv.fhir_base!r}; got {aud!r}.")
    try:
        check_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
    except PkceError as exc:
        raise InvalidRequest(str(exc)) from None
    try:
        requested = parse_scopes(params.get("scope", ""))
    except ScopeError as exc:
        raise InvalidScope(str(exc)) from None
    if not len(requested):
        raise InvalidScope("Missing 'scope'; ask for e.g. 'launch/patient openid fhirUser patient/*.rs'.")
    prompt = set(params.get("prompt", "").split())
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequest(f"prompt {params['prompt']!r}: 'none' cannot be combined with other values.")
    max_age = params.get("max_age")
    if max_age is not None and not (max_age.isascii() and max_age.isdigit()):
        raise InvalidRequest(f"'max_age' must be a number of seconds; got {max_age!r}.")
    system = [s.raw for s in requested if s.resource and s.resource.context == "system"]
    if system:
        raise InvalidScope(f"Scope {system[0]!r} is for backend services (client_credentials), not for a user's authorization.")
    allowed = requested.restrict_to(app.allowed_scopes)
    if not any(s.resource for s in allowed) and "openid" not in allowed:
        raise InvalidScope(f"None of the requested scopes is registered for app {app.client_id!r}.")
    return {
        "client_id": app.client_id, "redirect_uri": params["redirect_uri"], "state": params["state"],
        "scope": str(requested), "code_challenge": params["code_challenge"],
        "code_challenge_method": params["code_challenge_method"], "nonce": params.get("nonce") or None,
        "launch": params.get("launch") or None,
        # OpenID Connect Core §3.1.2.1 prompt: consent asks again even when the user's approval is
        # remembered; login asks for the password again; select_account asks which account to use (the
        # sign-in page: continue as the signed-in user or sign in as another); none shows no page at all
        # (or says why not)
        "prompt_consent": "consent" in prompt, "prompt_login": "login" in prompt, "prompt_none": "none" in prompt,
        "prompt_select_account": "select_account" in prompt,
        "max_age": int(max_age) if max_age is not None else None,  # §3.1.2.1: an older sign-in is done again
    }


async def authorize(srv: SmartServer, request: Request) -> Response:
    if request.method == "POST":
        form = await request.form()
        items = list(form.multi_items())
    else:
        items = list(request.query_params.multi_items())
    params: dict[str, str] = {}
    repeated: list[str] = []
    for key, value in items:
        if not isinstance(value, str):
            continue
        if key in params:
            if key in ("client_id", "redirect_uri"):  # no trusted address to tell the app at (§4.1.2.1)
                return error_page(request, "The app sent a malformed request",
                                  f"The parameter {key!r} appears more than once. {START_AGAIN}", secure=srv.secure_cookies)
            repeated.append(key)
        params[key] = value
    client_id = params.get("client_id", "")
    if not client_id:
        return error_page(request, "The app sent a malformed request",
                          f"The app did not send its client_id. {START_AGAIN} If this keeps happening, tell the app's "
                          "developer.", secure=srv.secure_cookies)
    app = await srv.app(client_id)
    if app is None:
        return error_page(request, "Unknown app",
                          f"No app with client_id {client_id!r} is registered with this EHR. Ask the app's developer "
                          "to register it, or check the client_id.", secure=srv.secure_cookies)
    redirect_uri = params.get("redirect_uri") or (app.redirect_uris[0] if len(app.redirect_uris) == 1 else "")
    if not redirect_uri and app.redirect_uris:  # §3.1.2.3: with several registered, the app must say which
        return error_page(request, "The app sent a malformed request",
                          f"{app.name} did not send a redirect_uri, and it has several registered return addresses. "
                          "Ask the app's developer to send redirect_uri.", secure=srv.secure_cookies)
    if redirect_uri not in app.redirect_uris:
        return error_page(request, "The app's return address does not match",
                          f"The redirect_uri {redirect_uri!r} is not registered for {app.name}; registered addresses "
                          "must match exactly. Ask the app's developer to fix the registration.", secure=srv.secure_cookies)
    sent = bool(params.get("redirect_uri"))
    params["redirect_uri"] = redirect_uri
    try:
        if repeated:  # RFC 6749 §3.1: parameters MUST NOT be included more than once
            raise InvalidRequest(f"Parameter {repeated[0]!r} is repeated; send it once (RFC 6749 §3.1).")
        parked = _validate(srv, app, params)
    except OAuthError as exc:
        log.info("authorize refused client=%s error=%s", app.client_id, exc.error)
        return _app_error(redirect_uri, exc, None if "state" in repeated else params.get("state"))
    parked["redirect_uri_sent"] = sent
    pid = await srv.writing(lambda w: new_pending(w.conn, parked, now=srv.now()))
    return await _advance(srv, request, pid)


async def resume(srv: SmartServer, request: Request) -> Response:
    return await _advance(srv, request, request.query_params.get("req", ""))


# -- 2. sign-in, launch, patient, consent --------------------------------------------------------


async def _session_user(srv: SmartServer, request: Request) -> tuple[str, Any, User] | None:
    sid = request.cookies.get(SESSION_COOKIE)

    def look(conn: Any) -> Any:
        session = get_session(conn, sid, now=srv.now())
        if session is None:
            return None
        user = get_user(conn, session.user_id)
        return (sid, session, user) if user else None

    return await srv.reading(look) if sid else None


def _expired(srv: SmartServer, request: Request) -> Response:
    return error_page(request, "This sign-in has expired",
                      f"The authorization request is no longer valid. {START_AGAIN}", secure=srv.secure_cookies)


async def _advance(srv: SmartServer, request: Request, pid: str) -> Response:
    pending = await srv.reading(lambda conn: get_pending(conn, pid, now=srv.now()))
    if pending is None:
        return _expired(srv, request)
    params = pending.params
    found = await _session_user(srv, request)
    if found is None:
        if params.get("prompt_none"):
            return await _no_page(srv, pid, params, LoginRequired("Nobody is signed in; ask again without prompt=none."))
        return _redirect(f"/auth/login?{urlencode({'req': pid})}")
    _sid, session, user = found
    # OpenID Connect Core §3.1.2.1 max_age; ">=": max_age=0 is prompt=login (the sign-in clears it)
    if params.get("max_age") is not None and srv.now() - session.created >= params["max_age"]:
        if params.get("prompt_none"):
            return await _no_page(srv, pid, params, LoginRequired(
                "The sign-in is older than max_age; ask again without prompt=none."))
        return _redirect(f"/auth/login?{urlencode({'req': pid})}")
    if params.get("prompt_login") or params.get("prompt_select_account"):
        # prompt=login: sign in again; select_account: choose the account (the sign-in clears the flags)
        return _redirect(f"/auth/login?{urlencode({'req': pid})}")
    if user.role in ENGINE_ONLY_ROLES:  # engine staff, not clinicians: no access to records through apps
        return error_page(request, "This account cannot authorize apps",
                          f"You are signed in as an engine {user.role}: that account is for the engine admin API "
                          "only. Sign out and sign in with a clinician or patient account.", status=403,
                          secure=srv.secure_cookies, user=user)
    if pending.session_hash is None:
        await srv.writing(lambda w: update_pending(w.conn, pid, session_hash=session.id_hash))
    elif pending.session_hash != session.id_hash:
        return _expired(srv, request)
    ctx: dict[str, Any] = params.get("_ctx") or {}
    if params.get("launch") and not ctx.get("launched"):

        def use(w: WriteSession) -> Any:
            try:
                launch = consume_launch(w.conn, params["launch"], client_id=params["client_id"],
                                        session_hash=session.id_hash, now=srv.now())
            except LaunchError as exc:
                srv.audit(w, "launch", request, outcome="minor", client_id=params["client_id"], user=user.fhir_user or None,
                          description=f"Launch refused: {exc.reason}.")
                return exc
            new_ctx = {"launched": True, "patient": launch.patient, "encounter": launch.encounter,
                       "practice": launch.practice, "fhir_context": launch.fhir_context}
            update_pending(w.conn, pid, params=_dump({**params, "_ctx": new_ctx}), patient=launch.patient)
            srv.audit(w, "launch", request, client_id=params["client_id"], user=user.fhir_user or None,
                      patient=launch.patient, description="EHR launch accepted.")
            return new_ctx

        result = await srv.writing(use)
        if isinstance(result, LaunchError):
            return error_page(request, "This launch link cannot be used", str(result), secure=srv.secure_cookies)
        ctx = result
    patient = ctx.get("patient") or pending.patient
    scopes = parse_scopes(params["scope"])
    if user.role == "patient":
        if ctx.get("launched") and patient and patient != user.patient_id:
            return error_page(request, "This launch is not for you", "The launch names another patient's record.",
                              secure=srv.secure_cookies)
        patient = user.patient_id
    elif "launch/patient" in scopes and not patient:
        if params.get("prompt_none"):
            return await _no_page(srv, pid, params, InteractionRequired("A patient must be chosen; ask again "
                                                                        "without prompt=none."))
        return _redirect(f"/auth/patient?{urlencode({'req': pid})}")
    app = await srv.app(params["client_id"])
    if app is None:
        return _expired(srv, request)
    if not params.get("prompt_consent"):
        remembered = await srv.reading(lambda conn: G.remembered_consent(conn, user.id, app.client_id))
        requested = scopes.restrict_to(app.allowed_scopes)
        if remembered is not None and len(requested) and not requested.uncovered_by(parse_scopes(remembered)):
            # approved before with "do not ask me again", and the app asks for no more than that
            code = await srv.writing(lambda w: _grant_code(srv, w, request, pid, params, ctx, app, user, session,
                                                           requested, patient, remembered=True))
            return _redirect(_with_query(params["redirect_uri"], urlencode({"code": code, "state": params["state"]})))
    if params.get("prompt_none"):
        return await _no_page(srv, pid, params, ConsentRequired("The user has not approved this access; ask again "
                                                                "without prompt=none."))
    label = await srv.reading(lambda conn: _patient_label(srv, conn, patient)) if patient else None
    return _consent_page(srv, request, pid, app, scopes, user, patient, label)


async def _no_page(srv: SmartServer, pid: str, params: dict[str, Any], exc: OAuthError) -> Response:
    """``prompt=none`` and a page would be needed: the request ends, the app hears why."""
    await srv.writing(lambda w: delete_pending(w.conn, pid))
    return _app_error(params["redirect_uri"], exc, params["state"])


def _patient_label(srv: SmartServer, conn: Any, patient_id: str) -> str:
    """'Ada Nunez, born 1980-02-03' for the consent page: people recognise names, not ids."""
    import json

    from ..fhir.errors import FhirError

    try:
        resource = json.loads(srv.store.read("Patient", patient_id, conn).raw or b"{}")
    except FhirError:
        return patient_id
    born = resource.get("birthDate")
    return patient_name(resource) + (f", born {born}" if born else "")


def _dump(params: dict[str, Any]) -> str:
    import json

    return json.dumps(params)


def _consent_page(
    srv: SmartServer, request: Request, pid: str, app: App, scopes: ScopeSet, user: User, patient: str | None,
    patient_label: str | None = None,
) -> Response:
    items = []
    refused = []
    for scope in scopes:
        if not app.allowed_scopes.covers(scope):
            refused.append({"raw": scope.raw, "text": describe(scope)})
            continue
        alternatives = [{"raw": alt.raw, "label": label} for alt, label in category_alternatives(scope)]
        items.append({"raw": scope.raw, "text": describe(scope), "alternatives": alternatives})
    return page(request, "consent.html", secure=srv.secure_cookies, app=app, items=items, refused=refused,
                req=pid, user=user, patient=patient, patient_label=patient_label or patient)


def _grant_code(srv: SmartServer, w: WriteSession, request: Request, pid: str, params: dict[str, Any],
                ctx: dict[str, Any], app: App, user: User, session: Any, granted: ScopeSet, patient: str | None,
                *, remembered: bool = False) -> str:
    """The authorization's grant and its code, in ``w``: after the consent page's Allow, or at once
    when the user's remembered approval covers what the app asks (``remembered``)."""
    delete_pending(w.conn, pid)
    if user.role == "patient":
        patient = user.patient_id
    redirect_uri = params["redirect_uri"]
    launched = bool(ctx.get("launched"))
    # The EHR simulator opens a launched app in a tab of its own, with no chart banner beside it:
    # the app must show which patient it is about (SMART: need_patient_banner), after any launch.
    context: dict[str, Any] = {"role": user.role, "fhir_user": user.fhir_user,
                               "need_patient_banner": True, "smart_style_url": srv.auth_base + "/style.json"}
    practice = ctx.get("practice")
    if launched and practice:
        context["practice_id"] = practice
    if launched and ctx.get("fhir_context"):
        context["fhirContext"] = ctx["fhir_context"]  # SMART 2.2: objects with reference, type (role)
    keep_patient = patient if (launched or "launch/patient" in granted or user.role == "patient"
                               or any(s.context == "patient" for s in granted.resource_scopes)) else None
    encounter = ctx.get("encounter") if launched else None
    grant = G.create_grant(
        w.conn, client_id=app.client_id, user_id=user.id, scope=str(granted), patient=keep_patient,
        encounter=encounter, context=context, session_hash=session.id_hash, offline="offline_access" in granted,
        now=srv.now(),
    )
    # RFC 6749 §4.1.3: the token request must repeat redirect_uri only if the authorization request sent it
    sent = params.get("redirect_uri_sent", True)
    code = G.issue_code(w.conn, grant, redirect_uri=redirect_uri if sent else "", code_challenge=params["code_challenge"],
                        challenge_method=params["code_challenge_method"], nonce=params.get("nonce"),
                        auth_time=session.created, now=srv.now(), lifetime=srv.settings.auth_code_lifetime)
    how = "The user's remembered approval granted" if remembered else "The user granted"
    srv.audit(w, "authorize", request, client_id=app.client_id, user=user.fhir_user or None, patient=keep_patient,
              grant_id=grant.id, description=f"{how}: {granted}.")
    return code


async def consent(srv: SmartServer, request: Request) -> Response:
    form = await request.form()
    if not check_csrf(request, form.get("csrf")):
        return error_page(request, "The form has expired",
                          "This page was open too long or came from another site. Go back to the app and start again.",
                          status=403, secure=srv.secure_cookies)
    pid = str(form.get("req") or "")
    pending = await srv.reading(lambda conn: get_pending(conn, pid, now=srv.now()))
    found = await _session_user(srv, request)
    if pending is None or found is None or pending.session_hash != found[1].id_hash:
        return _expired(srv, request)
    _sid, session, user = found
    params = pending.params
    ctx: dict[str, Any] = params.get("_ctx") or {}
    app = await srv.app(params["client_id"])
    if app is None:
        return _expired(srv, request)
    requested = parse_scopes(params["scope"]).restrict_to(app.allowed_scopes)
    chosen = [str(v) for v in form.getlist("scope") if isinstance(v, str)]
    try:
        granted = parse_scopes(chosen)
    except ScopeError:
        granted = ScopeSet()
    if granted.uncovered_by(requested):
        return error_page(request, "The form was changed",
                          "The consent form asked for scopes the app did not request. Start again from the app.",
                          status=400, secure=srv.secure_cookies)
    redirect_uri, state = params["redirect_uri"], params["state"]
    patient = ctx.get("patient") or pending.patient
    if user.role == "patient":
        patient = user.patient_id
    denied = form.get("decision") != "allow" or not len(granted)

    remember = form.get("remember") == "yes"

    def decide(w: WriteSession) -> str | None:
        if denied:
            delete_pending(w.conn, pid)
            srv.audit(w, "authorize", request, outcome="minor", client_id=app.client_id, user=user.fhir_user or None,
                      patient=patient, description="The user denied access.")
            return None
        if remember:
            G.remember_consent(w.conn, user.id, app.client_id, str(granted), now=srv.now())
            srv.audit(w, "consent", request, client_id=app.client_id, user=user.fhir_user or None,
                      description=f"The user asked not to be asked again while the app asks for no more than: "
                                  f"{granted}.")
        return _grant_code(srv, w, request, pid, params, ctx, app, user, session, granted, patient)

    code = await srv.writing(decide)
    if code is None:
        exc = AccessDenied("The user denied access to the app." if form.get("decision") != "allow"
                           else "The user granted no scopes.")
        return _app_error(redirect_uri, exc, state)
    return _redirect(_with_query(redirect_uri, urlencode({"code": code, "state": state})))


# -- sign-in and sign-out --------------------------------------------------------------------------


def _next_url(form_or_query: Any) -> str:
    req = form_or_query.get("req")
    if req:
        return f"/auth/continue?{urlencode({'req': str(req)})}"
    nxt = str(form_or_query.get("next") or "/ehr")
    # the simulator's pages, the engine console's and connected apps (the management_endpoint)
    return nxt if nxt.startswith(("/ehr", "/console", "/auth/apps")) else "/ehr"


async def _account_choice(srv: SmartServer, request: Request, pid: str) -> tuple[Any, User] | None:
    """For OpenID Connect ``prompt=select_account`` (Core §3.1.2.1): the request waiting for an
    account choice and the user signed in now, whom the sign-in page offers to continue as."""
    pending = await srv.reading(lambda conn: get_pending(conn, pid, now=srv.now()))
    if pending is None or not pending.params.get("prompt_select_account") or pending.params.get("prompt_login"):
        return None
    found = await _session_user(srv, request)
    max_age = pending.params.get("max_age")
    if found is None or (max_age is not None and srv.now() - found[1].created >= max_age):  # a sign-in is due anyway
        return None
    return pending, found[2]


async def login(srv: SmartServer, request: Request) -> Response:
    if request.method == "GET":
        req = request.query_params.get("req", "")
        choice = await _account_choice(srv, request, req) if req else None
        return page(request, "login.html", secure=srv.secure_cookies, req=req, next=request.query_params.get("next", ""),
                    error=None, username="", current=choice[1] if choice else None)
    form = await request.form()
    if not check_csrf(request, form.get("csrf")):
        return error_page(request, "The sign-in form has expired",
                          "Reload the sign-in page and try again.", status=403, secure=srv.secure_cookies)
    if form.get("continue") == "yes":  # prompt=select_account: the signed-in account was chosen
        choice = await _account_choice(srv, request, str(form.get("req") or ""))
        if choice is None:
            return _expired(srv, request)
        waiting = choice[0]
        await srv.writing(lambda w: update_pending(w.conn, waiting.id,
                                                   params=_dump({**waiting.params, "prompt_select_account": False})))
        return _redirect(_next_url(form))
    username = str(form.get("username") or "")
    password = str(form.get("password") or "")
    address = client_key(request.client.host if request.client else "")
    wait = srv.login_failures.wait(address)
    if wait:  # password guessing: ten failures a minute per address, then no password is checked
        slow = page(request, "login.html", status=429, secure=srv.secure_cookies, req=form.get("req") or "",
                    next=form.get("next") or "", username=username,
                    error=f"Too many failed sign-ins from this address. Try again in {wait} seconds.")
        slow.headers["Retry-After"] = str(wait)
        return slow
    srv.login_failures.hit(address)  # counted before the check, so guesses sent at once all count

    def sign_in(w: WriteSession) -> str | None:
        user = authenticate(w.conn, username, password)
        if user is None:
            srv.audit(w, "login", request, outcome="minor", description="Sign-in failed (wrong username or password).")
            return None
        srv.audit(w, "login", request, user=user.fhir_user or None, description=f"User {user.username} signed in.")
        sid = new_session(w.conn, user.id, now=srv.now(), lifetime=srv.settings.session_lifetime)
        waiting = get_pending(w.conn, str(form.get("req") or ""), now=srv.now())
        if waiting is not None and (waiting.params.get("prompt_login") or waiting.params.get("prompt_select_account")
                                    or waiting.params.get("max_age") is not None):
            # the fresh sign-in prompt=login or max_age asked for, or the account select_account asked to choose
            update_pending(w.conn, waiting.id, params=_dump({**waiting.params, "prompt_login": False,
                                                             "prompt_select_account": False, "max_age": None}))
            if waiting.params.get("launch"):  # an EHR launch bound to the session signed in before
                rebind_launch(w.conn, waiting.params["launch"], user_id=user.id, session_hash=digest(sid))
        return sid

    sid = await srv.writing(sign_in)
    if sid is None:
        return page(request, "login.html", status=401, secure=srv.secure_cookies, req=form.get("req") or "",
                    next=form.get("next") or "", username=username,
                    error="The username or password is not right. Check them and try again.")
    srv.login_failures.forgive(address)  # a success is not a failure
    response = _redirect(_next_url(form))
    set_cookie(response, SESSION_COOKIE, sid, secure=srv.secure_cookies, max_age=srv.settings.session_lifetime)
    return response


async def logout(srv: SmartServer, request: Request) -> Response:
    form = await request.form()
    if not check_csrf(request, form.get("csrf")):
        return error_page(request, "The form has expired", "Reload the page and sign out again.", status=403,
                          secure=srv.secure_cookies)
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        found = await _session_user(srv, request)

        def out(w: WriteSession) -> list[str]:
            ended = end_session(w.conn, sid, now=srv.now())
            if found is not None:
                srv.audit(w, "logout", request, user=found[2].fhir_user or None,
                          description=f"Signed out; {len(ended)} online_access grant(s) ended.")
            return ended

        for grant_id in await srv.writing(out):
            srv.forget_grant(grant_id)
    response = _redirect("/auth/login?next=/ehr")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=srv.secure_cookies)
    return response


# -- patient picker (standalone launch with launch/patient, clinicians) ---------------------------


def search_patients(conn: Any, fhir_base: str, text: str, limit: int = 25) -> list[dict[str, Any]]:
    import json

    from ..fhir.search.engine import run_search
    from ..fhir.search.query import parse_query

    items = [("_count", str(limit)), ("_sort", "family")]
    # Each word of what the user typed ("Aaliyah Harris", "Harris, Aaliyah") must start a part of
    # the name: one name parameter per word (AND). The whole text as one value matched no name, and
    # its comma meant OR.
    items += [("name", word) for word in re.split(r"[\s,]+", text) if word]
    query = parse_query("Patient", items, base_url=fhir_base)
    found = run_search(conn, query, count=limit)
    out = []
    for _type, res_id, raw in found.rows:
        resource = json.loads(raw)
        out.append({"id": res_id, "name": patient_name(resource), "birthDate": resource.get("birthDate", ""),
                    "gender": resource.get("gender", "")})
    return out


def patient_name(resource: dict[str, Any]) -> str:
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        given = " ".join(name.get("given") or [])
        return f"{given} {name.get('family', '')}".strip()
    return f"Patient {resource.get('id', '')}"


async def pick_patient(srv: SmartServer, request: Request) -> Response:
    source: Any = await request.form() if request.method == "POST" else request.query_params
    pid = str(source.get("req") or "")
    pending = await srv.reading(lambda conn: get_pending(conn, pid, now=srv.now()))
    found = await _session_user(srv, request)
    if pending is None or found is None or pending.session_hash != found[1].id_hash:
        return _expired(srv, request)
    if request.method == "POST":
        if not check_csrf(request, source.get("csrf")):
            return error_page(request, "The form has expired", "Reload the page and pick the patient again.",
                              status=403, secure=srv.secure_cookies)
        chosen = str(source.get("patient") or "")
        exists = await srv.reading(lambda conn: _patient_exists(srv, conn, chosen))
        if not exists:
            return error_page(request, "Unknown patient", f"No patient with id {chosen!r}. Go back and pick one from the list.",
                              secure=srv.secure_cookies)
        await srv.writing(lambda w: update_pending(w.conn, pid, patient=chosen))
        return _redirect(f"/auth/continue?{urlencode({'req': pid})}")
    text = str(source.get("q") or "")
    patients = await srv.reading(lambda conn: search_patients(conn, srv.fhir_base, text))
    return page(request, "patient.html", secure=srv.secure_cookies, req=pid, q=text, patients=patients, user=found[2])


def _patient_exists(srv: SmartServer, conn: Any, patient_id: str) -> bool:
    from ..fhir.errors import FhirError

    if not patient_id:
        return False
    try:
        srv.store.read("Patient", patient_id, conn)
    except FhirError:
        return False
    return True

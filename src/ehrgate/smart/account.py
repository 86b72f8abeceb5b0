"""Connected apps: where a signed-in person sees which apps hold access to their data and ends it
(SMART App Launch 2.2 §Discovery ``management_endpoint``: "where an end-user can view which
applications currently have access to data and can make adjustments to these access rights").

An app holds access while a grant of the person's is not revoked and either has a refresh token
that can still be used (``offline_access`` ones outlive the session) or was made so recently that
its access tokens may not have expired yet. Revoking here is what RFC 7009 revocation does: the
grant and every token issued under it end at once, in this process's token cache too, and an
AuditEvent records who did it - and the app's remembered approval (consent page: "do not ask me
again") is forgotten with it. Remembered approvals are listed too, each with "Ask me again".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from . import grants as G
from .authorize import _patient_label, _session_user
from .schema import apps, consents, grants, refresh_tokens
from .scopes import describe, parse_scope
from .web import check_csrf, error_page, page

if TYPE_CHECKING:
    from ..fhir.store.service import WriteSession
    from .server import SmartServer

__all__ = ["PATH", "active_grants", "connected_apps", "forget_approval", "remembered_approvals", "revoke_app"]

PATH = "/auth/apps"


def active_grants(conn: sa.Connection, user_id: str, *, now: int, access_lifetime: int) -> list[dict[str, Any]]:
    """The user's grants that still give an app access, newest first."""
    usable = (
        sa.select(refresh_tokens.c.token_hash)
        .where(refresh_tokens.c.grant_id == grants.c.id, refresh_tokens.c.used.is_(None),
               sa.or_(refresh_tokens.c.expires.is_(None), refresh_tokens.c.expires > now))
        .exists()
    )
    rows = conn.execute(
        sa.select(grants, apps.c.name.label("app_name"))
        .select_from(grants.outerjoin(apps, apps.c.client_id == grants.c.client_id))
        .where(grants.c.user_id == user_id, grants.c.revoked.is_(None),
               sa.or_(usable, grants.c.created > now - access_lifetime))
        .order_by(grants.c.created.desc())
    ).all()
    return [{"id": r.id, "client_id": r.client_id, "app": r.app_name or r.client_id, "scope": r.scope,
             "patient": r.patient, "offline": bool(r.offline), "created": int(r.created),
             "context": json.loads(r.context or "{}")} for r in rows]


def _scope_lines(scope: str) -> list[str]:
    out = []
    for raw in scope.split():
        if raw in ("openid", "fhirUser", "profile") or raw.startswith("launch"):
            continue  # who you are and the launch context: shown as the grant's other facts
        out.append(describe(parse_scope(raw)))
    return out


def _when(seconds: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


async def _signed_in(srv: SmartServer, request: Request) -> Any:
    found = await _session_user(srv, request)
    if found is None:
        return RedirectResponse(f"/auth/login?{urlencode({'next': PATH})}", status_code=303)
    return found


async def connected_apps(srv: SmartServer, request: Request) -> Response:
    found = await _signed_in(srv, request)
    if isinstance(found, Response):
        return found
    user = found[2]
    now = srv.now()

    def look(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        items = active_grants(conn, user.id, now=now, access_lifetime=srv.settings.access_token_lifetime)
        for item in items:
            item["patient_label"] = _patient_label(srv, conn, item["patient"]) if item["patient"] else ""
            item["access"] = _scope_lines(item["scope"])
            item["since"] = _when(item["created"])
        return items, remembered_approvals(conn, user.id)

    items, remembered = await srv.reading(look)
    notice = {"revoked": "Access ended. The app can no longer read or change your data; to use it again, "
                         "launch it and approve it again.",
              "gone": "That app no longer had access.",
              "forgotten": "Done: the app will ask for your approval again next time."}.get(
        request.query_params.get("done", ""))
    return page(request, "account_apps.html", secure=srv.secure_cookies, user=user, items=items, notice=notice,
                remembered=remembered)


def remembered_approvals(conn: sa.Connection, user_id: str) -> list[dict[str, Any]]:
    """The apps the user told not to ask again, with what they approved, newest first."""
    rows = conn.execute(
        sa.select(consents, apps.c.name.label("app_name"))
        .select_from(consents.outerjoin(apps, apps.c.client_id == consents.c.client_id))
        .where(consents.c.user_id == user_id).order_by(consents.c.created.desc())
    ).all()
    return [{"client_id": r.client_id, "app": r.app_name or r.client_id, "access": _scope_lines(r.scope),
             "since": _when(int(r.created))} for r in rows]


async def _posted(srv: SmartServer, request: Request) -> Any:
    """A form of the connected apps page: (signed-in user, form), or the answer that refuses it (the
    sign-in page; an expired or forged CSRF value)."""
    found = await _signed_in(srv, request)
    if isinstance(found, Response):
        return found
    user = found[2]
    form = await request.form()
    if not check_csrf(request, form.get("csrf")):
        return error_page(request, "The form has expired", "Reload the connected apps page and try again.",
                          status=403, secure=srv.secure_cookies, link=(PATH, "Back to connected apps"), user=user)
    return user, form


async def forget_approval(srv: SmartServer, request: Request) -> Response:
    """'Ask me again': forget the user's remembered approval of one app (their own only)."""
    posted = await _posted(srv, request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    client_id = str(form.get("client_id") or "")

    def forget(w: WriteSession) -> None:
        if G.forget_consent(w.conn, user.id, client_id):
            srv.audit(w, "consent", request, client_id=client_id, user=user.fhir_user or None,
                      description="The user's remembered approval was forgotten on the connected apps page "
                                  "(Ask me again): the app asks for approval again.")

    await srv.writing(forget)
    return RedirectResponse(f"{PATH}?done=forgotten", status_code=303)


async def revoke_app(srv: SmartServer, request: Request) -> Response:
    posted = await _posted(srv, request)
    if isinstance(posted, Response):
        return posted
    user, form = posted
    grant_id = str(form.get("grant") or "")

    def step(w: WriteSession) -> str | None:
        grant = G.get_grant(w.conn, grant_id) if grant_id else None
        if grant is None or grant.user_id != user.id:  # never someone else's, whatever the form says
            return None
        if not G.revoke_grant(w.conn, grant.id, reason="revoked-by-user", now=srv.now()):
            return None
        forgot = G.forget_consent(w.conn, user.id, grant.client_id)  # and the app asks again next time
        srv.audit(w, "token-revoke", request, client_id=grant.client_id, user=user.fhir_user or None,
                  patient=grant.patient, grant_id=grant.id,
                  description="Access ended by the user on the connected apps page; the grant and all its tokens ended"
                              + ("; the remembered approval was forgotten." if forgot else "."))
        return grant.id

    ended = await srv.writing(step)
    if ended:
        srv.forget_grant(ended)
    return RedirectResponse(f"{PATH}?done={'revoked' if ended else 'gone'}", status_code=303)

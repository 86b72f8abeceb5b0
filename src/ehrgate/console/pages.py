"""The engine console's pages: channels (state, statistics, control), message search, one message
(every stage, every delivery attempt, reprocess). Handlers are thin: who may, then the Engine or
the MessageStore, then a template. Control goes through the same Engine methods as the admin API,
so it is recorded in the database and every process follows within a second."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ..engine.access import Actor
from ..engine.audit import ACTIONS
from ..engine.errors import ChannelConfigError, UnknownChannel
from ..engine.store import STATUSES
from .access import CONTROL
from .views import PAGE_SIZE, SEARCH_FIELDS, channel_row, message_view, read_search, when
from .web import Visitor, check_csrf, flash, refuse, render, visitor

if TYPE_CHECKING:
    from ..engine.runner import Engine
    from ..smart.server import SmartServer

__all__ = ["Console"]

log = logging.getLogger("ehrgate.console")

DONE = {
    "pause": "Channel '{}' is paused: it keeps receiving and storing messages, and processes none until resumed.",
    "resume": "Channel '{}' is running again: its queued messages are processed and delivered.",
    "deploy": "Channel '{}' was deployed again from ehrgate.yaml (restarted with its current declaration).",
    "undeploy": "Channel '{}' is stopped: its source no longer accepts messages; queued messages stay queued.",
}
REFRESH_CHOICES = (5, 10, 30, 60)


class Console:
    def __init__(self, srv: SmartServer, engine: Engine | None) -> None:
        self.srv = srv
        self.engine = engine

    @property
    def secure(self) -> bool:
        return self.srv.secure_cookies

    @staticmethod
    def _actor(request: Request, who: Visitor) -> Actor:
        """The signed-in user as the audit trail names them (``via`` console)."""
        return Actor(who.user.username, who.user.role, "console", request.client.host if request.client else "",
                     str(request.scope.get("state", {}).get("request_id", "")))

    def _denied(self, request: Request, action: str, target: str,
                mid: int | None = None) -> Callable[[Visitor], Awaitable[None]]:
        """Records a refused control or reprocess (outcome ``denied``), as the admin API does."""
        async def record(who: Visitor) -> None:
            if self.engine is None or action not in ACTIONS:
                return
            detail: dict[str, Any] = {"status": 403}
            if mid is not None:
                detail["ids"] = [mid]
            await asyncio.to_thread(self.engine.messages.audit, self._actor(request, who), action, target, "denied",
                                    detail)
        return record

    def _no_engine(self, request: Request, who: Visitor) -> Response:
        return refuse(request, "The HL7 engine is not running here",
                      "This server process runs without the HL7 v2 engine, so there are no channels or messages to "
                      "show. Start EHRGate with `ehrgate serve` (with channels in ehrgate.yaml, or --mllp-port).",
                      secure=self.secure, status=503, who=who, link=("/", "Back to the start page"))

    # -- channels ----------------------------------------------------------------------------------

    async def channels(self, request: Request) -> Response:
        who = await visitor(self.srv, request)
        if not isinstance(who, Visitor):
            return who
        engine = self.engine
        if engine is None:
            return self._no_engine(request, who)
        listed = engine.channel_list()

        def gather() -> list[dict[str, Any]]:
            return [channel_row(c, engine.channel_stats(c["name"]),
                                engine.configs[c["name"]].source.options.get("port")) for c in listed]

        rows = await asyncio.to_thread(gather)
        refresh = request.query_params.get("refresh", "")
        every = next((n for n in REFRESH_CHOICES if refresh == str(n)), None)
        return render(request, "channels.html", secure=self.secure, visitor=who, user=who.user, channels=rows,
                      refresh=every, refresh_choices=REFRESH_CHOICES, section="channels")

    async def control(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        who = await visitor(self.srv, request, need=CONTROL, back="/console",
                            refused=self._denied(request, action, name))
        if not isinstance(who, Visitor):
            return who
        form = await request.form()
        if not check_csrf(request, form.get("csrf")):
            return refuse(request, "The console page has expired",
                          "The form was open too long or came from another site. Reload the channels page and press "
                          "the button again.", secure=self.secure, who=who, link=("/console", "Channels"))
        if self.engine is None:
            return self._no_engine(request, who)
        actions = {"deploy": self.engine.deploy, "undeploy": self.engine.undeploy, "pause": self.engine.pause,
                   "resume": self.engine.resume}
        if action not in actions:
            return flash("/console", f"Unknown action {action!r}. Expected one of: {', '.join(actions)}.", ok=False,
                         secure=self.secure)
        actor, store = self._actor(request, who), self.engine.messages
        try:
            state = await actions[action](name)
        except (UnknownChannel, ChannelConfigError) as exc:
            reason = "unknown channel" if isinstance(exc, UnknownChannel) else "channel declaration not valid"
            await asyncio.to_thread(store.audit, actor, action, name, "failure", {"reason": reason})
            return flash("/console", f"Channel '{name}' was not changed: {exc.message}", ok=False, secure=self.secure)
        await asyncio.to_thread(store.audit, actor, action, name, "success", {"state": {
            k: state.get(k) for k in ("deployed", "paused", "generation")}})
        log.info("console: user %s: %s channel %s", who.user.username, action, name)
        return flash("/console", DONE[action].format(name), ok=True, secure=self.secure)

    # -- messages ----------------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        who = await visitor(self.srv, request)
        if not isinstance(who, Visitor):
            return who
        engine = self.engine
        if engine is None:
            return self._no_engine(request, who)
        store = engine.messages
        search = read_search(request.query_params, store.clock())
        rows: list[dict[str, Any]] = []
        older = None
        if search.query is not None:
            rows = await asyncio.to_thread(store.search, search.query)
            if len(rows) > PAGE_SIZE:
                rows = rows[:PAGE_SIZE]
                criteria = {k: v for k, v in search.form.items() if v}
                older = "/console/messages?" + urlencode({**criteria, "before_id": rows[-1]["id"]})
        newest = ("/console/messages?" + urlencode({k: v for k, v in search.form.items() if v})
                  if search.before is not None else None)
        channels = sorted(set(engine.configs) | ({search.form["channel"]} if search.form["channel"] else set()))
        shown = [{"id": r["id"], "received": when(r["received_at"]), "channel": r["channel"], "type": r["msg_type"],
                  "control_id": r["control_id"], "sender": r["sender"], "status": r["status"]} for r in rows]
        return render(request, "messages.html", status=400 if search.errors else 200, secure=self.secure,
                      visitor=who, user=who.user, form=search.form, errors=search.errors, rows=shown, older=older,
                      newest=newest, channels=channels, statuses=STATUSES, fields=SEARCH_FIELDS, section="messages")

    def _message_id(self, request: Request) -> int | None:
        text = request.path_params["id"]
        return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None

    async def message(self, request: Request) -> Response:
        who = await visitor(self.srv, request)
        if not isinstance(who, Visitor):
            return who
        if self.engine is None:
            return self._no_engine(request, who)
        mid = self._message_id(request)
        found = await asyncio.to_thread(self.engine.messages.get, mid) if mid is not None else None
        if found is None:
            shown = request.path_params["id"]
            return refuse(request, "No such message",
                          f"Message {shown!r} is not in the message store (it may have been pruned). Search for it "
                          "by control ID, patient or text.", status=404, secure=self.secure, who=who,
                          link=("/console/messages", "Search messages"))
        return render(request, "message.html", secure=self.secure, visitor=who, user=who.user, m=message_view(found),
                      section="messages")

    async def reprocess(self, request: Request) -> Response:
        mid = self._message_id(request)
        back = f"/console/messages/{mid}" if mid is not None else "/console/messages"
        who = await visitor(self.srv, request, need=CONTROL, back=back, refused=self._denied(request, "reprocess",
                                                                                              "messages", mid))
        if not isinstance(who, Visitor):
            return who
        form = await request.form()
        if not check_csrf(request, form.get("csrf")):
            return refuse(request, "The message page has expired",
                          "The form was open too long or came from another site. Reload the message and press "
                          "Reprocess again.", secure=self.secure, who=who, link=(back, "Back to the message"))
        if self.engine is None:
            return self._no_engine(request, who)
        if mid is None:
            return flash(back, f"Message {request.path_params['id']!r} is not a message id.", ok=False,
                         secure=self.secure)
        actor = self._actor(request, who)
        done, skipped = await asyncio.to_thread(lambda: self.engine.messages.reprocess(  # type: ignore[union-attr]
            [mid], actor=actor, criteria={"from": "console"}))
        if not done:
            return flash(back, skipped[0] if skipped else f"Message {mid} was not reprocessed.", ok=False,
                         secure=self.secure)
        for rt in self.engine.runtimes.values():
            rt.wake_pipeline.set()
        log.info("console: user %s: reprocess message %d", who.user.username, mid)
        return flash(back, f"Message {mid} is queued to go through its channel again; its earlier attempts are kept "
                     "below.", ok=True, secure=self.secure)

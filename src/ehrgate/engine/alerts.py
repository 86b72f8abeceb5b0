"""Alerts: per-channel thresholds on queue depth, oldest queued age and errors → a log line and a
webhook POST, de-duplicated: one notice when a condition starts ("firing"), a reminder only after
``repeat_after`` seconds while it lasts, one notice when it clears ("resolved"). So one stuck
message does not flood anyone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from . import schema as t

if TYPE_CHECKING:
    from .runner import Engine

__all__ = ["Alerts"]

log = logging.getLogger("ehrgate.engine.alerts")


class Alerts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.state: dict[tuple[str, str], tuple[bool, float]] = {}
        self.sent: list[dict[str, Any]] = []  # the last notices, for the admin API and tests
        self._client: httpx.AsyncClient | None = None

    def _errors(self, channel: str, since: int) -> int:
        m = t.message.c
        with self.engine.messages.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                m.status == "ERROR", m.received_at >= since, m.channel == channel)).scalar_one())

    async def evaluate(self) -> list[dict[str, Any]]:
        eng = self.engine
        queue = await asyncio.to_thread(eng.messages.queue_stats)
        now_ms = eng.messages.clock()
        notices = []
        for name, cfg in list(eng.configs.items()):
            rules = cfg.alerts
            checks: list[tuple[str, float, float]] = []
            rows = [v for (ch, _), v in queue.items() if ch == name]
            if rules.queue_depth is not None:
                checks.append(("queue_depth", float(sum(c for c, _ in rows)), float(rules.queue_depth)))
            if rules.oldest_queued_age is not None:
                oldest = min((o for _, o in rows if o is not None), default=None)
                age = (now_ms - oldest) / 1000 if oldest is not None else 0.0
                checks.append(("oldest_queued_age", round(age, 1), float(rules.oldest_queued_age)))
            if rules.errors is not None:
                count = await asyncio.to_thread(self._errors, name, now_ms - int(rules.error_window * 1000))
                checks.append(("errors", float(count), float(rules.errors)))
            for metric, value, threshold in checks:
                notice = self._decide(name, metric, value, threshold, rules.repeat_after)
                if notice is not None:
                    notices.append(notice)
                    await self._notify(notice, rules.webhook)
        return notices

    def _decide(self, channel: str, metric: str, value: float, threshold: float,
                repeat_after: float) -> dict[str, Any] | None:
        key = (channel, metric)
        firing = value > threshold
        was, last = self.state.get(key, (False, 0.0))
        now = time.monotonic()
        if firing and (not was or now - last >= repeat_after):
            self.state[key] = (True, now)
            state = "firing"
        elif not firing and was:
            self.state[key] = (False, now)
            state = "resolved"
        else:
            return None
        return {"channel": channel, "alert": metric, "state": state, "value": value, "threshold": threshold,
                "at": datetime.now(UTC).isoformat(timespec="seconds")}

    async def _notify(self, notice: dict[str, Any], webhook: str | None) -> None:
        level = logging.WARNING if notice["state"] == "firing" else logging.INFO
        log.log(level, "ALERT %s: channel %s %s is %s (threshold %s)", notice["state"], notice["channel"],
                notice["alert"], notice["value"], notice["threshold"])
        self.sent = [*self.sent[-99:], notice]
        if not webhook:
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        try:
            resp = await self._client.post(webhook, json=notice)
            if resp.status_code >= 300:
                log.warning("alert webhook answered HTTP %d", resp.status_code)
        except httpx.HTTPError as exc:
            log.warning("alert webhook cannot be reached: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

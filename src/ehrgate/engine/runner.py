"""The running engine: channels, the group committer, acknowledgments, runtime control, housekeeping.

``Engine.handle(channel, raw, source)`` is what every source calls: describe the message, store it
durably (group commit), then answer - at once for ``ack: on_receive``, after its destinations
finished for ``ack: on_processed``. Control (deploy, undeploy, pause, resume) is recorded in the
database; every engine on that database applies it within a second (``_control_loop``), so the CLI
can change a running server without talking to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from ..hl7 import (
    AckError,
    AckMode,
    ErrorCode,
    HL7Error,
    Message,
    Outcome,
    acknowledgment_mode,
    wants_accept_ack,
    wants_application_ack,
)
from .acks import Ack, Acks
from .alerts import Alerts
from .channel import ChannelRuntime
from .config import ChannelConfig
from .errors import ChannelConfigError, UnknownChannel
from .info import MessageInfo, describe
from .ingest import GroupCommitter
from .queue import Queue, new_owner
from .stats import EngineStats
from .store import Incoming, MessageStore, Receipt
from .tracing import Tracing, configure

__all__ = ["Engine"]

log = logging.getLogger("ehrgate.engine")

# receipt status → its counter in Engine._committed (besides 'received', which counts them all)
_COUNTED = {"FILTERED": 1, "ERROR": 2, "RECEIVED": 3}


class Engine:
    def __init__(self, messages: MessageStore, channels: Mapping[str, ChannelConfig], *, fhir_store: Any = None,
                 known_types: frozenset[str] | None = None, settings: Any = None,
                 loader: Callable[[], Mapping[str, ChannelConfig]] | None = None,
                 owns_messages: bool = False, tracing: Tracing | None = None) -> None:
        """``tracing``: spans per message on a provider of the caller's (tests); else from the ``tracing``
        setting (None when off: nothing is traced). Raises TracingError when that setting cannot work."""
        def opt(name: str, default: Any) -> Any:
            return getattr(settings, name, default) if settings is not None else default

        self.messages = messages
        self.configs: dict[str, ChannelConfig] = dict(channels)
        self.fhir_store = fhir_store
        if known_types is None and fhir_store is not None:
            from ..fhir.validation import known_resource_types

            known_types = frozenset(known_resource_types())
        self.known_types = known_types or frozenset()
        self.loader = loader
        self.owns_messages = owns_messages
        self.owner = new_owner()
        self.queue = Queue(messages, self.owner)
        self.stats = EngineStats(messages.queue_stats, messages.clock)
        self.lease_ms = int(opt("engine_lease_seconds", 60)) * 1000
        self.poll_interval = int(opt("engine_poll_ms", 500)) / 1000
        self.duplicate_window_ms = int(opt("engine_duplicate_window", 86400)) * 1000
        self.alert_interval = float(opt("engine_alert_interval", 15))
        self.retention_interval = float(opt("engine_retention_interval", 3600))
        self.ingest = GroupCommitter(messages, max_batch=int(opt("engine_batch_size", 500)),
                                     duplicate_window_ms=self.duplicate_window_ms, on_commit=self._committed,
                                     writers=4 if messages.pg else 1)
        self.alerts = Alerts(self)
        self.acks = Acks()
        self.tracing = tracing if tracing is not None else configure(str(opt("tracing", "off")))
        self._metrics: dict[str, tuple[Any, Any, Any, Any]] = {}
        self.runtimes: dict[str, ChannelRuntime] = {}
        self._generations: dict[str, int] = {}
        self._failed: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._tick: asyncio.Future[None] | None = None
        self.started = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        released = await asyncio.to_thread(self.queue.release_dead_leases)
        if released:
            log.info("engine: took over %d queued item(s) from a process that is gone", released)
        states = await asyncio.to_thread(self.messages.channel_states)
        for name, cfg in self.configs.items():
            state = states.get(name, {})
            self._generations[name] = int(state.get("generation", 0))
            if state.get("deployed", True):
                await self._start_channel(cfg, paused=bool(state.get("paused", False)))
        self.ingest.start()
        self._tasks = [asyncio.create_task(self._control_loop(), name="engine:control"),
                       asyncio.create_task(self._housekeeping(), name="engine:housekeeping")]
        self.started = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name in list(self.runtimes):
            await self._stop_channel(name)
        await self.ingest.close()
        await self.alerts.close()
        if self.tracing is not None and self.tracing.owned:
            await asyncio.to_thread(self.tracing.shutdown)  # export what is left
        if self.owns_messages:
            self.messages.close()
        self.started = False

    async def _start_channel(self, cfg: ChannelConfig, *, paused: bool = False) -> ChannelRuntime:
        try:
            rt = ChannelRuntime(self, cfg, self._generations.get(cfg.name, 0))
        except ChannelConfigError as exc:  # a destination's TLS files, changed since the config was loaded
            raise ChannelConfigError(f"Channel '{cfg.name}': {exc.message}") from None
        rt.paused = paused
        try:
            await rt.start()
        except ChannelConfigError as exc:
            await rt.stop()
            raise ChannelConfigError(f"Channel '{cfg.name}': {exc.message}") from None
        except OSError as exc:
            await rt.stop()
            o = cfg.source.options
            raise ChannelConfigError(f"Channel '{cfg.name}' cannot listen on {o.get('host', '127.0.0.1')}:"
                                     f"{o.get('port')}: {exc.strerror}. Expected a free port (change source.port)."
                                     ) from None
        self.runtimes[cfg.name] = rt
        where = f" on {cfg.source.options.get('host', '127.0.0.1')}:{rt.port}" if rt.port is not None else ""
        log.info("channel %s deployed (%s source%s%s)", cfg.name, cfg.source.type, where, ", paused" if paused else "")
        return rt

    async def _stop_channel(self, name: str) -> None:
        rt = self.runtimes.pop(name, None)
        if rt is not None:
            await rt.stop()
            log.info("channel %s undeployed", name)

    # -- runtime control (recorded in the database, applied by every engine) ---------------

    def _reload(self, name: str) -> ChannelConfig:
        if self.loader is not None:
            fresh = dict(self.loader())
            if name not in fresh:
                raise UnknownChannel(f"Channel '{name}' is not declared in ehrgate.yaml (channels: {', '.join(sorted(fresh)) or 'none'}).")
            self.configs = fresh
        if name not in self.configs:
            raise UnknownChannel(f"Channel '{name}' is not declared (channels: {', '.join(sorted(self.configs)) or 'none'}).")
        return self.configs[name]

    async def deploy(self, name: str) -> dict[str, Any]:
        """Re-read the channel from ehrgate.yaml and (re)start it here and on every other engine."""
        cfg = await asyncio.to_thread(self._reload, name)
        state = await asyncio.to_thread(self.messages.set_channel_state, name, deployed=True, bump=True)
        await self._apply(name, state, cfg)
        return state

    async def undeploy(self, name: str) -> dict[str, Any]:
        self._known(name)
        state = await asyncio.to_thread(self.messages.set_channel_state, name, deployed=False)
        await self._apply(name, state)
        return state

    async def pause(self, name: str) -> dict[str, Any]:
        self._known(name)
        state = await asyncio.to_thread(self.messages.set_channel_state, name, paused=True)
        await self._apply(name, state)
        return state

    async def resume(self, name: str) -> dict[str, Any]:
        self._known(name)
        state = await asyncio.to_thread(self.messages.set_channel_state, name, paused=False)
        await self._apply(name, state)
        return state

    def _known(self, name: str) -> None:
        if name not in self.configs:
            raise UnknownChannel(f"Channel '{name}' is not declared (channels: {', '.join(sorted(self.configs)) or 'none'}).")

    async def _apply(self, name: str, state: Mapping[str, Any], cfg: ChannelConfig | None = None) -> None:
        rt = self.runtimes.get(name)
        generation = int(state.get("generation", 0))
        if not state.get("deployed", True):
            if rt is not None:
                await self._stop_channel(name)
            return
        if rt is not None and rt.generation == generation:
            rt.set_paused(bool(state.get("paused")))
            return
        if cfg is None:
            cfg = await asyncio.to_thread(self._reload, name)
        if rt is not None:
            await self._stop_channel(name)
        self._generations[name] = generation
        await self._start_channel(cfg, paused=bool(state.get("paused")))

    async def _control_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep controlling; say what failed
                log.error("engine: reading channel state failed: %s", type(exc).__name__)

    async def reconcile(self) -> None:
        """Bring the running channels in line with the state recorded in the database."""
        states = await asyncio.to_thread(self.messages.channel_states)
        for name, state in states.items():
            rt = self.runtimes.get(name)
            if rt is None:
                if not state["deployed"] or self._failed.get(name) == state["generation"]:
                    continue
                if name not in self.configs and (self.loader is None or self._generations.get(name) == state["generation"]):
                    continue
            elif state["deployed"] and rt.generation == state["generation"] and rt.paused == state["paused"]:
                continue
            try:
                await self._apply(name, state)
            except (ChannelConfigError, UnknownChannel) as exc:
                self._failed[name] = int(state["generation"])
                log.error("engine: channel %s not deployed: %s", name, exc.message)

    async def _housekeeping(self) -> None:
        last_alert = last_prune = time.monotonic()
        while True:
            await asyncio.sleep(min(5.0, self.alert_interval))
            try:
                self.stats.sample()
                now = time.monotonic()
                if now - last_alert >= self.alert_interval:
                    last_alert = now
                    await self.alerts.evaluate()
                if now - last_prune >= self.retention_interval:
                    last_prune = now
                    await self.prune_expired()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.error("engine: housekeeping failed: %s", type(exc).__name__)

    async def prune_expired(self) -> int:
        """Apply each channel's ``retention_days`` (small batches, bounded per run)."""
        total = 0
        for cfg in list(self.configs.values()):
            if cfg.retention_days:
                cutoff = self.messages.clock() - int(cfg.retention_days * 86400 * 1000)
                n = await asyncio.to_thread(self.messages.prune, cfg.name, cutoff, batch=500, max_batches=200)
                if n:
                    log.info("channel %s: pruned %d message(s) older than %s days", cfg.name, n, cfg.retention_days)
                total += n
        return total

    # -- receiving and acknowledging -------------------------------------------------------

    def metrics(self, channel: str) -> tuple[Any, Any, Any, Any]:
        """(received, filtered, errored, ack latency) of ``channel``: labelled once, not per message."""
        m = self._metrics.get(channel)
        if m is None:
            s = self.stats
            m = self._metrics[channel] = (s.received.labels(channel), s.filtered.labels(channel),
                                          s.errored.labels(channel), s.ack_latency.labels(channel))
        return m

    def _committed(self, items: list[Incoming], receipts: list[Receipt]) -> None:
        """Count a committed batch per channel (one increment per counter, not per message) and
        wake the pipelines that have new work."""
        counts: dict[str, list[int]] = {}
        for item, r in zip(items, receipts, strict=True):
            c = counts.get(item.channel)
            if c is None:
                c = counts[item.channel] = [0, 0, 0, 0]
            c[0] += 1
            slot = _COUNTED.get(r.status)
            if slot:
                c[slot] += 1
        for channel, (n, filtered_n, errored_n, new_n) in counts.items():
            received, filtered, errored, _ = self.metrics(channel)
            received.inc(n)
            if filtered_n:
                filtered.inc(filtered_n)
            if errored_n:
                errored.inc(errored_n)
            if new_n:
                rt = self.runtimes.get(channel)
                if rt is not None and not rt.paused:  # resuming wakes it; a wake-up per batch costs the loop
                    rt.wake_pipeline.set()

    def notify(self) -> None:
        """Something finished: wake whoever waits for an outcome (``ack: on_processed``)."""
        if self._tick is not None and not self._tick.done():
            self._tick.set_result(None)
        self._tick = None

    async def wait_outcome(self, message_id: int, timeout: float) -> tuple[str, str | None] | None:
        deadline = time.monotonic() + timeout
        while True:
            outcome = await asyncio.to_thread(self.messages.outcome, message_id)
            if outcome is not None:
                return outcome
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self._tick is None:
                self._tick = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._tick), min(left, 0.25))

    def _describe(self, channel: str, raw: bytes, source: str) -> tuple[ChannelConfig, MessageInfo, Incoming]:
        """The channel's config, the header facts of ``raw`` and what goes to the message store."""
        rt = self.runtimes.get(channel)
        if rt is None:
            raise UnknownChannel(f"Channel '{channel}' is not deployed.")
        cfg = rt.cfg
        info = describe(raw, cfg.order_by)
        item = Incoming(channel, raw, source, info.msg_type, info.control_id, info.sender, info.patient_ids,
                        info.order_key, info.error, check_duplicates=cfg.duplicates == "skip")
        if self.tracing is not None:
            self.tracing.receiving(item)
        return cfg, info, item

    async def _submit(self, item: Incoming) -> Receipt | None:
        """Durably store one message; None when storing failed."""
        try:
            return await self.ingest.submit(item)
        except Exception:  # noqa: BLE001 - not stored: never AA; the sender must send it again
            return None

    _NOT_STORED = ("Application internal error: the message could not be stored (expected to store it; "
                   "send it again later)")

    async def handle(self, channel: str, raw: bytes, source: str) -> Ack:
        """Store one message and answer it with one ACK (HTTP and directory sources). Returns (ACK
        bytes, MSA-1 code): after the commit for ``ack: on_receive``, after processing for
        ``on_processed``. MLLP uses ``exchange``, which also follows enhanced mode."""
        started = time.perf_counter()
        cfg, info, item = self._describe(channel, raw, source)
        return await self._original(cfg, info, item, started)

    async def _original(self, cfg: ChannelConfig, info: MessageInfo, item: Incoming, started: float) -> Ack:
        """Original mode (HL7 v2.5 section 2.9.2), or a message that cannot be parsed: one ACK."""
        tr = self.tracing if item.span is not None else None
        try:
            try:  # ``_submit``, inlined: one coroutine less per message
                receipt: Receipt | None = await self.ingest.submit(item)
            except Exception:  # noqa: BLE001 - not stored: never AA; the sender must send it again
                receipt = None
            raw = item.raw
            if tr is not None:
                tr.stored(item, receipt, event=cfg.ack != "on_receive")
            msg = info.message
            if receipt is None and msg is not None and acknowledgment_mode(msg) is AckMode.ENHANCED:
                # HTTP or directory source, enhanced mode: the accept acknowledgment says it (CE)
                result = self.acks.outcome(msg, "error", [AckError(ErrorCode.APPLICATION_INTERNAL_ERROR,
                                                                   self._NOT_STORED)], application=False)
            elif receipt is None:
                result = self.acks.reject(raw, HL7Error(self._NOT_STORED, code=207))
            elif msg is None:
                result = self.acks.reject(raw, HL7Error(f"Message {receipt.id} cannot be parsed: {info.error}",
                                                        code=100))
            else:
                if cfg.ack == "on_receive":
                    result = self.acks.accepted(msg, application=False)
                else:
                    outcome, errors = await self._processed(cfg, receipt)
                    result = self.acks.outcome(msg, outcome, errors, application=True)
                self.metrics(item.channel)[3].observe(time.perf_counter() - started)
        except BaseException:  # cancelled (the sender left while we waited) or a bug: the span still ends
            if tr is not None:
                tr.unanswered(item)
            raise
        if tr is not None:
            tr.acked(item, result[1])
        return result

    async def _original_frame(self, cfg: ChannelConfig, info: MessageInfo, item: Incoming, started: float) -> bytes:
        return (await self._original(cfg, info, item, started))[0]

    def exchange(self, channel: str, raw: bytes, source: str) -> Awaitable[bytes] | AsyncIterator[bytes]:
        """What answers one MLLP message (HL7 v2.5 section 2.9): an awaitable of its one ACK, or an
        async generator of its frames, in order.

        Original mode: one ACK, as ``handle`` (an awaitable: the listener's short path). Enhanced
        mode (MSH-15 or MSH-16 set), whatever the channel's ``ack``: the accept ACK right after the
        commit - CA, or CE when the message could not be stored - when MSH-15 asks for it (AL; SU on
        success; ER on error; NE never), then the application ACK AA/AE once the message is processed
        (within ``ack_timeout``), when MSH-16 asks for it. A message that cannot be parsed gets an AR:
        its acknowledgment mode is unknown.
        """
        started = time.perf_counter()
        cfg, info, item = self._describe(channel, raw, source)
        msg = info.message
        if msg is None or acknowledgment_mode(msg) is AckMode.ORIGINAL:
            return self._original_frame(cfg, info, item, started)
        return self._enhanced(cfg, msg, item, started)

    async def _enhanced(self, cfg: ChannelConfig, msg: Message, item: Incoming, started: float) -> AsyncIterator[bytes]:
        tr = self.tracing if item.span is not None else None
        ended = tr is None
        try:
            receipt = await self._submit(item)
            if tr is not None:
                tr.stored(item, receipt, event=True)
            if receipt is None:
                errors = [AckError(ErrorCode.APPLICATION_INTERNAL_ERROR, self._NOT_STORED)]
                if wants_accept_ack(msg, "error"):
                    ack = self.acks.outcome(msg, "error", errors, application=False)
                elif wants_application_ack(msg, "error"):
                    ack = self.acks.outcome(msg, "error", errors, application=True)
                else:
                    return
                if tr is not None:
                    tr.acked(item, ack[1])
                    ended = True
                yield ack[0]
                return
            more = wants_application_ack(msg, "accept") or wants_application_ack(msg, "error")
            if wants_accept_ack(msg, "accept"):
                ack = self.acks.accepted(msg, application=False)
                self.metrics(item.channel)[3].observe(time.perf_counter() - started)
                if tr is not None:
                    tr.acked(item, ack[1], final=not more)
                    ended = not more
                yield ack[0]
            if more:
                outcome, errors = await self._processed(cfg, receipt)
                if wants_application_ack(msg, outcome):
                    ack = self.acks.outcome(msg, outcome, errors, application=True)
                    if tr is not None:
                        tr.acked(item, ack[1])
                        ended = True
                    yield ack[0]
        finally:
            if not ended and tr is not None:
                tr.unanswered(item)

    async def _processed(self, cfg: ChannelConfig, receipt: Receipt) -> tuple[Outcome, list[AckError]]:
        """Wait (up to ``ack_timeout``) until the message - or the one it duplicates - is processed."""
        target = receipt.duplicate_of if receipt.duplicate_of else receipt.id
        outcome = await self.wait_outcome(target, cfg.ack_timeout)
        if outcome is None:
            return "error", [AckError(
                ErrorCode.APPLICATION_INTERNAL_ERROR,
                f"Message stored as id {target} but not processed within {cfg.ack_timeout:g}s; it stays "
                "queued and will be delivered (do not send it again)")]
        if outcome[0] == "ERROR":
            return "error", [AckError(ErrorCode.APPLICATION_INTERNAL_ERROR,
                                      f"Message {target}: {outcome[1] or 'processing failed'}")]
        return "accept", []

    # -- views -----------------------------------------------------------------------------

    def channel_list(self) -> list[dict[str, Any]]:
        out = []
        for name, cfg in sorted(self.configs.items()):
            rt = self.runtimes.get(name)
            out.append({"name": name, "source": cfg.source.type, "port": rt.port if rt else None,
                        "deployed": rt is not None, "paused": bool(rt and rt.paused), "ack": cfg.ack,
                        "ordered": cfg.ordered, "destinations": [d.name for d in cfg.destinations]})
        return out

    def channel_stats(self, name: str) -> dict[str, Any]:
        self._known(name)
        cfg = self.configs[name]
        rt = self.runtimes.get(name)
        return {"name": name, "deployed": rt is not None, "paused": bool(rt and rt.paused),
                **self.stats.channel(name, [d.name for d in cfg.destinations])}

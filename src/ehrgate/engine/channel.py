"""One deployed channel in a running engine: its source, pipeline worker and destination workers.

Workers run on the asyncio loop and do their database work (and the pipeline's steps) in worker
threads. Pausing stops processing and delivery; the source keeps receiving and storing, so senders
are not held up while a downstream system is maintained (``resume`` drains the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..hl7 import MLLPServer, decode, split_messages, start_mllp_server
from . import schema as t
from .config import ChannelConfig
from .destinations import DESTINATIONS, Context, Destination, Payload
from .pipeline import Pipeline
from .queue import PIPELINE, Delivered, Item, LeaseLost
from .tracing import StepRun

if TYPE_CHECKING:
    from .runner import Engine

__all__ = ["ChannelRuntime"]

log = logging.getLogger("ehrgate.engine")

# what a destination's payload holds (``_payloads``): the transformed message, else the raw one, and the Bundle
_PAYLOAD_SIZE = (sa.func.length(sa.func.coalesce(t.message.c.transformed, t.message.c.raw))
                 + sa.func.coalesce(sa.func.length(t.message.c.bundle), 0))
_NOT_STORED = b"could not be stored"  # in the ERR text of the AR the engine answers a message it could not store


class ChannelRuntime:
    def __init__(self, engine: Engine, cfg: ChannelConfig, generation: int) -> None:
        self.engine = engine
        self.cfg = cfg
        self.name = cfg.name
        self.generation = generation
        self.pipeline = Pipeline(cfg)
        ctx = Context(engine.fhir_store, engine.known_types, cfg.base_dir)
        self.destinations: dict[str, Destination] = {d.name: DESTINATIONS[d.type](d, ctx) for d in cfg.destinations}
        self.paused = False
        self.stopping = False
        self.wake_pipeline = asyncio.Event()
        self.wake: dict[str, asyncio.Event] = {d: asyncio.Event() for d in self.destinations}
        self.tasks: list[asyncio.Task[None]] = []
        self.server: MLLPServer | None = None
        self.port: int | None = None
        self._unmovable: set[tuple[str, int, int]] = set()  # directory source: files stored but not moved
        self.batch_bytes = 32 * 1024 * 1024  # messages per pipeline or delivery batch (at least one message)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        src = self.cfg.source
        if src.type == "mllp":
            from .destinations.base import tls_context

            o = src.options
            self.server = await start_mllp_server(
                self._mllp_handler, str(o.get("host", "127.0.0.1")), int(o.get("port", 0)),
                ssl=tls_context(o.get("tls"), server=True, base=self.cfg.base_dir, where="source.tls"),
                idle_timeout=float(o.get("idle_timeout", 300)), frame_timeout=float(o.get("frame_timeout", 60)),
                lone_fs_grace=float(o.get("lone_fs_grace", 0.25)),
                max_message_bytes=int(o.get("max_message_bytes", 16 * 1024 * 1024)),
                max_connections=int(o.get("max_connections", 100)))
            self.port = self.server.port
        elif src.type == "directory":
            self.tasks.append(asyncio.create_task(self._poll_directory(), name=f"{self.name}:directory"))
        self.tasks.append(asyncio.create_task(self._pipeline_worker(), name=f"{self.name}:pipeline"))
        for dest in self.destinations.values():
            for n in range(dest.cfg.workers):
                self.tasks.append(asyncio.create_task(self._destination_worker(dest), name=f"{self.name}:{dest.name}:{n}"))

    async def stop(self, grace: float = 5.0) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        self.wake_pipeline.set()
        for ev in self.wake.values():
            ev.set()
        if self.tasks:
            done, pending = await asyncio.wait(self.tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for dest in self.destinations.values():
            with contextlib.suppress(Exception):
                await dest.close()
        await asyncio.to_thread(self._release_leases)

    def _release_leases(self) -> None:
        with self.engine.messages.write() as conn:
            conn.execute(sa.update(t.queue).where(t.queue.c.lease_owner == self.engine.owner,
                                                  t.queue.c.channel == self.name)
                         .values(lease_owner=None, lease_until=None))

    def _release(self, ids: list[int]) -> None:
        with self.engine.messages.write() as conn:
            conn.execute(sa.update(t.queue).where(t.queue.c.id.in_(ids), t.queue.c.lease_owner == self.engine.owner)
                         .values(lease_owner=None, lease_until=None))

    def set_paused(self, paused: bool) -> None:
        if self.paused and not paused:
            self.wake_pipeline.set()
            for ev in self.wake.values():
                ev.set()
        self.paused = paused

    async def _idle(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.engine.poll_interval)
        event.clear()

    # -- sources ---------------------------------------------------------------------------

    def _mllp_handler(self, raw: bytes, peer: Any) -> Awaitable[bytes] | AsyncIterator[bytes]:
        return self.engine.exchange(self.name, raw, f"mllp {peer.host}:{peer.port}")

    async def _poll_directory(self) -> None:
        o = self.cfg.source.options
        root = Path(str(o["path"]))
        if not root.is_absolute():
            root = self.cfg.base_dir / root
        pattern = str(o.get("pattern", "*.hl7"))
        interval = float(o.get("interval", 1.0))
        min_age = float(o.get("min_age", 1.0))
        for sub in ("processed", "error"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        while not self.stopping:
            files = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("."))
            for path in files:
                if not self._settled(path, min_age) or (self._unmovable and self._identity(path) in self._unmovable):
                    continue  # still being written: taking it now stored half of it and lost the rest
                if self.stopping:
                    break
                await self._take_file(root, path)
            await asyncio.sleep(interval)

    @staticmethod
    def _settled(path: Path, min_age: float) -> bool:
        """True when ``path`` was last modified ``min_age`` seconds ago or more."""
        try:
            return time.time() - path.stat().st_mtime >= min_age
        except OSError:
            return False

    async def _take_file(self, root: Path, path: Path) -> None:
        """Store every message of the file; move it to processed/ once all are committed, or to
        error/ when any could not be parsed (those are stored with status ERROR) or stored, or - with
        ``ack: on_processed`` - was stored but failed processing (AE: status ERROR, to be reprocessed
        from the message store; the file moved back would be skipped as duplicates); leave it when
        none could be stored. A crash between the commit and the move re-reads the file at start;
        duplicate detection skips what was stored."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return
        # each message goes back to the bytes it was read from (its MSH-18's character set), not UTF-8
        text, codec = decode(data)
        texts = split_messages(text)
        bad = not texts
        results = await asyncio.gather(*(self.engine.handle(self.name, t.encode(codec or "utf-8"), f"file {path.name}")
                                         for t in texts), return_exceptions=True)
        if texts and all(isinstance(r, BaseException) or (r[1] in ("AR", "CE") and _NOT_STORED in r[0]) for r in results):
            # nothing was stored (the database is unavailable, the channel stopping): try again at the
            # next poll - moving it to error/ left it there after the database came back
            log.warning("channel %s: file %s: no message could be stored; left in place to be read again",
                        self.name, path.name)
            return
        failed = 0  # stored, then processing failed (on_processed): AE
        for r in results:
            if isinstance(r, BaseException) or r[1] not in ("AA", "CA"):
                bad = True
                failed += not isinstance(r, BaseException) and r[1] == "AE"
        target = root / ("error" if bad else "processed") / path.name
        try:
            target.parent.mkdir(exist_ok=True)  # the directory may have been recreated without it
            if target.exists():
                target = target.with_name(f"{path.stem}-{int(time.time() * 1000)}{path.suffix}")
            path.replace(target)
        except OSError as exc:
            # left in place, the file was read again at every poll: its messages stored again and again
            self._unmovable.add(self._identity(path))
            log.error("channel %s: file %s cannot be moved to %s/: %s. Its messages are stored; it is skipped "
                      "from now on (expected a writable %s; move or delete the file)", self.name, path.name,
                      target.parent.name, exc.strerror, target.parent)
            return
        if failed:
            log.warning("channel %s: file %s (%d message(s)) moved to error/: %d stored and failed processing "
                        "(status ERROR; reprocess them with `ehrgate messages reprocess`: the file moved back "
                        "would be skipped as duplicates)", self.name, path.name, len(texts), failed)
        else:
            log.info("channel %s: file %s (%d message(s)) moved to %s/", self.name, path.name, len(texts),
                     "error" if bad else "processed")

    @staticmethod
    def _identity(path: Path) -> tuple[str, int, int]:
        try:
            st = path.stat()
        except OSError:
            return (path.name, 0, 0)
        return (path.name, st.st_mtime_ns, st.st_size)

    # -- pipeline --------------------------------------------------------------------------

    async def _pipeline_worker(self) -> None:
        while not self.stopping:
            if self.paused:
                await self._idle(self.wake_pipeline)
                continue
            try:
                n = await asyncio.to_thread(self._pipeline_batch)
            except Exception as exc:  # noqa: BLE001 - the database blinked: back off, the queue keeps the work
                log.error("channel %s: pipeline batch failed: %s: %s", self.name, type(exc).__name__,
                          str(exc).splitlines()[0] if str(exc) else "")
                await asyncio.sleep(self.engine.poll_interval)
                continue
            if n:
                for ev in self.wake.values():
                    ev.set()
                self.engine.notify()
            else:
                await self._idle(self.wake_pipeline)

    def _pipeline_batch(self) -> int:
        eng = self.engine
        items = eng.queue.claim(self.name, PIPELINE, limit=200, lease_ms=eng.lease_ms)
        if not items:
            return 0
        m = t.message.c
        items = self._within_budget(items, sa.func.length(m.raw))
        tr = eng.tracing
        columns = [m.id, m.raw, m.received_at]
        if tr is not None:  # the trace context and the header facts its spans show
            columns += [m.traceparent, m.msg_type, m.control_id, m.sender]
        with eng.messages.read() as conn:
            stored = {int(r[0]): r for r in conn.execute(
                sa.select(*columns).where(m.id.in_([i.message_id for i in items])))}
        results = []
        spans: dict[int, Any] = {}  # queue row id → the message's process span (tracing on)
        for item in items:
            row = stored.get(item.message_id)
            raw, received_at = (bytes(row[1]), int(row[2])) if row is not None else (b"", None)
            span = (tr.processing(self.name, item.message_id, row[3], row[4:7], time.time_ns())
                    if tr is not None and row is not None else None)
            if span is None:
                r = self.pipeline.run(raw, message_id=item.message_id, received_at=received_at)
            else:
                runs: list[StepRun] = []
                r = self.pipeline.run(raw, message_id=item.message_id, received_at=received_at, on_step=runs.append)
                assert tr is not None
                tr.steps(span, runs, raw)
                spans[item.id] = (span, raw)
            results.append((item, r))
        counts = {"FILTERED": 0, "ERROR": 0}
        try:
            self._record_pipeline(results, spans, counts)
        except BaseException:  # nothing was recorded: the messages run again, their spans end here
            if tr is not None:
                for span, _raw in spans.values():
                    tr.abandoned(span, "the write failed; the message runs again")
            raise
        if tr is not None:  # committed
            for item, r in results:
                traced = spans.get(item.id)
                if traced is not None:
                    dests = r.outputs[0].destinations if r.status == "QUEUED" else ()
                    tr.processed(traced[0], r.status, r.error, dests, traced[1])
        if counts["FILTERED"]:
            eng.stats.filtered.labels(self.name).inc(counts["FILTERED"])
        if counts["ERROR"]:
            eng.stats.errored.labels(self.name).inc(counts["ERROR"])
        return len(items)

    def _within_budget(self, items: list[Item], size: Any) -> list[Item]:
        """The first of ``items`` whose messages (``size``: a column expression) add up to
        ``batch_bytes`` (at least one); the others' claims are given back. A batch holds every
        message (its parsed form, outputs, Bundle) until it is recorded: 200 messages with large
        attachments - a backlog after a pause - took gigabytes."""
        m = t.message.c
        with self.engine.messages.read() as conn:
            sizes: dict[int, Any] = {int(r[0]): r[1] for r in conn.execute(
                sa.select(m.id, size).where(m.id.in_([i.message_id for i in items])))}
        total = 0
        for n, item in enumerate(items):
            total += int(sizes.get(item.message_id) or 0)
            if n and total > self.batch_bytes:
                self._release([i.id for i in items[n:]])
                return items[:n]
        return items

    def _record_pipeline(self, results: list[tuple[Any, Any]], spans: dict[int, Any], counts: dict[str, int]) -> None:
        """Record each run's outcome in one transaction (a message another worker took over is left
        to it: its span ends and leaves ``spans``)."""
        eng = self.engine
        tr = eng.tracing
        with eng.messages.fast.write() as conn:
            for item, r in results:
                try:
                    if r.status in ("ERROR", "FILTERED") and not (r.status == "FILTERED" and r.outputs):
                        eng.queue.finish_pipeline(conn, item, status=r.status, error=r.error)
                    elif r.status == "FILTERED":
                        eng.queue.finish_pipeline(conn, item, status="FILTERED", error=r.error,
                                                  transformed=r.outputs[0].raw)
                    elif r.status == "QUEUED":
                        out = r.outputs[0]
                        eng.queue.finish_pipeline(conn, item, status="QUEUED", transformed=out.raw, bundle=out.bundle,
                                                  destinations=out.destinations)
                    else:
                        children = [
                            {"raw": o.raw, "bundle": o.bundle, "destinations": o.destinations, "msg_type": o.msg_type,
                             "control_id": o.control_id, "sender": o.sender, "patient_ids": o.patient_ids}
                            for o in r.outputs]
                        traced = spans.get(item.id)
                        kids = [] if traced is None or tr is None else [
                            tr.split(traced[0], self.name, item.message_id, n, (o.msg_type, o.control_id, o.sender))
                            for n, o in enumerate(r.outputs, start=1)]
                        for child, kid in zip(children, kids, strict=False):
                            child["trace"] = tr.traceparent(kid) if tr is not None else None
                        ids: list[int] = []
                        try:
                            ids = eng.queue.finish_pipeline(conn, item, status="TRANSFORMED", children=children)
                        finally:
                            if tr is not None:
                                for n, kid in enumerate(kids):
                                    tr.split_stored(kid, ids[n] if n < len(ids) else None)
                except LeaseLost:
                    log.warning("channel %s: message %d was taken over by another worker", self.name, item.message_id)
                    lost = spans.pop(item.id, None)
                    if lost is not None and tr is not None:
                        tr.abandoned(lost[0], "another worker took the message over")
                    continue
                if r.status in counts:
                    counts[r.status] += 1

    # -- destinations ----------------------------------------------------------------------

    async def _destination_worker(self, dest: Destination) -> None:
        eng = self.engine
        while not self.stopping:
            if self.paused:
                await self._idle(self.wake[dest.name])
                continue
            try:
                items = await asyncio.to_thread(eng.queue.claim, self.name, dest.name, limit=max(20, dest.batch_size),
                                                lease_ms=eng.lease_ms, ordered=self.cfg.ordered)
                if items:
                    items = await asyncio.to_thread(self._within_budget, items, _PAYLOAD_SIZE)
                payloads = await asyncio.to_thread(self._payloads, items) if items else {}
            except Exception as exc:  # noqa: BLE001
                log.error("channel %s destination %s: claim failed: %s", self.name, dest.name, type(exc).__name__)
                await asyncio.sleep(eng.poll_interval)
                continue
            if not items:
                await self._idle(self.wake[dest.name])
                continue
            n = 0
            while n < len(items):
                if self.stopping or self.paused:
                    # give back what this worker claimed but did not start
                    await asyncio.to_thread(self._release, [i.id for i in items[n:]])
                    break
                group = self._group(dest, items, n, payloads)
                if group:
                    n += await self._deliver_many(dest, group)
                else:
                    item = items[n]
                    n += 1
                    try:
                        await self._deliver_one(dest, item, payloads.get(item.message_id))
                    except Exception as exc:  # noqa: BLE001
                        await self._failed(dest, item, exc)
                eng.notify()

    async def _failed(self, dest: Destination, item: Item, exc: Exception) -> None:
        """A delivery whose outcome could not be recorded: its lease expires and it runs again."""
        if isinstance(exc, LeaseLost):
            log.warning("channel %s destination %s: message %d was taken over by another worker",
                        self.name, dest.name, item.message_id)
            return
        log.error("channel %s destination %s: message %d: bookkeeping failed: %s", self.name,
                  dest.name, item.message_id, type(exc).__name__)
        await asyncio.sleep(self.engine.poll_interval)

    @staticmethod
    def _group(dest: Destination, items: list[Item], n: int,
               payloads: dict[int, Payload]) -> list[tuple[Item, Payload]]:
        """The run of claimed items from ``n`` that ``dest`` takes in one ``deliver_many_in``
        (empty: deliver ``items[n]`` on its own)."""
        group: list[tuple[Item, Payload]] = []
        if dest.batch_size > 1 and dest.transactional:
            for item in items[n:n + dest.batch_size]:
                payload = payloads.get(item.message_id)
                if payload is None:
                    break
                group.append((item, payload))
        return group

    async def _deliver_many(self, dest: Destination, group: list[tuple[Item, Payload]]) -> int:
        """Deliver a run of messages in one transaction of ``dest`` (``deliver_many_in``); record
        each outcome as ``_deliver_one`` does. Returns how many were taken (at least one)."""
        finishers = [self._finisher(dest, item) for item, _payload in group]

        def finish(conn: Any, n: int, result: Delivered) -> str:
            return finishers[n][0](conn, result)

        start_ns = time.time_ns()
        try:
            outcomes = await asyncio.to_thread(dest.deliver_many_in, [p for _item, p in group], finish)
        except Exception as exc:  # noqa: BLE001 - the transaction did not commit: nothing of it happened
            for _finish, done in finishers:
                done.clear()
            if not isinstance(exc, sa.exc.OperationalError):
                await self._failed(dest, group[0][0], exc)
                return len(group)
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
            outcomes = [Delivered(False, error=f"Database busy or unavailable: {reason}") for _ in group]
        if not outcomes:  # a destination breaking its contract: record the first as failed, not lose it
            outcomes = [Delivered(False, error=f"Destination {dest.name} returned no outcome")]
        for (item, payload), (finish1, done), outcome in zip(group, finishers, outcomes, strict=False):
            if isinstance(outcome, Exception):
                await self._failed(dest, item, outcome)
                continue
            try:
                await self._record(dest, item, outcome, finish1, done, payload, start_ns, len(group))
            except Exception as exc:  # noqa: BLE001
                await self._failed(dest, item, exc)
        return min(len(outcomes), len(group))

    def _payloads(self, items: list[Item]) -> dict[int, Payload]:
        m = t.message.c
        with self.engine.messages.read() as conn:
            rows = conn.execute(sa.select(m.id, m.channel, sa.func.coalesce(m.transformed, m.raw), m.bundle,
                                          m.msg_type, m.control_id, m.traceparent)
                                .where(m.id.in_([i.message_id for i in items]))).all()
        return {int(r[0]): Payload(int(r[0]), r[1], bytes(r[2]), bytes(r[3]) if r[3] is not None else None,
                                   r[4], r[5], r[6]) for r in rows}

    def _finisher(self, dest: Destination, item: Item) -> tuple[Callable[[Any, Delivered], str], list[str]]:
        policy = dest.cfg.retry
        done: list[str] = []

        def finish(conn: Any, result: Delivered) -> str:
            now = self.engine.messages.clock()
            give_up = policy.gives_up(item.attempts + 1, (now - item.enqueued_at) / 1000)
            next_at = now + int(policy.delay(item.attempts + 1) * 1000)
            status = self.engine.queue.finish_delivery(conn, item, result, give_up=give_up, next_at=next_at)
            done.append(status)
            return status
        return finish, done

    async def _deliver_one(self, dest: Destination, item: Item, payload: Payload | None) -> None:
        finish, done = self._finisher(dest, item)
        start_ns = time.time_ns()
        started = time.perf_counter()
        if payload is None:
            result = Delivered(False, error=f"Message {item.message_id} is no longer in the store", retry=False)
        elif dest.transactional:
            result = await asyncio.to_thread(dest.deliver_in, payload, finish)
        else:
            try:
                result = await asyncio.wait_for(dest.deliver(payload), dest.cfg.timeout + 5)
            except TimeoutError:
                result = Delivered(False, error=f"No answer within {dest.cfg.timeout}s")
            except Exception as exc:  # noqa: BLE001 - a destination bug must not stop the worker
                log.error("channel %s destination %s: message %d: %s", self.name, dest.name, item.message_id,
                          type(exc).__name__)
                result = Delivered(False, error=f"Unexpected {type(exc).__name__} in the destination")
        if not result.duration_ms:
            result.duration_ms = int((time.perf_counter() - started) * 1000)
        await self._record(dest, item, result, finish, done, payload, start_ns)

    async def _record(self, dest: Destination, item: Item, result: Delivered,
                      finish: Callable[[Any, Delivered], str], done: list[str], payload: Payload | None = None,
                      start_ns: int = 0, batch: int = 1) -> None:
        """Settle an outcome the destination did not finish itself (its own transaction); count it (and,
        tracing on, add the attempt's span to the message's trace: it started at ``start_ns``, in a
        transaction of ``batch`` messages)."""
        eng = self.engine
        if not done:
            def settle() -> None:
                with eng.messages.fast.write() as cur:
                    finish(cur, result)
            await asyncio.to_thread(settle)
        status = done[0]
        outcome = {"SENT": "sent", "ERROR": "error"}.get(status, "retry")
        eng.stats.deliveries.labels(self.name, dest.name, outcome).inc()
        if eng.tracing is not None and payload is not None and payload.trace is not None:
            eng.tracing.delivered(self.name, dest, item, payload, result, status, start_ns, batch)
        if status == "ERROR":
            log.warning("channel %s destination %s: message %d failed for good after %d attempt(s)", self.name,
                        dest.name, item.message_id, item.attempts + 1)

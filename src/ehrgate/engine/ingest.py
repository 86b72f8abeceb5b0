"""Group commit: messages that arrive together are stored in one transaction.

``submit`` queues a message and waits for its receipt. A writer thread stores whatever is waiting
when it becomes free, so under load each commit (with its fsync) covers many messages and ACK
latency stays about one commit; alone, a message is committed at once. The caller sends the ACK
only after its receipt arrives, that is after the commit: an AA always means durably stored.

The messages that arrive while one commit is under way (its fsync releases the GIL, so the loop
keeps reading and parsing) make the next one. Left at that, senders that wait for their ACK (MLLP)
split into two groups that take turns - with 8 senders, batches of ~4 - and every commit costs the
same fsync and much the same pages (each index's last page) whatever its size. So when no commit is
running and fewer messages wait than the last round brought (the last batch plus what arrived during
it: the senders that are active), the committer lingers up to ``linger`` (1 ms) for the others, and
starts at once when they are all there. A lone sender (one message per round) never waits, and a
burst never waits longer than ``linger``. It lingers only while commits take less than
``linger_below`` (1.5 ms): then the server is bound by CPU, and fewer, fuller commits save it; when
the fsync is slow, the two groups taking turns overlap it with the loop's work, which is worth more
(measured: lingering behind 2 ms commits cost a third of the paced throughput). With 8 MLLP senders
(bench/engine_ingest.py) batches grew from ~3.8 to ~6.5-6.9 messages and the server's CPU per
message fell by ~20% (docs/engine.md).

SQLite has one writer at a time, so there is one writer thread. PostgreSQL commits concurrently
(and flushes its WAL once for all the commits waiting), so up to ``writers`` (4) transactions run
at once, each on its own connection - but another one starts only once at least as many messages
wait as the running ones hold. Started for every message that found a writer free, they took ~1.5
messages each from 8 MLLP senders, and a receipt transaction costs about a millisecond of CPU
(PostgreSQL's and ours) whatever its size: on 2 cores that left too little headroom at 1,000
msgs/s to catch up after a stall (in process, 8 senders in closed loop, alternating: 1,249 against
1,464 msgs/s, batches of 1.45 against 3.1, a fifth less CPU per message; bench/engine_ingest.py,
docs/engine.md). One sender, or two, still never wait for each other. Every message still gets
its own commit's receipt; what two concurrent transactions cannot do is see each other's rows, so
duplicate detection misses a copy sent at the same moment on another connection (one sent after
the first was acknowledged is found).

On PostgreSQL the committer also keeps the text index's GIN pending list short: every
``clean_every`` (256) messages it has the list moved into the index on another connection
(``MessageStore.clean_text_index``), so that no receipt transaction does it (one that did took
46-70 ms, every ~2,050 messages).

On SQLite the writer thread also keeps the text index up to date (``MessageStore.index_pending``)
between commits: once 64 messages wait for it and 50 ms (``index_gap``) have passed since the last
step, once 256 wait, or a second after the last step however few wait - never inside a receipt's
transaction, and never making a waiting message wait longer than one such step. A step commits
without an fsync of its own and does a bounded amount of FTS5 merging (migration e0005), so it holds
the writer a few milliseconds. Receipts that arrive during a step wait for it, so its length is the
ACK latency's tail: at 1,000 msgs/s steps stay at 64 messages (measured 2026-12-07, alternating, slow
phase of the VM: p99 ACK 7.8-12.7 ms with 64 against 19-31 ms with 256); only above ~1,300 msgs/s
does the gap let them grow, up to 256 at ~5,000 msgs/s, where a step costs per message about two
thirds of a step of 64 (bench: 39 against 28 us of CPU). Before 2026-12-07 every full step was
taken for a backlog, so the next one indexed just the batch committed meanwhile and paid a whole
merge for it: under load, every other step. Now only a step that took more messages than this
process committed (what a previous run left, split children) counts as a backlog; that goes on in
steps of 64, one after another between receipts, until the mark reaches the top.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .store import Incoming, MessageStore, Receipt

__all__ = ["GroupCommitter"]

log = logging.getLogger("ehrgate.engine.ingest")

Waiter = tuple[Incoming, "asyncio.Future[Receipt]"]


class _Writers:
    """Up to ``n`` writer threads taking jobs from one queue, started on first use.

    What ``ThreadPoolExecutor`` does for the committer, without what it does not need: a Future, a
    work item and locks per job (the job hands its result to the loop itself). A job is a batch, so
    this is per commit, not per message. Threads are daemons: one stopped at exit mid-transaction
    only loses an uncommitted batch, none of whose messages was acknowledged.
    """

    def __init__(self, n: int, name: str) -> None:
        self._n = n
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, job: Callable[[], None]) -> None:
        if len(self._threads) < self._n:
            thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._jobs.put(job)

    def _work(self) -> None:
        get = self._jobs.get
        while (job := get()) is not None:
            try:
                job()
            except Exception:  # noqa: BLE001 - the loop is gone (closed while a job ran); nobody waits
                log.debug("ingest job could not report back", exc_info=True)

    def shutdown(self) -> None:
        """Let the queued jobs finish, then stop the threads."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []


class GroupCommitter:
    def __init__(self, store: MessageStore, *, max_batch: int = 500, duplicate_window_ms: int = 0,
                 on_commit: Callable[[list[Incoming], list[Receipt]], None] | None = None,
                 writers: int | None = None) -> None:
        self.store = store
        self.max_batch = max_batch
        self.duplicate_window_ms = duplicate_window_ms
        self.on_commit = on_commit
        self.max_bytes = 32 * 1024 * 1024
        self.writers = writers or 1
        self._executor = _Writers(self.writers, "ehrgate-ingest")
        self._pending: list[Waiter] = []
        self._running = 0  # jobs on the writer threads
        self._committing = 0  # messages in the receipt transactions running
        self._drained: asyncio.Future[None] | None = None
        self._closing = False
        self.linger = 0.001
        self.linger_below = 0.0015  # linger only while commits are quick (CPU-bound, not waiting on the disk)
        self._expect = 1  # senders active in the last round: wait for that many (up to ``linger``)
        self._last_commit = 0.0  # seconds the last commit took
        self._lingering: asyncio.TimerHandle | None = None
        self.batches = 0
        self.messages = 0
        # SQLite text index: messages committed and not yet indexed, and whether more may wait than
        # were counted here (at start: what a previous run left; after a full step of a backlog)
        self.index_step = 64  # a step starts once this many wait (and ``index_gap`` has passed) ...
        self.index_step_max = 256  # ... or this many, and takes up to this many
        self.index_gap = 0.05
        self.index_every = 1.0  # ... or this long after the last step, however few wait
        self._unindexed = 0
        self._backlog = not store.pg
        self._indexed_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # PostgreSQL text index: its pending list is moved into the GIN index after this many
        # messages (MessageStore.clean_text_index), off the receipts' path; None: not done here
        self.clean_every: int | None = 256
        self._uncleaned = 0
        self._cleaning: asyncio.Future[int] | None = None

    def start(self) -> None:
        """Catch up on text indexing left from a previous run (SQLite), in the background."""
        self._dispatch()

    async def submit(self, item: Incoming) -> Receipt:
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._lingering is None:
            self._dispatch()
        elif len(self._pending) >= self._expect:  # everyone expected is here
            self._lingering.cancel()
            self._lingering = None
            self._dispatch(now=True)
        # A cancelled caller (its connection closed) cancels only its own future; the message is
        # still committed with the others (and its sender, without an ACK, sends it again).
        return await fut

    # -- scheduling ----------------------------------------------------------------------------

    def _dispatch(self, now: bool = False) -> None:
        """Start commits while writers are free (after lingering for the senders expected, when
        nothing is running); between commits, a text-index step when due."""
        if self._lingering is not None:
            return
        loop = asyncio.get_running_loop()
        if (not now and self._pending and not self._running and len(self._pending) < self._expect
                and self._last_commit < self.linger_below and not self._closing):
            self._lingering = loop.call_later(self.linger, self._lingered)
            return
        while self._pending and self._running < self.writers:
            if self._running and len(self._pending) < self._committing:
                break  # another transaction only for as many as those running hold (PostgreSQL)
            batch = self._take()
            self._committing += len(batch)
            self._run(loop, functools.partial(self._receive, [b[0] for b in batch]),
                      functools.partial(self._committed, batch, time.perf_counter()))
        if self.store.pg:
            if (self.clean_every is not None and self._uncleaned >= self.clean_every and self._cleaning is None
                    and not self._closing):
                self._uncleaned = 0
                self._cleaning = loop.run_in_executor(None, self.store.clean_text_index)
                self._cleaning.add_done_callback(self._cleaned)
            return
        if self._running or self._closing or not (self._unindexed or self._backlog):
            return
        waiting, since = self._unindexed, time.monotonic() - self._indexed_at
        if self._backlog:
            limit = self.index_step
        elif (waiting >= self.index_step_max or since >= self.index_every
              or (waiting >= self.index_step and since >= self.index_gap)):
            limit = self.index_step_max
        else:  # not due yet: make sure a timer is there for when it is, should no receipt come
            wait = (self.index_gap if waiting >= self.index_step else self.index_every) - since
            if self._timer is None or self._timer.when() > loop.time() + wait:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_later(wait, self._tick)
            return
        self._run(loop, functools.partial(self.store.index_pending, limit),
                  functools.partial(self._indexed, limit, waiting))

    def _lingered(self) -> None:
        self._lingering = None
        self._dispatch(now=True)

    def _tick(self) -> None:
        self._timer = None
        self._dispatch()

    def _run(self, loop: asyncio.AbstractEventLoop, work: Callable[[], Any],
             then: Callable[[Any, BaseException | None], None]) -> None:
        """Run ``work`` on a writer thread, then ``then(result, error)`` on the loop: one wake-up of
        the loop per batch, that resolves every waiter of the batch (no task, no future chaining)."""
        self._running += 1

        def job() -> None:
            try:
                result, error = work(), None
            except BaseException as exc:  # noqa: BLE001 - handed to ``then``, on the loop
                result, error = None, exc
            loop.call_soon_threadsafe(self._finish, then, result, error)

        self._executor.submit(job)

    def _finish(self, then: Callable[[Any, BaseException | None], None], result: Any,
                error: BaseException | None) -> None:
        self._running -= 1
        try:
            then(result, error)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: visible, and the committer keeps going
            log.error("group commit step failed: %s", type(exc).__name__)
        if self._drained is not None and not self._running and not self._drained.done():
            self._drained.set_result(None)
        self._dispatch()

    def _take(self) -> list[Waiter]:
        batch = self._pending[: self.max_batch]
        size = 0
        for n, (item, _) in enumerate(batch):  # bound memory too: large messages commit in smaller groups
            size += len(item.raw)
            if size > self.max_bytes and n:
                batch = batch[:n]
                break
        del self._pending[: len(batch)]
        return batch

    # -- work ----------------------------------------------------------------------------------

    def _receive(self, items: list[Incoming]) -> list[Receipt]:
        return self.store.receive(items, duplicate_window_ms=self.duplicate_window_ms)

    def _committed(self, batch: list[Waiter], started: float, receipts: list[Receipt] | None,
                   error: BaseException | None) -> None:
        self._committing -= len(batch)
        if receipts is None:  # every waiter gets the failure (→ an error ACK)
            log.error("storing %d received message(s) failed: %s", len(batch), type(error).__name__)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error or RuntimeError("no receipts"))
            return
        self.batches += 1
        self.messages += len(batch)
        self._expect = min(len(batch) + len(self._pending), self.max_batch)
        self._last_commit = time.perf_counter() - started
        for (_, fut), receipt in zip(batch, receipts, strict=True):
            if not fut.done():
                fut.set_result(receipt)
        if self.store.pg:
            self._uncleaned += len(batch)
        else:
            self._unindexed += len(batch)
        if self.on_commit is not None:
            self.on_commit([b[0] for b in batch], receipts)

    def _indexed(self, limit: int, counted: int, n: int | None, error: BaseException | None) -> None:
        self._indexed_at = time.monotonic()
        if error is not None or n is None:  # a text search catches up; keep receiving
            log.error("indexing received messages for text search failed: %s", type(error).__name__)
            self._unindexed, self._backlog = 0, False
            return
        # a step that was not full took everything above the mark (a text search may have indexed
        # some of them meanwhile, from another thread): caught up
        self._unindexed = max(self._unindexed - n, 0) if n == limit else 0
        # A full step that took more than were counted here: a backlog (a previous run's, or split
        # children), so keep going between receipts. A step that took all those counted is not one
        # (it used to be: the next step then indexed only the one batch committed meanwhile, and
        # paid a merge of MIN_MERGE_PAGES for it - every other step under load).
        self._backlog = n == limit and n > counted

    def _cleaned(self, done: asyncio.Future[int]) -> None:
        self._cleaning = None
        error = None if done.cancelled() else done.exception()
        if error is None:
            return
        code = str(getattr(getattr(error, "orig", None), "sqlstate", "") or "")
        if code.startswith("42"):  # not the index's owner (or no such index): the inserts keep doing it
            self.clean_every = None
            log.warning("text index upkeep off: gin_clean_pending_list on ix_eng_message_search failed (%s, "
                        "SQLSTATE %s); receipts move its pending list themselves, now and then slower",
                        type(error).__name__, code)
        else:  # tried again after the next clean_every messages
            log.error("moving the text index's pending list failed: %s", type(error).__name__)

    async def close(self) -> None:
        self._closing = True  # what is left to index is indexed by the next run or the next text search
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
            self._dispatch(now=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._running:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        self._drained = None
        if self._cleaning is not None:
            await asyncio.wait([self._cleaning])
        self._executor.shutdown()

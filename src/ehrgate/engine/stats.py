"""Statistics per channel and destination, for ``/metrics`` (Prometheus text) and the admin API.

Counters and the ACK latency histogram count what this process did; queue depth and the age of the
oldest queued message are read from the shared queue table at scrape time (cached for a second), so
they are the same whichever process is asked.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "EngineStats"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _QueueCollector(Collector):
    def __init__(self, read: Callable[[], dict[tuple[str, str], tuple[int, int | None]]],
                 clock: Callable[[], int]) -> None:
        self.read = read
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("ehrgate_queue_depth", "Messages waiting, per channel and step "
                                  "('pipeline' or a destination).", labels=["channel", "step"])
        age = GaugeMetricFamily("ehrgate_queue_oldest_age_seconds", "Age of the oldest waiting message.",
                                labels=["channel", "step"])
        try:
            rows = self.read()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database blinked
            rows = {}
        now = self.clock()
        for (channel, step), (count, oldest) in sorted(rows.items()):
            labels = [channel, step or "pipeline"]
            depth.add_metric(labels, count)
            age.add_metric(labels, max(0.0, (now - oldest) / 1000) if oldest is not None else 0.0)
        yield depth
        yield age


class EngineStats:
    def __init__(self, queue_stats: Callable[[], dict[tuple[str, str], tuple[int, int | None]]],
                 clock: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter("ehrgate_messages_received", "Messages received and stored.", ["channel"],
                                registry=self.registry)
        self.filtered = Counter("ehrgate_messages_filtered", "Messages filtered out (or duplicates skipped).",
                                ["channel"], registry=self.registry)
        self.errored = Counter("ehrgate_messages_errored", "Messages that could not be parsed or failed a step.",
                               ["channel"], registry=self.registry)
        self.deliveries = Counter("ehrgate_deliveries", "Delivery attempts by outcome (sent, retry, error).",
                                  ["channel", "destination", "outcome"], registry=self.registry)
        self.ack_latency = Histogram("ehrgate_ack_latency_seconds", "From a message's last byte to its ACK.",
                                     ["channel"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._cache: tuple[float, dict[tuple[str, str], tuple[int, int | None]]] = (0.0, {})
        self._queue_stats = queue_stats
        self.registry.register(_QueueCollector(self.queue, clock))
        self.clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=120)

    def queue(self) -> dict[tuple[str, str], tuple[int, int | None]]:
        at, value = self._cache
        if time.monotonic() - at > 1.0:
            value = self._queue_stats()
            self._cache = (time.monotonic(), value)
        return value

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- per-channel numbers for the admin API ----------------------------------------------

    def _value(self, counter: Any, **labels: str) -> float:
        for metric in counter.collect():
            for s in metric.samples:
                if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def sample(self) -> None:
        """Remember received/sent totals per channel (called every few seconds) for throughput."""
        totals: dict[str, float] = {}
        for metric in self.received.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    totals["received:" + s.labels["channel"]] = s.value
        for metric in self.deliveries.collect():
            for s in metric.samples:
                if s.name.endswith("_total") and s.labels["outcome"] == "sent":
                    key = "sent:" + s.labels["channel"]
                    totals[key] = totals.get(key, 0.0) + s.value
        self._samples.append((time.monotonic(), totals))

    def throughput(self, channel: str, kind: str = "received", window: float = 60.0) -> float:
        if len(self._samples) < 2:
            return 0.0
        end_t, end = self._samples[-1]
        start_t, start = self._samples[0]
        for t, values in self._samples:
            if end_t - t <= window:
                start_t, start = t, values
                break
        if end_t <= start_t:
            return 0.0
        key = f"{kind}:{channel}"
        return round((end.get(key, 0.0) - start.get(key, 0.0)) / (end_t - start_t), 2)

    def latency(self, channel: str) -> dict[str, Any]:
        buckets: list[tuple[str, float]] = []
        count = total = 0.0
        for metric in self.ack_latency.collect():
            for s in metric.samples:
                if s.labels.get("channel") != channel:
                    continue
                if s.name.endswith("_bucket"):
                    buckets.append((s.labels["le"], s.value))
                elif s.name.endswith("_count"):
                    count = s.value
                elif s.name.endswith("_sum"):
                    total = s.value
        return {"count": int(count), "mean_ms": round(total / count * 1000, 3) if count else None,
                "p50_ms": _quantile(buckets, count, 0.5), "p99_ms": _quantile(buckets, count, 0.99),
                "buckets": {le: int(v) for le, v in buckets}}

    def channel(self, channel: str, destinations: list[str]) -> dict[str, Any]:
        q = self.queue()
        now = self.clock()
        def queued(step: str) -> dict[str, Any]:
            count, oldest = q.get((channel, step), (0, None))
            return {"queued": count, "oldest_queued_age_s": round((now - oldest) / 1000, 3) if oldest else 0.0}
        return {
            "received": int(self._value(self.received, channel=channel)),
            "filtered": int(self._value(self.filtered, channel=channel)),
            "errored": int(self._value(self.errored, channel=channel)),
            "throughput_received_per_s": self.throughput(channel, "received"),
            "throughput_sent_per_s": self.throughput(channel, "sent"),
            "pipeline": queued(""),
            "ack_latency": self.latency(channel),
            "destinations": {
                d: {"sent": int(self._value(self.deliveries, channel=channel, destination=d, outcome="sent")),
                    "errored": int(self._value(self.deliveries, channel=channel, destination=d, outcome="error")),
                    "retried": int(self._value(self.deliveries, channel=channel, destination=d, outcome="retry")),
                    **queued(d)}
                for d in destinations},
        }


def _quantile(buckets: list[tuple[str, float]], count: float, q: float) -> float | None:
    """Upper bound (ms) of the histogram bucket holding quantile ``q`` - what Prometheus would estimate."""
    if not count:
        return None
    rank = q * count
    for le, cumulative in buckets:
        if cumulative >= rank:
            return None if le == "+Inf" else round(float(le) * 1000, 3)
    return None

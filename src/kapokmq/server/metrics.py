"""Prometheus exposition for `/metrics` (README "Observability").

The broker keeps plain integer counters on its hot path; this module reads them only when
scraped, so metrics cost nothing per message. A scrape costs the event loop little too:
the figures are copied on the loop (a few ms at 10,000 topics; new whole-broker figures
belong in ``broker_families``), the text is rendered in a worker thread, and one
rendering serves every scrape for ``MAX_AGE`` seconds. Only the ``server.metricsTopics``
busiest topics get their own series; the rest are summed under ``topic="_other"``
(docs/protocol.md, "Other routes").
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kapokmq.core.broker import Broker
from kapokmq.server.runtime import BrokerRuntime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_AGE = 1.0  # seconds one rendering is served for
OTHER = "_other"

# (name, help, is_counter) per value of a topic row, in row order after the name
TOPIC_SERIES = (
    ("kapokmq_messages_in", "Messages accepted from producers", True),
    ("kapokmq_messages_out", "Messages pushed to consumers (copies counted)", True),
    ("kapokmq_messages_acked", "Messages acknowledged by consumers", True),
    (
        "kapokmq_messages_redelivered",
        "Messages put back to be pushed again: unacked after pushRetryTime,"
        " or in flight to a consumer that left",
        True,
    ),
    ("kapokmq_messages_dead", "Messages dead-lettered (mq.maxDeliveries or TTL expired)", True),
    ("kapokmq_acks_unknown", "Acks of codes the topic has no message for", True),
    ("kapokmq_acks_late", "Acks of dead messages (expired or max deliveries), ignored", True),
    ("kapokmq_slow_consumers", "Consumers closed for holding over mq.maxPendingBytes", True),
    ("kapokmq_ready", "Waiting messages not in flight", False),
    ("kapokmq_in_flight", "Messages pushed, not yet acked", False),
    ("kapokmq_consumers", "Connected consumer sessions", False),
)
TopicRow = tuple[str, tuple[int, ...]]  # name, the TOPIC_SERIES values in order


def topic_rows(broker: Broker) -> list[TopicRow]:
    """Every topic's figures, copied; runs on the event loop (the broker is not
    thread-safe), so it is kept to attribute reads."""
    return [
        (
            t.name,
            (
                (s := t.stats).published,
                s.pushed,
                s.acked,
                s.redelivered,
                s.dead,
                s.unknown_acks,
                s.late_acks,
                s.slow_consumers,
                len(t.ready),
                t.in_flight(),
                len(t.consumers),
            ),
        )
        for t in broker.topics.values()
    ]


def busiest(rows: list[TopicRow], limit: int) -> list[TopicRow]:
    """The ``limit`` topics with most messages in and out, plus one ``_other`` row
    summing the rest (absent when nothing is left over)."""
    if len(rows) <= limit:
        return rows
    top = heapq.nlargest(limit, rows, key=lambda row: row[1][0] + row[1][1])
    kept = {name for name, _ in top}
    rest = [values for name, values in rows if name not in kept]
    return [*top, (OTHER, tuple(sum(column) for column in zip(*rest, strict=True)))]


class BrokerCollector(Collector):
    """Yields what was copied on the loop before a rendering: the topic rows (their
    families are built here, in the rendering thread) and the whole-broker families."""

    def __init__(self, max_topics: int) -> None:
        self.max_topics = max_topics
        self.rows: list[TopicRow] = []
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        rows = busiest(self.rows, self.max_topics)
        for index, (name, doc, is_counter) in enumerate(TOPIC_SERIES):
            family: CounterMetricFamily | GaugeMetricFamily
            if is_counter:
                family = CounterMetricFamily(name, doc, labels=["topic"])
            else:
                family = GaugeMetricFamily(name, doc, labels=["topic"])
            for topic, values in rows:
                family.add_metric([topic], values[index])
            yield family
        yield from self.families


def broker_families(runtime: BrokerRuntime) -> Iterator[Metric]:
    """The whole-broker figures (a few dozen samples); built on the event loop, because
    what they read (broker, storage, gossip) is not thread-safe."""
    broker = runtime.broker
    stored = GaugeMetricFamily(
        "kapokmq_messages_stored", "Stored messages by status", labels=["status"]
    )
    for status, count in broker.store.counts().items():
        stored.add_metric([status.name.lower()], count)
    yield stored
    wal = runtime.wal_stats
    if wal is not None:
        yield CounterMetricFamily(
            "kapokmq_wal_records", "Records appended to the write-ahead log", value=wal.appended
        )
        yield CounterMetricFamily("kapokmq_wal_fsyncs", "WAL fsync calls", value=wal.syncs)
        yield CounterMetricFamily(
            "kapokmq_wal_fsync_seconds", "Time spent in WAL fsync", value=wal.sync_seconds
        )
        yield GaugeMetricFamily(
            "kapokmq_wal_fsync_max_seconds",
            "Slowest WAL fsync so far",
            value=wal.max_sync_seconds,
        )
    storage = runtime.storage_health
    if storage is not None:
        yield GaugeMetricFamily(
            "kapokmq_storage_available",
            "1 while storage writes succeed, 0 while producer writes are refused for it",
            value=0 if storage.fault is not None else 1,
        )
        yield CounterMetricFamily(
            "kapokmq_storage_write_failures",
            "Failed storage writes, fsyncs and rebuild attempts",
            value=storage.write_failures,
        )
    yield GaugeMetricFamily(
        "kapokmq_backlog",
        "Unconsumed messages (bounded by messageChanBuffer)",
        value=broker.backlog,
    )
    yield GaugeMetricFamily(
        "kapokmq_producers", "Connected producer sessions", value=len(broker.producers)
    )
    dedup = broker.dedup
    yield GaugeMetricFamily(
        "kapokmq_dedup_ids", "Producer dedup ids remembered (mq.dedupWindow)", value=len(dedup)
    )
    yield CounterMetricFamily(
        "kapokmq_dedup_duplicates",
        "Messages not stored again: their MessageId was seen within the window",
        value=dedup.duplicates,
    )
    yield CounterMetricFamily(
        "kapokmq_dedup_evicted",
        "Dedup ids forgotten before their window ended because of mq.dedupMaxIds",
        value=dedup.evicted,
    )
    trace = broker.trace
    if trace is not None:
        yield GaugeMetricFamily(
            "kapokmq_trace_messages", "Messages with a trace held (mq.trace)", value=len(trace)
        )
        yield GaugeMetricFamily(
            "kapokmq_trace_events",
            "Trace events held (at most mq.traceMaxEvents)",
            value=trace.events,
        )
        yield CounterMetricFamily(
            "kapokmq_trace_evicted",
            "Message traces forgotten, oldest first, because of mq.traceMaxEvents",
            value=trace.evicted,
        )
    sync_figures = runtime.sync_figures
    if sync_figures is not None:
        slaves, unread, cut = sync_figures()
        yield GaugeMetricFamily("kapokmq_sync_slaves", "Sync slaves connected", value=slaves)
        yield GaugeMetricFamily(
            "kapokmq_sync_unread_bytes",
            "Bytes queued for the sync slaves that they have not read yet",
            value=unread,
        )
        yield CounterMetricFamily(
            "kapokmq_sync_slaves_cut",
            "Sync slaves cut for not reading (over mq.maxPendingBytes unread)",
            value=cut,
        )
    gossip_refused = runtime.gossip_refused
    if gossip_refused is not None:
        refused = CounterMetricFamily(
            "kapokmq_gossip_refused",
            "Gossip input dropped: unencrypted or malformed packets, refused streams, "
            "rate-limited introductions",
            labels=["reason"],
        )
        for reason, count in gossip_refused().items():
            refused.add_metric([reason], count)
        yield refused


class MetricsPage:
    """The /metrics body: rendered off the loop, at most once per ``MAX_AGE`` seconds,
    however many scrapers ask."""

    def __init__(self, runtime: BrokerRuntime) -> None:
        self.runtime = runtime
        self.collector = BrokerCollector(runtime.config.server.metricsTopics)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._body = b""
        self._rendered_at = float("-inf")
        self._rendering: asyncio.Future[bytes] | None = None

    async def body(self) -> bytes:
        loop = self.runtime.loop
        if loop.time() - self._rendered_at < MAX_AGE:
            return self._body
        if self._rendering is None:
            self.collector.rows = topic_rows(self.runtime.broker)
            self.collector.families = list(broker_families(self.runtime))
            self._rendering = asyncio.ensure_future(
                asyncio.to_thread(generate_latest, self.registry)
            )
            self._rendering.add_done_callback(self._rendered)
        return await asyncio.shield(self._rendering)

    def _rendered(self, rendering: asyncio.Future[bytes]) -> None:
        self._rendering = None
        self.collector.rows = []
        self.collector.families = []
        if not rendering.cancelled() and rendering.exception() is None:
            self._body = rendering.result()
            self._rendered_at = self.runtime.loop.time()

"""Prometheus exposition for `/metrics` (README "Observability").

The broker keeps plain integer counters on its hot path; this collector reads them only
when scraped, so metrics cost nothing per message.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kapokmq.server.runtime import BrokerRuntime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class BrokerCollector(Collector):
    def __init__(self, runtime: BrokerRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        broker = self.runtime.broker
        counters = {
            "published": ("kapokmq_messages_in", "Messages accepted from producers"),
            "pushed": ("kapokmq_messages_out", "Messages pushed to consumers (copies counted)"),
            "acked": ("kapokmq_messages_acked", "Messages acknowledged by consumers"),
            "redelivered": (
                "kapokmq_messages_redelivered",
                "Messages re-pushed after pushRetryTime",
            ),
            "dead": ("kapokmq_messages_dead", "Messages dead-lettered after mq.maxDeliveries"),
        }
        families = {
            attr: CounterMetricFamily(name, doc, labels=["topic"])
            for attr, (name, doc) in counters.items()
        }
        ready = GaugeMetricFamily(
            "kapokmq_ready", "Waiting messages not in flight", labels=["topic"]
        )
        in_flight = GaugeMetricFamily(
            "kapokmq_in_flight", "Messages pushed, not yet acked", labels=["topic"]
        )
        consumers = GaugeMetricFamily(
            "kapokmq_consumers", "Connected consumer sessions", labels=["topic"]
        )
        for topic in broker.topics.values():
            for attr, family in families.items():
                family.add_metric([topic.name], getattr(topic.stats, attr))
            ready.add_metric([topic.name], len(topic.ready))
            in_flight.add_metric([topic.name], topic.in_flight())
            consumers.add_metric([topic.name], len(topic.consumers))
        yield from families.values()
        yield ready
        yield in_flight
        yield consumers
        stored = GaugeMetricFamily(
            "kapokmq_messages_stored", "Stored messages by status", labels=["status"]
        )
        for status, count in broker.store.counts().items():
            stored.add_metric([status.name.lower()], count)
        yield stored
        wal = self.runtime.wal_stats
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
        storage = self.runtime.storage_health
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
        gossip_refused = self.runtime.gossip_refused
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


def make_registry(runtime: BrokerRuntime) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(runtime))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)

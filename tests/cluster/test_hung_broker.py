"""A broker that hangs (SIGSTOP: its TCP connections stay open, nothing is answered) is
noticed by the clients' WebSocket heartbeat within seconds (docs/client.md "Reconnecting,
errors and closing"), not only when the registry drops it and the client closes it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import aiohttp
import pytest

from kapokmq.client import ConsoleClient, Consumer, Producer
from kapokmq.client.cluster import ClusterConsumer, ClusterProducer
from tests.cluster.conftest import Cluster
from tests.cluster.harness import NodeWatcher, node_name, registry_nodes_url
from tests.harness import BrokerProcess

# With the default heartbeat (2 s: a ping after 2 s without a frame, closed 1 s later when
# no pong came) a hung broker is noticed in about 3 s; before it, 15-18 s.
BOUND = 5.0


@contextlib.contextmanager
def stopped(broker: BrokerProcess) -> Iterator[None]:
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)


async def drain(broker: BrokerProcess, topic: str) -> list[str]:
    """Every message the broker stored (the only topic it has), consumed and acked."""
    async with ConsoleClient(broker.http) as console:
        total = (await console.count())["all"]
    got: list[str] = []
    if total:
        async with Consumer(broker.http, topic, "drain") as consumer:
            async with asyncio.timeout(20):
                async for msg in consumer:
                    got.append(msg.message_data)
                    await msg.ack()
                    if len(got) == total:
                        break
    return got


@pytest.mark.timeout(120)
async def test_cluster_producer_fails_over_from_a_hung_broker_in_seconds(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    brokers = await cluster.add_brokers(2)
    await NodeWatcher(http, registry_nodes_url(cluster.registry)).wait_for(
        {node_name(b) for b in brokers}, 10
    )
    victim, survivor = brokers
    latency: dict[str, float] = {}
    acked_by: dict[str, str] = {}

    async def send(producer: ClusterProducer, data: str) -> None:
        started = time.monotonic()
        acked_by[data] = await producer.send(data, message_id=data)
        latency[data] = time.monotonic() - started

    registry = cluster.registry.http
    async with (
        ClusterProducer(registry, "hung", "hp") as producer,  # the defaults
        ClusterConsumer(registry, "hung", "hc") as consumer,
    ):
        assert sorted(producer.nodes) == sorted(consumer.nodes) == sorted(map(node_name, brokers))
        victims = consumer._consumers[node_name(victim)]
        for i in range(10):
            await send(producer, f"m{i}")
        assert set(acked_by.values()) == {node_name(victim), node_name(survivor)}
        with stopped(victim):
            stopped_at = time.monotonic()
            tasks = []
            for i in range(10, 70):  # 20 sends/s for 3 s, half of them routed to the victim
                tasks.append(asyncio.create_task(send(producer, f"m{i}")))
                await asyncio.sleep(0.05)
            async with asyncio.timeout(30):
                results = await asyncio.gather(*tasks, return_exceptions=True)
                while victims.connected:  # the consumer's connection to it is dropped too
                    await asyncio.sleep(0.05)
            consumer_noticed = time.monotonic() - stopped_at
        slowest = max(latency.values())
        print(
            f"failovers={producer.failovers} slowest send {slowest:.2f} s; "
            f"consumer noticed after {consumer_noticed:.2f} s"
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert slowest < BOUND
        assert producer.failovers > 0
        assert consumer_noticed < BOUND + 3  # the victim was stopped 3 s after the last read
    # Nothing lost: each message is stored where it was acked. One unanswered on the hung
    # broker and resent may be stored there too (read before the stop, stored after it).
    stored = {node_name(b): await drain(b, "hung") for b in brokers}
    for data, name in acked_by.items():
        assert data in stored[name], (data, name)
    on_victim, on_survivor = (stored[node_name(b)] for b in brokers)
    twice = set(on_victim) & set(on_survivor)
    print(f"stored on both: {len(twice)} of {len(acked_by)}")
    assert len(on_victim) + len(on_survivor) == len(acked_by) + len(twice)


@pytest.mark.timeout(60)
async def test_producer_and_consumer_notice_a_hung_broker(broker: BrokerProcess) -> None:
    """A plain client's connection to a hung broker is dropped and re-opened; the resent
    frame (same MessageId) is stored once, and the consumer gets it after the broker resumes."""
    async with (
        Producer(broker.http, "hung1", "p") as producer,
        Consumer(broker.http, "hung1", "c") as consumer,
    ):
        await producer.send("before", message_id="before")
        first = await consumer.receive(timeout=10)
        assert first is not None
        await first.ack()
        with stopped(broker):
            stopped_at = time.monotonic()
            pending = await producer.submit("during", message_id="during")
            async with asyncio.timeout(BOUND):
                while producer.connected or consumer.connected:
                    await asyncio.sleep(0.05)
            print(f"both dropped after {time.monotonic() - stopped_at:.2f} s")
        async with asyncio.timeout(30):
            await pending
        assert producer.reconnects >= 1
        msg = await consumer.receive(timeout=30)
        assert msg is not None and msg.message_data == "during"
        await msg.ack()
        async with ConsoleClient(broker.http) as console:
            assert (await console.count())["all"] == 2  # "during" once, though sent twice


@pytest.mark.timeout(60)
async def test_a_consumer_that_stops_reading_is_not_taken_for_a_hung_broker(
    broker: BrokerProcess,
) -> None:
    """With its buffer full the consumer reads nothing, so aiohttp pauses the socket (over
    128 KiB queued): the broker's pongs must still be seen, or a slow handler would cost a
    reconnect (and a redelivery of everything unacked) every 3 s."""
    async with Producer(broker.http, "slow", "p") as producer:
        await producer.send_many(["x" * 60_000] * 20)
    async with Consumer(broker.http, "slow", "c", buffer=1) as consumer:
        msg = await consumer.receive(timeout=10)
        assert msg is not None
        ws = consumer._ws
        assert ws is not None
        await asyncio.sleep(5)  # a slow handler: the heartbeat (2 s + 1 s) runs meanwhile
        assert consumer.connected and consumer._ws is ws and consumer.reconnects == 0
        await msg.ack()

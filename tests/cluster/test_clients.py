"""ClusterProducer and ClusterConsumer against a registry and three broker processes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from kapokmq.client import ConsoleClient
from kapokmq.client.cluster import (
    ClusterConsumer,
    ClusterProducer,
    SyncClusterConsumer,
    SyncClusterProducer,
    fetch_nodes,
)
from kapokmq.client.errors import AuthenticationError
from kapokmq.client.sync import run as sync_run
from tests.cluster.conftest import Cluster
from tests.cluster.harness import NodeWatcher, node_name, registry_nodes_url
from tests.harness import BrokerProcess

TOTAL = 3000
CHECK = 0.5  # the clients' registry poll interval in these tests


async def three_brokers(cluster: Cluster, http: aiohttp.ClientSession) -> list[BrokerProcess]:
    brokers = await cluster.add_brokers(3)
    await NodeWatcher(http, registry_nodes_url(cluster.registry)).wait_for(
        {node_name(b) for b in brokers}, 10
    )
    return brokers


async def consume(
    consumer: ClusterConsumer, seen: dict[str, int], done: asyncio.Event, expected: int
) -> None:
    async for msg in consumer:
        seen[msg.message_data] = seen.get(msg.message_data, 0) + 1
        await msg.ack()
        if len(seen) >= expected:
            done.set()


@pytest.mark.timeout(90)
async def test_producer_spreads_and_consumer_receives_all(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    brokers = await three_brokers(cluster, http)
    names = {node_name(b) for b in brokers}
    registry = cluster.registry.http
    assert {n.name for n in await fetch_nodes(registry)} == names
    with pytest.raises(AuthenticationError):
        await fetch_nodes(registry, "wrong")

    seen: dict[str, int] = {}
    done = asyncio.Event()
    async with ClusterConsumer(registry, "orders", "cc-1", check_interval=CHECK) as consumer:
        assert set(consumer.nodes) == names
        reader = asyncio.create_task(consume(consumer, seen, done, TOTAL))
        async with ClusterProducer(registry, "orders", "cp-1", check_interval=CHECK) as producer:
            assert set(producer.nodes) == names
            start = time.monotonic()
            acked_by = await producer.send_many(f"m{i}" for i in range(TOTAL))
            took = time.monotonic() - start
        print(f"{TOTAL} messages sent through the cluster in {took:.2f}s: {producer.sent}")
        assert all(isinstance(name, str) for name in acked_by)
        counts = {name: acked_by.count(name) for name in names}
        assert sum(counts.values()) == TOTAL
        assert min(counts.values()) >= TOTAL * 0.2, counts
        # The brokers agree: each stored what the producer says it acknowledged.
        for b in brokers:
            async with ConsoleClient(b.http) as console:
                assert (await console.count())["all"] == counts[node_name(b)]
        async with asyncio.timeout(30):
            await done.wait()
        reader.cancel()
    assert set(seen) == {f"m{i}" for i in range(TOTAL)}
    assert all(n == 1 for n in seen.values())
    print(f"consumer received from each broker: {consumer.received}")


@pytest.mark.timeout(120)
async def test_kill_a_broker_mid_stream(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    """Every message acknowledged by a surviving broker is received; no send is lost."""
    brokers = await three_brokers(cluster, http)
    victim = brokers[0]
    victim_name = node_name(victim)
    registry = cluster.registry.http
    seen: dict[str, int] = {}
    done = asyncio.Event()
    acked_by: dict[str, str] = {}
    async with (
        ClusterConsumer(registry, "jobs", "cc-2", check_interval=CHECK) as consumer,
        ClusterProducer(
            registry, "jobs", "cp-2", check_interval=CHECK, max_in_flight=200
        ) as producer,
    ):
        reader = asyncio.create_task(consume(consumer, seen, done, TOTAL))
        window = asyncio.Semaphore(300)

        async def send(i: int) -> None:
            try:
                acked_by[f"j{i}"] = await producer.send(f"j{i}")
            finally:
                window.release()

        tasks = []
        for i in range(TOTAL):
            if i == TOTAL // 3:
                # SIGKILL without yielding to the loop: ~300 sends are in flight, a third
                # of them to the victim, and their `ok` will never come.
                assert victim.proc is not None
                victim.proc.kill()
                killed_at = time.monotonic()
            await window.acquire()
            tasks.append(asyncio.create_task(send(i)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors[:3]  # every send got an `ok` from some broker
        assert len(acked_by) == TOTAL
        survivors = {k for k, v in acked_by.items() if v != victim_name}
        print(
            f"failovers={producer.failovers}; acked by the victim: "
            f"{TOTAL - len(survivors)}; by survivors: {len(survivors)}"
        )
        # Sends after the kill went to the survivors once the failure was seen.
        assert len(survivors) >= TOTAL // 2
        assert producer.failovers > 0
        deadline = time.monotonic() + 30
        while not survivors <= set(seen):
            missing = survivors - set(seen)
            assert time.monotonic() < deadline, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
            await asyncio.sleep(0.05)
        # The clients follow the registry: the victim is dropped from both.
        remaining = {node_name(b) for b in brokers[1:]}
        while not (set(producer.nodes) == remaining == set(consumer.nodes)):
            assert time.monotonic() - killed_at < 15, (producer.nodes, consumer.nodes)
            await asyncio.sleep(0.05)
        reader.cancel()


@pytest.mark.timeout(90)
async def test_clients_follow_joins_and_leaves(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    (first,) = await cluster.add_brokers(1)
    registry = cluster.registry.http
    await NodeWatcher(http, registry_nodes_url(cluster.registry)).wait_for({node_name(first)}, 10)
    async with (
        ClusterProducer(registry, "t", "p", check_interval=CHECK) as producer,
        ClusterConsumer(registry, "t", "c", check_interval=CHECK) as consumer,
    ):
        assert producer.nodes == [node_name(first)] == consumer.nodes
        (second,) = await cluster.add_brokers(1)
        both = {node_name(first), node_name(second)}
        deadline = time.monotonic() + 10
        while not (set(producer.nodes) == both == set(consumer.nodes)):
            assert time.monotonic() < deadline, (producer.nodes, consumer.nodes)
            await asyncio.sleep(0.05)
        # A message sent to the new broker reaches the consumer.
        got: set[str] = set()
        for i in range(10):
            await producer.send(f"x{i}")
        async with asyncio.timeout(10):
            while len(got) < 10:
                msg = await consumer.receive()
                got.add(msg.message_data)
                await msg.ack()
        assert producer.sent.get(node_name(second), 0) > 0
        # SIGTERM the first: both clients drop it, and sends keep working.
        first.stop()
        deadline = time.monotonic() + 5
        while not (producer.nodes == [node_name(second)] == consumer.nodes):
            assert time.monotonic() < deadline, (producer.nodes, consumer.nodes)
            await asyncio.sleep(0.05)
        assert await producer.send("after") == node_name(second)


@pytest.mark.timeout(60)
def test_sync_cluster_clients(cluster: Cluster) -> None:
    brokers = [cluster.new_broker().start() for _ in range(2)]
    registry = cluster.registry.http
    names = {node_name(b) for b in brokers}
    deadline = time.monotonic() + 10
    while {n.name for n in sync_run(fetch_nodes(registry))} != names:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with (
        SyncClusterProducer(registry, "s", "sp", check_interval=CHECK) as producer,
        SyncClusterConsumer(registry, "s", "sc", check_interval=CHECK) as consumer,
    ):
        assert set(producer.nodes) == names == set(consumer.nodes)
        stored: list[str | BaseException] = [producer.send(f"s{i}") for i in range(10)]
        stored += producer.send_many(f"s{i}" for i in range(10, 40))
        assert {s for s in stored if isinstance(s, str)} == names
        got: set[str] = set()
        for msg in consumer:
            got.add(msg.message_data)
            msg.ack()
            if len(got) == 40:
                break
        assert got == {f"s{i}" for i in range(40)}

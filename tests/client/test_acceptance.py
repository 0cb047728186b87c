"""Found by the B9 acceptance pass (docs/client.md): each test is a bug a user hit from
outside, against a real broker process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kapokmq.client import (
    AuthenticationError,
    Backoff,
    ClusterConsumer,
    ClusterProducer,
    ConnectionLostError,
    ConsoleClient,
    Consumer,
    Producer,
    ProtocolError,
)
from kapokmq.client.sync import SyncConsumer, SyncProducer
from tests.cluster.harness import (
    NodeWatcher,
    RegistryProcess,
    cluster_broker,
    node_name,
    registry_nodes_url,
    registry_process,
)
from tests.harness import SECRET, BrokerProcess

FAST = Backoff(initial=0.05, maximum=0.2)


async def test_a_failed_ack_can_be_retried(broker: BrokerProcess) -> None:
    """An ack that found no connection within ack_timeout raised, and the message then
    counted as acked: the retry the error invites was a silent no-op."""
    async with Producer(broker.http, "ack-retry", "p") as producer:
        await producer.send("one")
    consumer = Consumer(broker.http, "ack-retry", "c", ack_timeout=0.3, backoff=FAST)
    async with consumer:
        msg = await consumer.receive(timeout=10)
        await asyncio.to_thread(broker.stop)
        async with asyncio.timeout(10):
            while consumer.connected:  # the client has no event for "saw the drop"
                await asyncio.sleep(0.01)
        with pytest.raises(ConnectionLostError, match=r"within 0\.3 s to ack"):
            await msg.ack()
        assert not msg.acked
        with pytest.raises(ConnectionLostError):  # tried again, not skipped
            await msg.ack()
        await asyncio.to_thread(broker.start)
        consumer.ack_timeout = 30.0
        await msg.ack()  # reaches the broker once it is back
        assert msg.acked


@contextlib.asynccontextmanager
async def one_broker_cluster(root: Path) -> AsyncIterator[tuple[RegistryProcess, BrokerProcess]]:
    """A registry and one broker it lists (tests/cluster has the many-broker cases)."""
    (root / "registry").mkdir()
    (root / "broker").mkdir()
    registry = registry_process(root / "registry")
    broker = cluster_broker(root / "broker", registry.gossip_port)
    try:
        await asyncio.to_thread(registry.start)
        await asyncio.to_thread(broker.start)
        async with aiohttp.ClientSession() as http:
            await NodeWatcher(http, registry_nodes_url(registry)).wait_for({node_name(broker)}, 10)
        yield registry, broker
    finally:
        broker.cleanup()
        registry.cleanup()


@pytest.mark.timeout(90)
async def test_cluster_clients_with_a_key_every_broker_refuses(tmp_path: Path) -> None:
    """The registry accepted its key, every broker refused theirs: connect() succeeded, a
    ClusterConsumer then waited forever and a ClusterProducer's send failed after
    send_timeout with "no broker accepted the message" and no word about the key."""
    async with one_broker_cluster(tmp_path) as (registry, process):
        broker = node_name(process)
        for client in (
            ClusterProducer(registry.http, "t", "p", "wrong", registry_secret_key=SECRET),
            ClusterConsumer(registry.http, "t", "c", "wrong", registry_secret_key=SECRET),
        ):
            started = time.monotonic()
            with pytest.raises(AuthenticationError, match=f"rejected the secret key: {broker}"):
                await client.connect()
            assert time.monotonic() - started < 5
            assert client._http is None or client._http.closed  # nothing left open


@pytest.mark.timeout(90)
async def test_cluster_producer_says_why_no_broker_took_the_message(tmp_path: Path) -> None:
    """Every listed broker failed to connect: the send's timeout error named none of them."""
    async with one_broker_cluster(tmp_path) as (registry, process):
        broker = node_name(process)
        assert process.proc is not None
        pid = process.proc.pid
        os.kill(pid, signal.SIGSTOP)  # listed for a few more seconds, answers nothing
        try:
            async with ClusterProducer(
                registry.http, "t", "p", connect_timeout=0.5, send_timeout=1.0
            ) as producer:
                with pytest.raises(
                    ConnectionLostError, match=rf"last error: {broker}: cannot connect .* 0\.5 s"
                ):
                    await producer.send("x")
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(90)
async def test_cluster_producer_takes_ttl_and_message_id(tmp_path: Path) -> None:
    """ClusterProducer.send had no ttl/message_id: a cluster user could not dedup or
    expire messages (docs/cluster.md)."""
    async with one_broker_cluster(tmp_path) as (registry, broker):
        async with ClusterProducer(registry.http, "dedup", "p") as producer:
            for _ in range(2):
                assert await producer.send("once", ttl=600, message_id="id-1") == node_name(broker)
            with pytest.raises(TypeError, match="ttl"):
                await producer.send("x", ttl=-1)
            names = await producer.send_many(["a", "b"], ttl=600, message_ids=["id-1", "id-2"])
            assert names == [node_name(broker)] * 2
            with pytest.raises(ValueError, match="one id per item"):
                await producer.send_many(["x"], message_ids=["id-3", "id-4"])
        async with ConsoleClient(broker.http) as console:
            stored = await console.list_messages(
                "2000-01-01 00:00:00", "2100-01-01 00:00:00", topic="dedup"
            )
        assert [m["TTL"] for m in stored] == [600, 600]  # once, and b


async def test_a_wrong_address_over_http_says_so_readably(broker: BrokerProcess) -> None:
    """A 404 read `answered HTTP 404: b'404 page not found'`, bytes repr and all."""
    async with ConsoleClient(broker.http + "/nope") as console:
        with pytest.raises(ProtocolError) as caught:
            await console.count()
    assert str(caught.value) == (
        f"{broker.http}/nope/Console/CountMessage answered HTTP 404: "
        "'404 page not found' (wrong address?)"
    )


def test_sync_clients_in_a_thread_take_the_async_timeouts(broker: BrokerProcess) -> None:
    """SyncConsumer had no ack_timeout (nor SyncProducer close_timeout): in a worker
    thread an ack during an outage could only wait the default 30 s."""
    outcome: list[tuple[str, float]] = []

    def work() -> None:
        with SyncProducer(broker.http, "sync-t", "p", close_timeout=5.0) as producer:
            producer.send("one")
        consumer = SyncConsumer(broker.http, "sync-t", "c", ack_timeout=0.3, backoff=FAST)
        with consumer:
            msg = consumer.receive(timeout=10)
            broker.stop()
            deadline = time.monotonic() + 10
            while consumer._consumer.connected:  # type: ignore[attr-defined]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            started = time.monotonic()
            try:
                msg.ack()
            except ConnectionLostError as exc:
                outcome.append((str(exc), time.monotonic() - started))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    ((text, took),) = outcome
    assert "within 0.3 s to ack" in text and took < 5

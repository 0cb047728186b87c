"""An outsider on the gossip port (no key set: the worst case) cannot stall a broker or fill
GetNodes: LZW bombs, spoofed alive floods and huge push/pulls, while a producer measures its
send→ok latency (docs/gossip.md, Bounded work). Loopback only, every loop bounded."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import aiohttp
import psutil
import pytest

from kapokmq.client import Producer
from kapokmq.gossip import lzw
from kapokmq.gossip.codec import Alive, Compress, PushNodeState, encode, make_compound
from kapokmq.gossip.stream import PushPull, encode_stream
from tests.cluster.conftest import Cluster
from tests.cluster.harness import NodeWatcher, broker_nodes_url, node_name, registry_nodes_url
from tests.harness import SECRET

ATTACK_SECONDS = 6.0
LO = bytes([127, 0, 0, 1])
VSN = bytes([1, 5, 2, 0, 0, 0])


def fake_states(prefix: str, n: int) -> list[PushNodeState]:
    return [
        PushNodeState(f"mq:10.{prefix}.{i // 250}.{i % 250}:8011", LO, 9, None, 1, 0, VSN)
        for i in range(n)
    ]


def alive_flood(round_: int) -> bytes:
    alives = [encode(Alive(1, f"mq:10.99.{round_}.{i}:8011", LO, 9, None, VSN)) for i in range(50)]
    return make_compound(alives)


async def push(port: int, payload: bytes) -> None:
    """Send one push/pull and read whatever comes back (a reply or an errResp)."""
    with_timeout = asyncio.timeout(10)
    async with with_timeout:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(payload)
            await writer.drain()
            await reader.read(65536)
        finally:
            writer.close()


@pytest.mark.timeout(90)
async def test_bombs_floods_and_huge_push_pulls_do_not_stall_the_broker(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    (broker,) = await cluster.add_brokers(1)
    gossip_port = int(str(broker.settings["cluster.gossipPort"]))
    reg = NodeWatcher(http, registry_nodes_url(cluster.registry))
    await reg.wait_for({node_name(broker)}, 10)

    # Payloads are built before the clock starts: the producer shares this event loop.
    bomb = encode(Compress(0, lzw.compress(bytes(8 << 20))))  # ~24 KB -> 8 MiB
    noise = encode(Compress(0, os.urandom(60_000)))  # LZW codes that expand to little
    floods = [alive_flood(r) for r in range(int(ATTACK_SECONDS * 10))]
    huge = encode_stream(PushPull(False, fake_states("1", 20_000)), compress=False)
    pushes = [
        encode_stream(PushPull(False, fake_states(str(10 + r), 1000)), compress=True)
        for r in range(int(ATTACK_SECONDS))
    ]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", gossip_port)
    assert broker.proc is not None
    proc = psutil.Process(broker.proc.pid)

    async def attack() -> None:
        start = time.monotonic()
        tick = 0
        while (elapsed := time.monotonic() - start) < ATTACK_SECONDS:
            udp.sendto(bomb, target)  # 10 LZW bombs per second
            udp.sendto(noise, target)
            udp.sendto(floods[tick], target)  # 500 spoofed new brokers per second
            if tick % 10 == 0:
                second = tick // 10
                tasks = [push(gossip_port, pushes[second])]
                if second == 1:
                    tasks.append(push(gossip_port, huge))
                await asyncio.gather(*tasks, return_exceptions=True)
            tick += 1
            await asyncio.sleep(max(0.0, tick * 0.1 - (time.monotonic() - start)))
            del elapsed

    latencies: list[float] = []

    async def produce(done: asyncio.Event) -> None:
        async with Producer(broker.ws, "attack", "p1", SECRET) as producer:
            while not done.is_set():
                sent = time.monotonic()
                await producer.send("x")
                latencies.append(time.monotonic() - sent)
                await asyncio.sleep(0.01)

    cpu_before = sum(proc.cpu_times()[:2])
    done = asyncio.Event()
    producer = asyncio.create_task(produce(done))
    try:
        await attack()
    finally:
        done.set()
        udp.close()
    await producer
    cpu = sum(proc.cpu_times()[:2]) - cpu_before
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    listed = await NodeWatcher(http, broker_nodes_url(broker)).names()
    on_registry = await reg.names()
    assert listed is not None and on_registry is not None
    print(
        f"under attack: {len(latencies)} sends, p50 {latencies[len(latencies) // 2] * 1e3:.1f} "
        f"ms, p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms; broker CPU "
        f"{cpu / ATTACK_SECONDS * 100:.0f}% of a core; extra nodes listed: broker "
        f"{len(listed) - 1}, registry {len(on_registry) - 1}"
    )
    assert len(latencies) > 100
    assert p99 <= 0.100
    assert len(listed) - 1 <= 1000 and len(on_registry) - 1 <= 1000
    assert broker.proc.poll() is None

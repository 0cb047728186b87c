"""docs/protocol.md "Consumer session": consumers joining and leaving while messages flow
never wedge the broker.

The original deadlocks or crashes here. Ten consumers connect, take a few messages (acking
some), and leave (cleanly or by dropping the TCP connection) over and over while 3,000
messages are published and the console polls GetClients; afterwards a probe message must
still arrive within 2 s. In point-to-point every message must have been received at least
once, and nothing may be left unconsumed once a last consumer has drained the topic.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import abort, api, consumer, frame, http_send, producer, recv_push
from tests.harness import BrokerProcess

N = 3000
CHURNERS = 10
TOPIC = "churn"


@pytest.fixture(scope="module", params=[1, 2], ids=["p2p", "pubsub"])
def mb(request, tmp_path_factory) -> Iterator[BrokerProcess]:
    settings = {"mq.pushType": request.param}
    with started_broker(tmp_path_factory.mktemp("churn"), settings) as proc:
        yield proc


async def _churner(
    session: aiohttp.ClientSession,
    broker: BrokerProcess,
    index: int,
    received: set[str],
    stop: asyncio.Event,
) -> int:
    rng = random.Random(index)
    sessions = 0
    while not stop.is_set():
        ws = await consumer(session, broker, TOPIC, f"churner{index}")
        sessions += 1
        budget = rng.randint(0, 60)
        ack_share = rng.random()
        for _ in range(budget):
            try:
                push = await recv_push(ws, timeout=0.1)
            except TimeoutError:
                break
            received.add(push["MessageData"])
            if rng.random() < ack_share:
                await ws.send_str(push["MessageCode"])
        if rng.random() < 0.3:
            abort(ws)  # vanish without a close frame
        else:
            await ws.close()
    return sessions


async def _poll_clients(
    session: aiohttp.ClientSession, broker: BrokerProcess, stop: asyncio.Event
) -> int:
    polls = 0
    while not stop.is_set():
        reply = await api(session, broker, "/Console/GetClients")
        assert reply["code"] == 0
        polls += 1
        await asyncio.sleep(0.02)
    return polls


async def test_churn_then_probe(mb):
    async with aiohttp.ClientSession() as session:
        received: set[str] = set()
        stop = asyncio.Event()
        churners = [
            asyncio.create_task(_churner(session, mb, i, received, stop)) for i in range(CHURNERS)
        ]
        poller = asyncio.create_task(_poll_clients(session, mb, stop))

        p = await producer(session, mb, TOPIC)
        for start in range(0, N, 100):  # pipelined in batches, as a Go client would
            for i in range(start, start + 100):
                await p.send_str(frame(f"m{i}"))
            for _ in range(100):
                assert await p.receive_str(timeout=10) == "ok"
        stop.set()
        sessions = await asyncio.gather(*churners)
        assert await poller > 0
        assert sum(sessions) > CHURNERS  # they really came and went

        # a last consumer drains whatever the churners left unacked
        last = await consumer(session, mb, TOPIC, "last")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                push = await recv_push(last, timeout=0.5)
            except TimeoutError:
                break
            received.add(push["MessageData"])
            await last.send_str(push["MessageCode"])

        sent = time.monotonic()
        probe = await http_send(session, mb, TOPIC, "probe")
        while True:
            push = await recv_push(last, timeout=max(0.01, sent + 2 - time.monotonic()))
            await last.send_str(push["MessageCode"])
            if push["MessageCode"] == probe:
                break
        assert time.monotonic() - sent < 2

        if mb.settings["mq.pushType"] == 1:
            missing = {f"m{i}" for i in range(N)} - received
            assert not missing, (
                f"{len(missing)} messages never delivered, e.g. {sorted(missing)[:5]}"
            )
        # the close handshake comes back after the acks sent before it are applied
        # (docs/protocol.md "WebSocket sessions"): only then is the probe's ack counted
        await last.close()
        counts = (await api(session, mb, "/Console/CountMessage"))["data"]
        assert counts["unconsumed"] == 0, counts
        assert counts["all"] >= N + 1
        await p.close()

"""docs/protocol.md "Consumer session": point-to-point vs publish/subscribe, per-topic
pushType, in-flight window."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    api,
    consumer,
    expect_silence,
    http_send,
    producer,
    recv_many,
    recv_push,
    wait_for,
    wait_status,
)
from tests.harness import BrokerProcess

WINDOW = 5
FANOUT_TOPIC = "fan"
_topics = itertools.count()


def fresh_topic() -> str:
    return f"disp{next(_topics)}"


@pytest.fixture(scope="module")
def p2p(tmp_path_factory) -> Iterator[BrokerProcess]:
    """Global pushType 1 with a per-topic pubsub override from an application.yaml."""
    cwd = tmp_path_factory.mktemp("p2p")
    config = cwd / "custom.yaml"
    config.write_text(f"mq:\n  pushType: 1\n  topics:\n    {FANOUT_TOPIC}:\n      pushType: 2\n")
    settings = {"mq.maxInFlight": WINDOW}
    with started_broker(cwd, settings, extra_args=["--config", str(config)]) as proc:
        yield proc


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory) -> Iterator[BrokerProcess]:
    settings = {"mq.pushType": 2}
    with started_broker(tmp_path_factory.mktemp("pubsub"), settings) as proc:
        yield proc


async def _drain_acking(
    ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]], until: asyncio.Event
) -> None:
    """Receive and ack everything until ``until`` is set and the socket goes quiet."""
    while True:
        try:
            push = await recv_push(ws, timeout=0.3)
        except TimeoutError:
            if until.is_set():
                return
            continue
        into.append(push)
        await ws.send_str(push["MessageCode"])


async def test_p2p_each_message_to_exactly_one_consumer(p2p):
    topic = fresh_topic()
    n = 120
    async with aiohttp.ClientSession() as session:
        consumers = [await consumer(session, p2p, topic, f"c{i}") for i in range(3)]
        received: list[list[dict[str, Any]]] = [[] for _ in consumers]
        done = asyncio.Event()
        tasks = [
            asyncio.create_task(_drain_acking(ws, into, done))
            for ws, into in zip(consumers, received, strict=True)
        ]
        p = await producer(session, p2p, topic)
        for i in range(n):
            await p.send_str(f'{{"MessageData":"m{i}"}}')
        for _ in range(n):
            assert await p.receive_str(timeout=5) == "ok"

        async def all_consumed() -> bool:
            counts = (await api(session, p2p, "/Console/CountMessage"))["data"]
            return bool(counts["unconsumed"] == 0)

        await wait_for(all_consumed, timeout=10)
        done.set()
        await asyncio.gather(*tasks)
        codes = [m["MessageCode"] for got in received for m in got]
        assert len(codes) == n and len(set(codes)) == n  # once each, nobody twice
        assert {m["MessageData"] for got in received for m in got} == {f"m{i}" for i in range(n)}
        assert all(got for got in received), "every consumer should get a share"
        for ws in consumers:
            await ws.close()
        await p.close()


async def test_p2p_round_robin_spread(p2p):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        consumers = [await consumer(session, p2p, topic, f"rr{i}") for i in range(3)]
        for i in range(12):
            await http_send(session, p2p, topic, f"r{i}")
        counts = []
        for ws in consumers:
            got = await recv_many(ws, 4)
            counts.append(len(got))
            await expect_silence(ws, 0.2)
        assert counts == [4, 4, 4]
        for ws in consumers:
            await ws.close()


async def test_in_flight_window_is_respected(p2p):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, p2p, topic, "slow")
        codes = [await http_send(session, p2p, topic, f"w{i}") for i in range(WINDOW * 2)]
        got = await recv_many(a, WINDOW)
        assert [m["MessageCode"] for m in got] == codes[:WINDOW]
        await expect_silence(a, 0.4)  # a consumer that never acks gets at most maxInFlight
        await a.send_str(got[0]["MessageCode"])
        nxt = await recv_push(a, timeout=2)  # one ack opens one slot
        assert nxt["MessageCode"] == codes[WINDOW]
        await expect_silence(a, 0.3)
        b = await consumer(session, p2p, topic, "fresh")
        rest = await recv_many(b, WINDOW - 1)
        assert [m["MessageCode"] for m in rest] == codes[WINDOW + 1 :]
        await expect_silence(b, 0.2)
        await a.close()
        await b.close()


async def test_in_flight_window_is_per_subscriber_in_pubsub_override(p2p):
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, p2p, FANOUT_TOPIC, "a")
        b = await consumer(session, p2p, FANOUT_TOPIC, "b")
        codes = [await http_send(session, p2p, FANOUT_TOPIC, f"f{i}") for i in range(WINDOW + 2)]
        for ws in (a, b):
            assert [m["MessageCode"] for m in await recv_many(ws, WINDOW)] == codes[:WINDOW]
            await expect_silence(ws, 0.3)
        # a's ack consumes the message for everybody but frees a slot in a's window only:
        # b's copy counts against b until b acks it
        await a.send_str(codes[0])
        assert (await recv_push(a, timeout=2))["MessageCode"] == codes[WINDOW]
        await expect_silence(b, 0.3)
        await b.send_str(codes[0])
        assert (await recv_push(b, timeout=2))["MessageCode"] == codes[WINDOW]
        for code in codes[1:]:
            await a.send_str(code)
        assert (await recv_push(a, timeout=2))["MessageCode"] == codes[WINDOW + 1]
        await expect_silence(b, 0.3)
        await b.send_str(codes[1])
        assert (await recv_push(b, timeout=2))["MessageCode"] == codes[WINDOW + 1]
        await a.close()
        await b.close()


async def test_per_topic_override_fans_out_only_that_topic(p2p):
    plain = fresh_topic()
    async with aiohttp.ClientSession() as session:
        fan = [await consumer(session, p2p, FANOUT_TOPIC, f"s{i}") for i in range(2)]
        p2p_consumers = [await consumer(session, p2p, plain, f"q{i}") for i in range(2)]
        fan_code = await http_send(session, p2p, FANOUT_TOPIC, "to all")
        plain_code = await http_send(session, p2p, plain, "to one")
        for ws in fan:
            assert (await recv_push(ws))["MessageCode"] == fan_code
        got: list[str] = []
        for ws in p2p_consumers:
            with contextlib.suppress(asyncio.TimeoutError):
                got.append((await recv_push(ws, timeout=0.5))["MessageCode"])
        assert got == [plain_code]
        for ws in fan + p2p_consumers:
            await ws.close()


async def test_pubsub_every_consumer_gets_every_message(pubsub):
    topic = fresh_topic()
    n = 50
    async with aiohttp.ClientSession() as session:
        consumers = [await consumer(session, pubsub, topic, f"sub{i}") for i in range(3)]
        p = await producer(session, pubsub, topic)
        for i in range(n):
            await p.send_str(f'{{"MessageData":"b{i}"}}')
        for _ in range(n):
            assert await p.receive_str(timeout=5) == "ok"
        seen = []
        for ws in consumers:
            got = await recv_many(ws, n)
            assert [m["MessageData"] for m in got] == [f"b{i}" for i in range(n)]
            seen.append([m["MessageCode"] for m in got])
            await expect_silence(ws, 0.2)
        assert seen[0] == seen[1] == seen[2]  # all copies share one MessageCode
        assert len(set(seen[0])) == n
        for ws in consumers:
            await ws.close()
        await p.close()


async def test_pubsub_one_ack_marks_consumed(pubsub):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        consumers = [await consumer(session, pubsub, topic, f"one{i}") for i in range(3)]
        code = await http_send(session, pubsub, topic, "shared")
        for ws in consumers:
            assert (await recv_push(ws))["MessageCode"] == code
        await consumers[1].send_str(code)

        await wait_status(session, pubsub, code, 1)
        # the others' unacked copies are not redistributed when they leave
        await consumers[0].close()
        await expect_silence(consumers[2], 0.3)
        for ws in consumers[1:]:
            await ws.close()


async def test_pubsub_message_without_consumer_is_delivered_when_one_arrives(pubsub):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        code = await http_send(session, pubsub, topic, "waiting")
        c = await consumer(session, pubsub, topic)
        assert (await recv_push(c, timeout=2))["MessageCode"] == code
        await c.close()


async def test_pubsub_unacked_copy_goes_to_a_remaining_subscriber_when_its_holder_leaves(pubsub):
    """B1 in pub/sub: a message whose only holder leaves unacked is not stranded."""
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, pubsub, topic, "a")
        code = await http_send(session, pubsub, topic, "only a has it")
        assert (await recv_push(a))["MessageCode"] == code
        b = await consumer(session, pubsub, topic, "b")  # joined after the fan-out
        await expect_silence(b, 0.2)
        await a.close()
        assert (await recv_push(b, timeout=1.5))["MessageCode"] == code
        await b.close()


async def test_pubsub_copy_still_held_by_another_subscriber_is_not_resent(pubsub):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, pubsub, topic, "a")
        b = await consumer(session, pubsub, topic, "b")
        code = await http_send(session, pubsub, topic, "both have it")
        for ws in (a, b):
            assert (await recv_push(ws))["MessageCode"] == code
        await a.close()
        await expect_silence(b, 0.3)
        await b.send_str(code)
        await wait_status(session, pubsub, code, 1)
        await b.close()

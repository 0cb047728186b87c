"""docs/protocol.md "Producer session": bounded backlog (mq.messageChanBuffer): HTTP says
`queue full`, WS waits."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import aiohttp
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    api,
    api_raw,
    consumer,
    expect_silence,
    frame,
    http_send,
    producer,
    recv_push,
    wait_for,
)
from tests.harness import BrokerProcess

LIMIT = 5
_topics = itertools.count()


def fresh_topic() -> str:
    return f"backlog{next(_topics)}"


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    settings = {"mq.messageChanBuffer": LIMIT}
    with started_broker(tmp_path_factory.mktemp("backlog"), settings) as proc:
        yield proc


async def backlog(session: aiohttp.ClientSession, broker: BrokerProcess) -> int:
    counts = (await api(session, broker, "/Console/CountMessage"))["data"]
    return int(counts["unconsumed"] + counts["delay"])


async def drain(session: aiohttp.ClientSession, broker: BrokerProcess, topic: str) -> None:
    """Consume and ack everything on ``topic`` so the next test starts empty."""
    c = await consumer(session, broker, topic, "drain")
    while await backlog(session, broker):
        try:
            push = await recv_push(c, timeout=0.5)
        except TimeoutError:
            continue
        await c.send_str(push["MessageCode"])
    await c.close()


async def test_http_send_answers_queue_full(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        for i in range(LIMIT):
            await http_send(session, mb, topic, f"h{i}", delay=i % 2)  # delayed ones count too
        assert await backlog(session, mb) == LIMIT
        status, body, _ = await api_raw(
            session, mb, "/Producer/Send", messageData="over", topic=topic, delayTime=0
        )
        assert status == 200
        assert body == b'{"code":-1,"msg":"queue full"}'
        assert await backlog(session, mb) == LIMIT
        # consuming one message makes room again
        c = await consumer(session, mb, topic)
        push = await recv_push(c)
        await c.send_str(push["MessageCode"])

        async def room() -> bool:
            return await backlog(session, mb) < LIMIT

        await wait_for(room)
        await http_send(session, mb, topic, "fits again")
        await c.close()
        await drain(session, mb, topic)


async def test_ws_producer_is_back_pressured_until_room(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        for i in range(LIMIT):
            await http_send(session, mb, topic, f"f{i}")
        p = await producer(session, mb, topic)
        await p.send_str(frame("waits"))
        await expect_silence(p, 0.5)  # the reply is held while the backlog is full
        assert await backlog(session, mb) == LIMIT  # and nothing beyond the limit is stored
        c = await consumer(session, mb, topic)
        push = await recv_push(c)
        await c.send_str(push["MessageCode"])
        assert await p.receive_str(timeout=3) == "ok"  # room: the reply comes
        assert await backlog(session, mb) == LIMIT
        await c.close()
        await p.close()
        await drain(session, mb, topic)


async def test_ws_producer_filling_the_backlog_itself(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        p = await producer(session, mb, topic)
        for i in range(LIMIT + 2):
            await p.send_str(frame(f"s{i}"))
        for _ in range(LIMIT):
            assert await p.receive_str(timeout=3) == "ok"
        await expect_silence(p, 0.5)
        assert await backlog(session, mb) <= LIMIT
        c = await consumer(session, mb, topic)
        for _ in range(LIMIT + 2):  # acking drains the backlog; the held replies follow
            push = await recv_push(c, timeout=3)
            await c.send_str(push["MessageCode"])
        assert await p.receive_str(timeout=3) == "ok"
        assert await p.receive_str(timeout=3) == "ok"
        await expect_silence(p, 0.2)
        await c.close()
        await p.close()
        await drain(session, mb, topic)

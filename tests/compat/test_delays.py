"""docs/protocol.md "Delayed messages": delayed messages are held (Status 0) and delivered
on time, never early."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    api,
    consumer,
    expect_silence,
    frame,
    get_message,
    http_send,
    local_time,
    producer,
    recv_push,
    wait_status,
)
from tests.harness import BrokerProcess

_topics = itertools.count()


def fresh_topic() -> str:
    return f"delay{next(_topics)}"


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    with started_broker(tmp_path_factory.mktemp("delays")) as proc:
        yield proc


async def test_delayed_message_has_status_0_until_due_then_is_delivered(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        sent = time.monotonic()
        code = await http_send(session, mb, topic, "later", delay=1)
        stored = await get_message(session, mb, code)
        assert stored["Status"] == 0 and stored["DelayTime"] == 1
        counts = (await api(session, mb, "/Console/CountMessage"))["data"]
        assert counts["delay"] >= 1
        await expect_silence(c, 0.7)
        push = await recv_push(c, timeout=2)
        received = time.monotonic()
        assert push["MessageCode"] == code
        assert push["DelayTime"] == 1 and push["Status"] == -1
        assert received - sent >= 1.0, "delivered early"
        assert received - sent < 1.5  # precision is test_delay_accuracy_...'s job
        assert (await get_message(session, mb, code))["Status"] == -1
        await c.close()


async def test_delayed_message_waits_for_a_consumer_then_goes_at_once(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        code = await http_send(session, mb, topic, "nobody home", delay=1)

        await wait_status(session, mb, code, -1, timeout=3)
        c = await consumer(session, mb, topic)
        assert (await recv_push(c, timeout=1))["MessageCode"] == code
        await c.close()


async def _measure_lateness(broker: BrokerProcess, n: int) -> list[float]:
    """Publish ``n`` messages due in 1 or 2 s; return each one's lateness, sorted."""
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, broker, topic)
        p = await producer(session, broker, topic)
        sent: dict[str, tuple[float, int]] = {}
        for i in range(n):
            delay = 1 + i % 2
            sent[f"d{i}"] = (time.monotonic(), delay)
            await p.send_str(frame(f"d{i}", delay))
            if i % 10 == 9:  # spread the sends over ~0.5 s so arrival times vary
                await expect_silence(c, 0.05)
        for _ in range(n):
            assert await p.receive_str(timeout=5) == "ok"
        errors = []
        for _ in range(n):
            push = await recv_push(c, timeout=5)
            t_send, delay = sent[push["MessageData"]]
            errors.append(time.monotonic() - (t_send + delay))
            await c.send_str(push["MessageCode"])
        await c.close()
        await p.close()
    return sorted(errors)


async def test_delay_accuracy_never_early_p99_under_50ms(mb):
    """B2: measured from the exact send time, not the whole-second CreateTime.

    Never early, on every run. The p99 bar is about the scheduler, not about a busy test
    machine delaying this client, so the measurement may be repeated: a server that scans
    every checkSpeed seconds or rounds to whole seconds misses it on every run.
    """
    n = 100
    p99s = []
    for _ in range(3):
        errors = await _measure_lateness(mb, n)
        assert errors[0] >= 0, f"delivered {-errors[0]:.3f} s early"
        p99s.append(errors[int(0.99 * n) - 1])
        if p99s[-1] < 0.05:
            return
    raise AssertionError(f"p99 lateness over 50 ms on every run: {p99s}")


async def test_delay_over_http_and_ws_are_the_same(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        p = await producer(session, mb, topic)
        await p.send_str(frame("ws", 5))
        assert await p.receive_str(timeout=5) == "ok"
        await http_send(session, mb, topic, "http", delay=5)
        listing = await api(
            session,
            mb,
            "/Console/GetMessageList",
            status=0,
            topic=topic,
            startTime=local_time(time.time() - 60),
            endTime=local_time(time.time() + 60),
        )
        assert listing["code"] == 0
        assert sorted((m["DelayTime"], m["Status"]) for m in listing["data"]) == [(5, 0), (5, 0)]
        c = await consumer(session, mb, topic)
        await expect_silence(c, 0.3)
        await c.close()
        await p.close()

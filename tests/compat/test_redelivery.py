"""Redelivery and max delivery attempts (docs/protocol.md "Consumer session"; pushRetryTime
1 s, maxDeliveries 3)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    consumer,
    expect_silence,
    get_message,
    http_send,
    recv_push,
    wait_status,
)
from tests.harness import BrokerProcess

RETRY = 1
MAX_DELIVERIES = 3
_topics = itertools.count()


def fresh_topic() -> str:
    return f"redeliver{next(_topics)}"


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    settings = {"mq.pushRetryTime": RETRY, "mq.maxDeliveries": MAX_DELIVERIES}
    with started_broker(tmp_path_factory.mktemp("redelivery"), settings) as proc:
        yield proc


async def test_unacked_is_redelivered_with_delay_time_rewritten_then_dead(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        code = await http_send(session, mb, topic, "again")
        first = await recv_push(c)
        t1 = time.monotonic()
        assert first["MessageCode"] == code and first["DelayTime"] == 0
        create = first["CreateTime"]

        second = await recv_push(c, timeout=4)
        t2 = time.monotonic()
        assert second["MessageCode"] == code and second["Status"] == -1
        assert second["CreateTime"] == create and second["MessageData"] == "again"
        assert RETRY - 0.1 <= t2 - t1 <= RETRY + 1.5
        # DelayTime is rewritten to the seconds elapsed since CreateTime
        elapsed = int(time.time()) - create
        assert second["DelayTime"] >= 1 and abs(second["DelayTime"] - elapsed) <= 1
        assert (await get_message(session, mb, code))["DelayTime"] == second["DelayTime"]

        third = await recv_push(c, timeout=4)
        t3 = time.monotonic()
        assert third["MessageCode"] == code
        assert RETRY - 0.1 <= t3 - t2 <= RETRY + 1.5  # about one more pushRetryTime later
        assert third["DelayTime"] >= second["DelayTime"] + 1
        elapsed = int(time.time()) - create
        assert abs(third["DelayTime"] - elapsed) <= 1

        # B6: after maxDeliveries pushes without an ack the message is dead (Status 2)
        await wait_status(session, mb, code, 2, timeout=4)
        await expect_silence(c, RETRY + 0.5)  # and never pushed again
        await c.close()


async def test_acked_message_is_not_redelivered(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        code = await http_send(session, mb, topic, "done")
        assert (await recv_push(c))["MessageCode"] == code
        await c.send_str(code)
        await expect_silence(c, RETRY + 0.8)
        assert (await get_message(session, mb, code))["Status"] == 1
        await c.close()


async def test_delayed_message_redelivered_a_retry_time_after_its_due_time(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        sent = time.monotonic()
        code = await http_send(session, mb, topic, "late", delay=1)
        first = await recv_push(c, timeout=3)
        assert first["MessageCode"] == code and first["DelayTime"] == 1
        assert time.monotonic() - sent >= 1.0
        second = await recv_push(c, timeout=4)
        assert second["MessageCode"] == code
        assert time.monotonic() - sent >= 1.0 + RETRY - 0.1
        assert second["DelayTime"] >= 2
        await c.send_str(code)
        await c.close()


async def test_ack_of_a_redelivered_copy_marks_it_consumed(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        code = await http_send(session, mb, topic, "eventually")
        await recv_push(c)
        assert (await recv_push(c, timeout=4))["MessageCode"] == code
        await c.send_str(code)

        await wait_status(session, mb, code, 1)
        await expect_silence(c, RETRY + 0.8)
        await c.close()

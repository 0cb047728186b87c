"""docs/protocol.md "Consumer session": pushes on the wire, acks, redistribution on disconnect."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    PUSH_RE,
    abort,
    api,
    consumer,
    expect_silence,
    get_message,
    http_send,
    producer,
    publish,
    recv_many,
    recv_push,
    wait_status,
)
from tests.harness import BrokerProcess

_topics = itertools.count()
KEY_ORDER = [
    "MessageCode",
    "MessageData",
    "Topic",
    "CreateTime",
    "ConsumedTime",
    "DelayTime",
    "Status",
]


def fresh_topic() -> str:
    return f"cons{next(_topics)}"


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    """Default settings: pushRetryTime 300 s, so nothing here can be a redelivery."""
    with started_broker(tmp_path_factory.mktemp("consumer")) as proc:
        yield proc


async def test_push_is_exact_go_json_with_trailing_newline(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        p = await producer(session, mb, topic)
        before = int(time.time())
        await publish(p, "hello")
        after = int(time.time())
        msg = await c.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.TEXT
        raw: str = msg.data
        assert raw.endswith("}\n") and raw.count("\n") == 1
        match = PUSH_RE.fullmatch(raw)
        assert match is not None, raw
        code = match.group("code")
        create = int(match.group("create"))
        assert before <= create <= after
        assert raw == (
            f'{{"MessageCode":"{code}","MessageData":"hello","Topic":"{topic}",'
            f'"CreateTime":{create},"ConsumedTime":0,"DelayTime":0,"Status":-1}}\n'
        )
        obj = orjson.loads(raw)
        assert list(obj) == KEY_ORDER
        for key in ("CreateTime", "ConsumedTime", "DelayTime", "Status"):
            assert type(obj[key]) is int
        await c.close()
        await p.close()


async def test_push_of_http_sent_message_has_the_returned_code(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        code = await http_send(session, mb, topic, "via http")
        push = await recv_push(c)
        assert push["MessageCode"] == code
        assert push["MessageData"] == "via http"
        await c.close()


async def test_special_characters_round_trip(mb):
    topic = fresh_topic()
    data = 'quote " backslash \\ newline \n tab \t 消息 emoji \U0001f600 <b>&amp;</b>'
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        p = await producer(session, mb, topic)
        await publish(p, data)
        assert (await recv_push(c))["MessageData"] == data
        await c.close()
        await p.close()


async def test_one_object_per_frame_and_unique_codes(mb):
    topic = fresh_topic()
    n = 400
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        p = await producer(session, mb, topic)
        for i in range(n):
            await p.send_str(f'{{"MessageData":"m{i}","DelayTime":0}}\n')
        for _ in range(n):
            assert (await p.receive_str(timeout=5)) == "ok"
        pushes = await recv_many(c, n)  # each frame fully matches one A1 object
        assert [m["MessageData"] for m in pushes] == [f"m{i}" for i in range(n)]
        assert len({m["MessageCode"] for m in pushes}) == n
        await c.close()
        await p.close()


async def test_ack_sets_status_1_and_consumed_time_without_reply(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        code = await http_send(session, mb, topic, "ack me")
        push = await recv_push(c)
        assert push["MessageCode"] == code
        stored = await get_message(session, mb, code)
        assert stored["Status"] == -1 and stored["ConsumedTime"] == 0
        acked_at = time.time()
        await c.send_str(code)

        await wait_status(session, mb, code, 1)
        stored = await get_message(session, mb, code)
        assert int(acked_at) - 1 <= stored["ConsumedTime"] <= int(time.time()) + 1
        assert type(stored["ConsumedTime"]) is int
        await expect_silence(c, 0.3)  # an ack gets no reply
        await c.close()


async def test_unknown_and_empty_acks_are_ignored_connection_stays_open(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        counts = (await api(session, mb, "/Console/CountMessage"))["data"]
        for bogus in ("", "0" * 32, "not a code", "x" * 1000, " ", "\n"):
            await c.send_str(bogus)
        await c.send_bytes(b"\xff\x00garbage")
        await expect_silence(c, 0.3)
        assert (await api(session, mb, "/Console/CountMessage"))["data"] == counts
        # still a working consumer
        code = await http_send(session, mb, topic, "still here")
        assert (await recv_push(c))["MessageCode"] == code
        await c.send_str(code)

        await wait_status(session, mb, code, 1)
        await c.close()


async def test_ack_of_other_topic_message_does_not_break_session(mb):
    """Acking a code twice, or a code from another topic, changes nothing harmful."""
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        code = await http_send(session, mb, topic, "once")
        await recv_push(c)
        await c.send_str(code)
        await c.send_str(code)
        await http_send(session, mb, topic, "next")
        assert (await recv_push(c))["MessageData"] == "next"
        assert (await get_message(session, mb, code))["Status"] == 1
        await c.close()


async def test_message_without_consumer_is_delivered_when_one_arrives(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        code = await http_send(session, mb, topic, "early bird")
        stored = await get_message(session, mb, code)
        assert stored["Status"] == -1
        c = await consumer(session, mb, topic)
        push = await recv_push(c, timeout=2)  # at once, not after pushRetryTime (300 s)
        assert push["MessageCode"] == code
        await c.close()


async def test_negative_delay_stored_as_given_and_delivered_immediately(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        p = await producer(session, mb, topic)
        sent = time.monotonic()
        await publish(p, "past", delay=-30)
        push = await recv_push(c, timeout=2)
        assert time.monotonic() - sent < 1.0  # not after pushRetryTime
        assert push["DelayTime"] == -30
        stored = await get_message(session, mb, push["MessageCode"])
        assert stored["DelayTime"] == -30 and stored["Status"] == -1
        await c.close()
        await p.close()


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_unacked_messages_go_to_another_consumer_at_once(mb, how):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, mb, topic, "a")
        codes = [await http_send(session, mb, topic, f"m{i}") for i in range(3)]
        got = await recv_many(a, 3)
        assert [m["MessageCode"] for m in got] == codes
        b = await consumer(session, mb, topic, "b")
        await expect_silence(b, 0.2)  # nothing is pushed twice while a holds them
        left = time.monotonic()
        if how == "close":
            await a.close()
        else:
            abort(a)
        again = await recv_many(b, 3, timeout=2)
        assert time.monotonic() - left < 1.5
        assert sorted(m["MessageCode"] for m in again) == sorted(codes)
        await b.close()


async def test_acked_messages_are_not_redistributed(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, mb, topic, "a")
        acked = await http_send(session, mb, topic, "acked")
        kept = await http_send(session, mb, topic, "kept")
        await recv_many(a, 2)
        await a.send_str(acked)

        await wait_status(session, mb, acked, 1)
        b = await consumer(session, mb, topic, "b")
        await a.close()
        assert (await recv_push(b, timeout=2))["MessageCode"] == kept
        await expect_silence(b, 0.3)
        await b.close()


async def test_duplicate_consumer_ids_are_two_sessions(mb):
    topic = fresh_topic()
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, mb, topic, "same")
        b = await consumer(session, mb, topic, "same")
        clients = await api(session, mb, "/Console/GetClients")
        mine = [c for c in clients["consumers"] if c["Topic"] == topic]
        assert [c["ConsumerId"] for c in mine] == ["same", "same"]
        for i in range(4):
            await http_send(session, mb, topic, f"d{i}")
        got_a = await recv_many(a, 2)
        got_b = await recv_many(b, 2)
        assert {m["MessageData"] for m in got_a + got_b} == {f"d{i}" for i in range(4)}
        await a.close()
        await b.close()


async def test_default_max_message_bytes_is_1_mib(mb):
    topic = fresh_topic()
    limit = 1 << 20
    overhead = len(b'{"MessageData":""}')
    async with aiohttp.ClientSession() as session:
        p = await producer(session, mb, topic)
        await p.send_str('{"MessageData":"' + "x" * (limit - overhead) + '"}')
        assert await p.receive_str(timeout=5) == "ok"
        await p.send_str('{"MessageData":"' + "x" * (limit + 1 - overhead) + '"}')
        closing = await p.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert p.close_code == 1009


async def test_unicode_topic_from_the_url(mb):
    topic = "主题 with space"
    async with aiohttp.ClientSession() as session:
        c = await consumer(session, mb, topic)
        p = await producer(session, mb, topic)
        await publish(p, "via ws")
        first = await recv_push(c)
        assert first["Topic"] == topic
        code = await http_send(session, mb, topic, "via http")
        second = await recv_push(c)
        assert second["MessageCode"] == code and second["Topic"] == topic
        await c.close()
        await p.close()

"""TTL and dead-letter reasons against a real broker, on both WebSocket engines."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from kapokmq.client import ConsoleClient
from tests.compat.wsclient import PUSH_RE, consumer, producer
from tests.harness import BrokerProcess


async def wait_status(console: ConsoleClient, code: str, status: int) -> dict[str, object]:
    """Until the message has ``status`` (the TTL timer fires in the broker's own time)."""
    async with asyncio.timeout(10):
        while (msg := await console.get_message(code))["Status"] != status:
            await asyncio.sleep(0.05)
    return msg


@pytest.mark.parametrize("engine", ["picows", "aiohttp"])
async def test_ttl_expiry_reason_filter_and_requeue(
    broker_factory: type[BrokerProcess], engine: str
) -> None:
    broker = broker_factory(settings={"server.wsEngine": engine})
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        ws = await producer(http, broker, "orders")
        await ws.send_str('{"MessageData":"ws","DelayTime":0,"ttl":1}\n')
        assert await ws.receive_str(timeout=5) == "ok"
        await ws.send_str('{"MessageData":"bad","TTL":-1}')
        assert (await ws.receive_str(timeout=5)).startswith("error: TTL must be")
        await ws.send_str('{"MessageData":"plain","DelayTime":0}')
        assert await ws.receive_str(timeout=5) == "ok"
        over_http = await console.request(
            "/Producer/Send",
            {"topic": "orders", "messageData": "http", "delayTime": "0", "ttl": "1"},
        )
        http_code = over_http["msg"]
        listed = (await console.request("/Console/GetMessageList", {"topic": "orders"}))["data"]
        assert len(listed) == 3  # the refused frame was not stored
        full = [await console.get_message(m["MessageCode"]) for m in listed]
        ws_code = next(m["MessageCode"] for m in full if m["MessageData"] == "ws")
        assert next(m for m in full if m["MessageData"] == "plain").keys() == {
            "MessageCode", "MessageData", "Topic", "CreateTime", "ConsumedTime", "DelayTime",
            "Status",
        }  # fmt: skip
        ttl_view = await console.get_message(http_code)
        assert ttl_view["TTL"] == 1
        assert ("ExpiresAt" in ttl_view) == (ttl_view["Status"] == -1)  # only while it runs

        dead = await wait_status(console, http_code, 2)
        assert dead["DeadReason"] == "expired"
        assert [e["Event"] for e in dead["History"]] == ["dead: expired"]  # type: ignore[attr-defined]
        await wait_status(console, ws_code, 2)
        answer = await console.request(
            "/Console/GetMessageList", {"status": "2", "reason": "expired"}
        )
        expired = {m["MessageCode"]: m for m in answer["data"]}
        assert set(expired) == {http_code, ws_code}
        assert all(m["DeadReason"] == "expired" for m in expired.values())
        none = await console.request(
            "/Console/GetMessageList", {"status": "2", "reason": "max deliveries"}
        )
        assert none["data"] == []

        # a consumer gets the plain message only; the expired ones come back when re-queued
        cws = await consumer(http, broker, "orders")
        first = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))
        assert first is not None and first["data"] == '"plain"'
        await cws.send_str(first["code"])
        await console.request("/Console/Requeue", {"messageCode": http_code})
        pushed = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))  # A1: same keys, order
        assert pushed is not None and pushed["code"] == http_code and pushed["status"] == "-1"
        await cws.send_str(http_code)
        consumed = await wait_status(console, http_code, 1)
        assert [e["Event"] for e in consumed["History"]] == [  # type: ignore[attr-defined]
            "dead: expired",
            "requeued by console",
        ]
        await ws.close()
        await cws.close()


async def test_expiry_is_on_time_with_no_other_timer(broker_factory: type[BrokerProcess]) -> None:
    """A TTL is a deadline of its own: with mq.isClean 0 and no consumer (no sweep, no clean
    check to wake the broker) a message with TTL 1 is dead about 1 s later, whether it came
    over HTTP or WebSocket, was delivered now from the schedule or was re-queued."""
    broker = broker_factory(settings={"mq.isClean": "0"})

    async def dies_in_time(code: str) -> None:
        async with asyncio.timeout(3):  # TTL 1 s, ExpiresAt rounded up: 2 s at most
            while (await console.get_message(code))["Status"] != 2:
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        send = {"topic": "ttl", "messageData": "x", "delayTime": "0", "ttl": "1"}
        over_http = (await console.request("/Producer/Send", send))["msg"]
        ws = await producer(http, broker, "ttl")
        await ws.send_str('{"MessageData":"ws","TTL":1}')
        assert await ws.receive_str(timeout=5) == "ok"
        delayed = (await console.request("/Producer/Send", {**send, "delayTime": "3600"}))["msg"]
        listed = (await console.request("/Console/GetMessageList", {"topic": "ttl"}))["data"]
        over_ws = next(
            m["MessageCode"] for m in listed if m["MessageCode"] not in (over_http, delayed)
        )
        await console.request("/Console/DeliverNow", {"messageCode": delayed})
        await asyncio.gather(dies_in_time(over_http), dies_in_time(over_ws), dies_in_time(delayed))
        assert (await console.request("/Console/Requeue", {"messageCode": over_http}))["code"] == 0
        assert (await console.get_message(over_http))["Status"] == -1
        await dies_in_time(over_http)  # its TTL ran again from the requeue
        await ws.close()


async def test_a_message_requeued_while_still_queued_is_pushed_once(
    broker_factory: type[BrokerProcess],
) -> None:
    """A message that expired in its queue (no consumer) stays there until popped; the
    console's Requeue queues it again. Two consumers then connect: it is pushed once."""
    broker = broker_factory(settings={"mq.isClean": "0"})
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        send = {"topic": "twice", "messageData": "x", "delayTime": "0", "ttl": "1"}
        code = (await console.request("/Producer/Send", send))["msg"]
        await wait_status(console, code, 2)
        await console.request("/Console/Requeue", {"messageCode": code})
        sockets = [await consumer(http, broker, "twice") for _ in range(2)]

        async def frames(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
            got = []
            with contextlib.suppress(asyncio.TimeoutError):
                while True:  # until a second passes with nothing more
                    got.append(await ws.receive_str(timeout=1.5))
            return got

        pushes = [frame for got in await asyncio.gather(*map(frames, sockets)) for frame in got]
        assert len(pushes) == 1, pushes
        pushed = PUSH_RE.fullmatch(pushes[0])
        assert pushed is not None and pushed["code"] == code
        for ws in sockets:
            await ws.close()

"""Message trace against a real broker over WebSocket, and GetMessageTrace's answers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from kapokmq.client import ConsoleClient
from tests.compat.wsclient import PUSH_RE, consumer, producer
from tests.harness import BrokerProcess


async def trace_of(console: ConsoleClient, code: str) -> dict[str, Any]:
    return await console.request("/Console/GetMessageTrace", {"messageCode": code})  # type: ignore[no-any-return]


async def answer(broker: BrokerProcess, form: dict[str, str], key: str = "test") -> Any:
    """GetMessageTrace's raw answer (ConsoleClient raises on code -1)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{broker.http}/Console/GetMessageTrace", data=form, headers={"secretKey": key}
        ) as resp,
    ):
        assert resp.status == 200
        return await resp.json()


async def wait_events(console: ConsoleClient, code: str, count: int) -> list[dict[str, Any]]:
    """Until the trace holds ``count`` events (redelivery runs on the broker's clock)."""
    async with asyncio.timeout(10):
        while len(events := (await trace_of(console, code))["data"]["Events"]) < count:
            await asyncio.sleep(0.05)
    return events  # type: ignore[no-any-return]


@pytest.mark.parametrize("engine", ["picows", "aiohttp"])
async def test_publish_push_ack_redelivery_and_dead_are_traced_in_order(
    broker_factory: type[BrokerProcess], engine: str
) -> None:
    broker = broker_factory(
        settings={
            "mq.trace": 1,
            "mq.pushRetryTime": 1,
            "mq.maxDeliveries": 2,
            "server.wsEngine": engine,
        }
    )
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        ws = await producer(http, broker, "orders", pid="prod-7")
        cws = await consumer(http, broker, "orders", cid="cons-1")
        await ws.send_str('{"MessageData":"acked","DelayTime":0}\n')
        assert await ws.receive_str(timeout=5) == "ok"
        first = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))
        assert first is not None and first["data"] == '"acked"'  # A1 push frame unchanged
        await cws.send_str(first["code"])
        acked = await wait_events(console, first["code"], 3)
        assert [e["Event"] for e in acked] == ["published", "pushed", "acked"]
        assert acked[0] | {"Time": 0} == {
            "Time": 0,
            "Event": "published",
            "ProducerId": "prod-7",
            "ProducerIp": "127.0.0.1",
            "Engine": f"ws:{engine}",
        }
        assert acked[1]["ConsumerId"] == "cons-1" and acked[1]["Attempt"] == 1
        assert acked[2]["ConsumerId"] == "cons-1"
        times = [e["Time"] for e in acked]
        assert times == sorted(times)

        await ws.send_str('{"MessageData":"ignored","DelayTime":0}\n')
        assert await ws.receive_str(timeout=5) == "ok"
        pushed = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))
        assert pushed is not None
        again = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))  # not acked: redelivered
        assert again is not None and again["code"] == pushed["code"]
        events = await wait_events(console, pushed["code"], 5)  # and then dead
        assert [(e["Event"], e.get("Reason"), e.get("Attempt")) for e in events] == [
            ("published", None, None),
            ("pushed", None, 1),
            ("redelivered", "timeout", None),
            ("pushed", None, 2),
            ("dead", "max deliveries", None),
        ]

        # HTTP Send: no producer id, the client's address and engine
        sent = await console.request(
            "/Producer/Send", {"topic": "other", "messageData": "x", "delayTime": "0"}
        )
        via_http = (await trace_of(console, sent["msg"]))["data"]["Events"]
        assert via_http[0] | {"Time": 0} == {
            "Time": 0,
            "Event": "published",
            "ProducerId": "",
            "ProducerIp": "127.0.0.1",
            "Engine": "http",
        }


async def test_get_message_trace_errors(broker_factory: type[BrokerProcess]) -> None:
    traced = broker_factory(settings={"mq.trace": 1})
    untraced = broker_factory()
    async with ConsoleClient(traced.http) as console, ConsoleClient(untraced.http) as off:
        assert await answer(traced, {}) == {"code": -1, "msg": "messageCode is required"}
        assert await answer(traced, {"messageCode": "0" * 32}) == {
            "code": -1,
            "msg": "no message with that messageCode",
        }
        form = {"topic": "t", "messageData": "x", "delayTime": "0"}
        code = (await off.request("/Producer/Send", form))["msg"]
        assert await answer(untraced, {"messageCode": code}) == {
            "code": -1,
            "msg": "message trace is off (mq.trace is 0)",
        }
        sent = (await console.request("/Producer/Send", form))["msg"]
        assert (await trace_of(console, sent))["code"] == 0
        await console.request("/Console/DelMessage", {"messageCode": sent})
        gone = (await trace_of(console, sent))["data"]["Events"]
        assert [e["Event"] for e in gone] == ["published", "deleted"]  # outlives the message
        assert await answer(traced, {"messageCode": sent}, key="wrong") == {
            "code": -1,
            "msg": "Secret key matching error",
        }


async def unknown_acks(http: aiohttp.ClientSession, broker: BrokerProcess, topic: str) -> float:
    async with http.get(f"{broker.http}/metrics", headers={"secretKey": "test"}) as resp:
        text = await resp.text()
    line = f'kapokmq_acks_unknown_total{{topic="{topic}"}} '
    return sum(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


@pytest.mark.parametrize("engine", ["picows", "aiohttp"])
async def test_an_ack_from_a_consumer_of_another_topic_is_no_event_of_the_message(
    broker_factory: type[BrokerProcess], engine: str
) -> None:
    """The broker ignores it (docs/protocol.md "Consumer session"), so the trace does not
    show it as an ack: another topic's consumer cannot write into a message's history."""
    broker = broker_factory(settings={"mq.trace": 1, "server.wsEngine": engine})
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        form = {"topic": "a", "messageData": "x", "delayTime": "0"}
        code = (await console.request("/Producer/Send", form))["msg"]
        other = await consumer(http, broker, "b", cid="intruder")
        for _ in range(3):
            await other.send_str(code)
        async with asyncio.timeout(10):
            while await unknown_acks(http, broker, "b") < 3:
                await asyncio.sleep(0.05)
        own = await consumer(http, broker, "a", cid="owner")
        pushed = PUSH_RE.fullmatch(await own.receive_str(timeout=5))
        assert pushed is not None and pushed["code"] == code
        await own.send_str(code)
        events = await wait_events(console, code, 3)
        assert [(e["Event"], e.get("ConsumerId")) for e in events] == [
            ("published", None),
            ("pushed", "owner"),
            ("acked", "owner"),
        ]

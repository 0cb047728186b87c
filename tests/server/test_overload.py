"""One bad client must not hurt the others (docs/protocol.md "Slow consumers", "Wrong
keys"): against real broker processes, on both WebSocket engines."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.compat.wsclient import consumer, recv_push
from tests.harness import SECRET, BrokerProcess

ENGINES = ["picows", "aiohttp"]


async def metric(session: aiohttp.ClientSession, broker: BrokerProcess, name: str, **labels: str):
    async with session.get(f"{broker.http}/metrics", headers={"secretKey": SECRET}) as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


async def message_status(session: aiohttp.ClientSession, broker: BrokerProcess, code: str) -> int:
    async with session.post(
        f"{broker.http}/Console/GetMessage",
        data={"messageCode": code},
        headers={"secretKey": SECRET},
    ) as resp:
        status: int = (await resp.json())["data"]["Status"]
        return status


async def http_send(session: aiohttp.ClientSession, broker: BrokerProcess, topic: str) -> str:
    form = {"messageData": "m", "topic": topic, "delayTime": "0"}
    async with session.post(
        f"{broker.http}/Producer/Send", data=form, headers={"secretKey": SECRET}
    ) as resp:
        answer = await resp.json()
        assert answer["code"] == 0, answer
        code: str = answer["msg"]
        return code


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_ack_for_another_topics_message_is_ignored(broker_factory, engine):
    broker = broker_factory(settings={"server.wsEngine": engine})
    async with aiohttp.ClientSession() as session:
        a = await consumer(session, broker, "topic-a", "a")
        b = await consumer(session, broker, "topic-b", "b")
        code = await http_send(session, broker, "topic-a")
        assert (await recv_push(a))["MessageCode"] == code
        await b.send_str(code)
        deadline = time.monotonic() + 5
        while await metric(session, broker, "kapokmq_acks_unknown_total", topic="topic-b") != 1:
            assert time.monotonic() < deadline, "the ack was not counted as unknown"
            await asyncio.sleep(0.05)
        assert await message_status(session, broker, code) == -1  # still waiting
        await a.send_str(code)
        while await message_status(session, broker, code) != 1:
            assert time.monotonic() < deadline, "its own consumer's ack did not count"
            await asyncio.sleep(0.05)
        await a.close()
        await b.close()

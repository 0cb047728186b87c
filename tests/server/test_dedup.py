"""Producer dedup ids against a real broker: WebSocket and HTTP Send, on both engines."""

from __future__ import annotations

import aiohttp
import pytest

from kapokmq.client import ConsoleClient
from kapokmq.client.errors import ApiError
from tests.compat.wsclient import PUSH_RE, consumer, producer
from tests.harness import BrokerProcess


@pytest.mark.parametrize("engine", ["picows", "aiohttp"])
async def test_a_repeated_message_id_is_stored_once(
    broker_factory: type[BrokerProcess], engine: str
) -> None:
    broker = broker_factory(settings={"server.wsEngine": engine, "mq.dedupMaxIds": 2})
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        ws = await producer(http, broker, "orders")
        for data in ("first", "retry", "retry again"):  # one read or several: same answer
            await ws.send_str(f'{{"MessageData":"{data}","DelayTime":0,"MessageId":"o-1"}}\n')
        assert [await ws.receive_str(timeout=5) for _ in range(3)] == ["ok", "ok", "ok"]
        await ws.send_str('{"MessageData":"x","MessageId":"' + "i" * 129 + '"}')
        assert (await ws.receive_str(timeout=5)).startswith("error: MessageId is longer")

        form = {"topic": "orders", "messageData": "by http", "delayTime": "0", "messageId": "h-1"}
        first = (await console.request("/Producer/Send", form))["msg"]
        again = (await console.request("/Producer/Send", {**form, "messageData": "other"}))["msg"]
        assert again == first  # HTTP answers the first message's code
        other_topic = (await console.request("/Producer/Send", {**form, "topic": "else"}))["msg"]
        assert other_topic != first
        with pytest.raises(ApiError, match=r"^messageId is longer than 128 bytes$"):
            await console.request("/Producer/Send", {**form, "messageId": "é" * 65})

        listed = (await console.request("/Console/GetMessageList", {"topic": "orders"}))["data"]
        assert len(listed) == 2
        cws = await consumer(http, broker, "orders")
        got = []
        for _ in range(2):
            push = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))
            assert push is not None
            got.append(push["data"])
        assert sorted(got) == ['"by http"', '"first"']

        # three ids remembered, cap 2: the oldest ("o-1") was forgotten, counted in /metrics
        await ws.send_str('{"MessageData":"after eviction","MessageId":"o-1"}')
        assert await ws.receive_str(timeout=5) == "ok"
        assert (
            len((await console.request("/Console/GetMessageList", {"topic": "orders"}))["data"])
            == 3
        )
        async with http.get(broker.http + "/metrics", headers={"secretKey": "test"}) as resp:
            metrics = await resp.text()
        assert "kapokmq_dedup_evicted_total 2.0" in metrics
        assert "kapokmq_dedup_duplicates_total 3.0" in metrics
        await ws.close()
        await cws.close()

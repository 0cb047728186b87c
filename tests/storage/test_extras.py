"""TTLs, dead-letter histories and dedup ids survive restarts (WAL after SIGKILL, snapshot
after a clean stop), against a real broker."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from kapokmq.client import ConsoleClient
from tests.compat.wsclient import producer
from tests.harness import BrokerProcess


async def send(console: ConsoleClient, data: str, **extra: str) -> str:
    form = {"topic": "t", "messageData": data, "delayTime": "0", **extra}
    return str((await console.request("/Producer/Send", form))["msg"])


async def check(broker: BrokerProcess, first: str, long_ttl: str, expires: int, dead: str) -> None:
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        assert await send(console, "again", messageId="order-1") == first  # still remembered
        ws = await producer(http, broker, "t")
        await ws.send_str('{"MessageData":"again","MessageId":"ws-1"}')
        assert await ws.receive_str(timeout=5) == "ok"
        await ws.close()
        listed = (await console.request("/Console/GetMessageList", {"topic": "t"}))["data"]
        assert len(listed) == 4  # first, ws-1's first, the long TTL one, the dead one
        msg = await console.get_message(long_ttl)
        assert msg["TTL"] == 3600 and msg["ExpiresAt"] == expires
        gone = await console.get_message(dead)
        assert gone["Status"] == 2 and gone["DeadReason"] == "expired"
        assert [e["Event"] for e in gone["History"]] == ["dead: expired"]


async def test_extras_survive_sigkill_and_a_clean_restart(
    broker_factory: type[BrokerProcess],
) -> None:
    broker = broker_factory(settings={"mq.isPersistent": 2, "mq.fsync": "always"})
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        first = await send(console, "first", messageId="order-1")
        ws = await producer(http, broker, "t")
        await ws.send_str('{"MessageData":"ws first","MessageId":"ws-1"}')
        assert await ws.receive_str(timeout=5) == "ok"
        await ws.close()
        long_ttl = await send(console, "long", ttl="3600")
        expires = (await console.get_message(long_ttl))["ExpiresAt"]
        dead = await send(console, "short", ttl="1")
        async with asyncio.timeout(10):
            while (await console.get_message(dead))["Status"] != 2:
                await asyncio.sleep(0.05)
    broker.kill()  # the WAL alone has them
    broker.start()
    await check(broker, first, long_ttl, expires, dead)
    broker.restart()  # a clean stop writes a final snapshot: now they come from it alone
    assert re.search(r"from snapshot \d+ \(4 messages\) and 0 WAL record", broker.log())
    await check(broker, first, long_ttl, expires, dead)

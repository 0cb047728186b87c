"""Message traces survive restarts in WAL mode: from the WAL after SIGKILL, from the final
snapshot after a clean stop (docs/durability.md "Message trace")."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from kapokmq.client import ConsoleClient
from tests.compat.wsclient import PUSH_RE, consumer, frame, producer
from tests.harness import BrokerProcess


async def traces(broker: BrokerProcess, codes: list[str]) -> dict[str, list[dict[str, Any]]]:
    async with ConsoleClient(broker.http) as console:
        found = {}
        for code in codes:
            answer = await console.request("/Console/GetMessageTrace", {"messageCode": code})
            found[code] = answer["data"]["Events"]
        return found


async def test_traces_survive_sigkill_and_a_clean_restart(
    broker_factory: type[BrokerProcess],
) -> None:
    broker = broker_factory(settings={"mq.isPersistent": 2, "mq.fsync": "always", "mq.trace": 1})
    async with aiohttp.ClientSession() as http, ConsoleClient(broker.http) as console:
        ws = await producer(http, broker, "t", pid="p1")
        cws = await consumer(http, broker, "t", cid="c1")
        for data in ("a", "b"):
            await ws.send_str(frame(data))
            assert await ws.receive_str(timeout=5) == "ok"
        a = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))
        b = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))
        assert a is not None and b is not None
        await cws.send_str(a["code"])
        await cws.close()  # b goes back: consumer gone
        await ws.close()
        await console.request("/Console/DelMessage", {"messageCode": b["code"]})
        # fsync always: this answer comes once everything appended before it is on disk
        last = (
            await console.request(
                "/Producer/Send", {"topic": "t", "messageData": "c", "delayTime": "0"}
            )
        )["msg"]
    codes = [a["code"], b["code"], last]
    before = await traces(broker, codes)
    assert [e["Event"] for e in before[a["code"]]] == ["published", "pushed", "acked"]
    assert [e["Event"] for e in before[b["code"]]] == [
        "published",
        "pushed",
        "redelivered",
        "deleted",
    ]
    broker.kill()  # the WAL alone has them
    broker.start()
    assert await traces(broker, codes) == before

    async with aiohttp.ClientSession() as http:  # tracing goes on after the restart
        cws = await consumer(http, broker, "t", cid="c2")
        pushed = PUSH_RE.fullmatch(await cws.receive_str(timeout=5))
        assert pushed is not None and pushed["code"] == last
        await cws.send_str(last)
        await cws.close()
    broker.restart()  # a clean stop writes a final snapshot: now they come from it alone
    assert re.search(r"from snapshot \d+ \(\d+ messages\) and 0 WAL record", broker.log())
    after = await traces(broker, codes)
    assert after[a["code"]] == before[a["code"]]
    assert after[b["code"]] == before[b["code"]]
    assert [(e["Event"], e.get("ConsumerId")) for e in after[last][1:]] == [
        ("pushed", "c2"),
        ("acked", "c2"),
    ]

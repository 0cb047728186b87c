"""The schedule over HTTP against a real broker: list, deliver now, cancel; restarts in WAL mode."""

from __future__ import annotations

import asyncio
import time

import pytest

from kapokmq.client import ConsoleClient, Consumer
from kapokmq.client.errors import ApiError
from tests.harness import BrokerProcess

DAY = 86_400
INT64_MAX = (1 << 63) - 1


async def scheduled(console: ConsoleClient, **form: str) -> dict[str, object]:
    answer: dict[str, object] = await console.request("/Console/GetScheduled", form)
    return answer


async def test_list_deliver_now_and_cancel(broker: BrokerProcess) -> None:
    async with ConsoleClient(broker.http) as console:
        far = await console.send("orders", "far", 30 * DAY)
        soon = await console.send("orders", "soon", 3600)
        other = await console.send("audit", "other", 60)
        await console.send("orders", "now", 0)
        before = int(time.time())
        answer = await scheduled(console)
        assert answer["total"] == 3
        data = answer["data"]
        assert isinstance(data, list)
        assert [m["MessageCode"] for m in data] == [other, soon, far]
        first = data[0]
        assert list(first) == [  # the message object of GetMessageList, plus DueTime
            "MessageCode", "MessageData", "Topic", "CreateTime", "ConsumedTime", "DelayTime",
            "Status", "DueTime",
        ]  # fmt: skip
        assert first["MessageData"] == "" and first["Status"] == 0
        assert before + 59 <= first["DueTime"] <= before + 62
        assert abs(data[2]["DueTime"] - (before + 30 * DAY)) <= 2
        assert isinstance(answer["now"], int) and abs(answer["now"] - before) <= 2
        # both rounded up: the countdown of a 60 s delay starts at 60 (59 if a second
        # turned between the send and this answer), never 61
        assert first["DueTime"] - answer["now"] in (59, 60)
        paged = await scheduled(console, topic="orders", page="2", pageSize="1")
        assert paged["total"] == 2 and [m["MessageCode"] for m in paged["data"]] == [far]  # type: ignore[attr-defined]

        async with Consumer(broker.http, "orders", "c1") as consumer:
            await console.request("/Console/DeliverNow", {"messageCode": far})
            async with asyncio.timeout(10):
                got = [await consumer.receive(), await consumer.receive()]
            assert sorted(m.message_data for m in got) == ["far", "now"]
            delivered = next(m for m in got if m.message_code == far)
            assert 0 <= delivered.delay_time <= 2  # the seconds it actually waited

        with pytest.raises(ApiError, match="no delayed message"):
            await console.request("/Console/DeliverNow", {"messageCode": far})
        await console.del_message(soon)  # cancel
        answer = await scheduled(console)
        assert [m["MessageCode"] for m in answer["data"]] == [other]  # type: ignore[attr-defined]


async def test_a_blank_message_code_is_one_error_on_every_route_of_ours(
    broker: BrokerProcess,
) -> None:
    """DeliverNow, Requeue and GetMessageTrace refuse a missing or blank messageCode with
    the same text (docs/protocol.md, "HTTP API"); an unknown code keeps each its own."""
    async with ConsoleClient(broker.http) as console:
        for route in ("/Console/DeliverNow", "/Console/Requeue", "/Console/GetMessageTrace"):
            for form in ({}, {"messageCode": "  "}):
                with pytest.raises(ApiError) as refused:
                    await console.request(route, form)
                assert refused.value.response == {"code": -1, "msg": "messageCode is required"}
        with pytest.raises(ApiError, match="no delayed message with that messageCode"):
            await console.deliver_now("0" * 32)
        with pytest.raises(ApiError, match="no dead or consumed message with that messageCode"):
            await console.requeue("0" * 32)


async def test_bad_paging_is_a_clear_error(broker: BrokerProcess) -> None:
    async with ConsoleClient(broker.http) as console:
        for form in ({"pageSize": "0"}, {"page": "0"}, {"page": "x"}):
            with pytest.raises(ApiError, match="page"):
                await console.request("/Console/GetScheduled", form)


async def test_long_delays_keep_their_due_time_across_restarts_in_wal_mode(
    broker_factory: type[BrokerProcess],
) -> None:
    broker = broker_factory(settings={"mq.isPersistent": 2, "mq.fsync": "always"})
    async with ConsoleClient(broker.http) as console:
        month = await console.send("t", "in a month", 30 * DAY)
        forever = await console.send("t", "almost never", INT64_MAX - 2 * 10**9)
        hour = await console.send("t", "in an hour", 3600)
        listed = (await scheduled(console))["data"]
    broker.kill()  # SIGKILL: no snapshot at shutdown, the WAL alone has them
    broker.start()
    async with ConsoleClient(broker.http) as console:
        assert (await scheduled(console))["data"] == listed
        assert [m["MessageCode"] for m in listed] == [hour, month, forever]  # type: ignore[attr-defined]
        await console.request("/Console/DeliverNow", {"messageCode": hour})
    broker.kill()
    broker.start()
    async with ConsoleClient(broker.http) as console:
        answer = await scheduled(console)
        assert [m["MessageCode"] for m in answer["data"]] == [month, forever]  # type: ignore[attr-defined]
        assert (await console.get_message(hour))["Status"] == -1  # due now, waiting
    async with Consumer(broker.http, "t", "c1") as consumer, asyncio.timeout(10):
        msg = await consumer.receive()
        assert msg.message_code == hour

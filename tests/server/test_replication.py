"""Master-slave sync (DESIGN A7) between two real broker processes."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from tests.compat.wsclient import login
from tests.harness import SECRET, BrokerProcess

pytestmark = pytest.mark.timeout(60)


async def send(session: aiohttp.ClientSession, broker: BrokerProcess, data: str) -> str:
    form = {"messageData": data, "topic": "t", "delayTime": "0"}
    async with session.post(
        f"{broker.http}/Producer/Send", data=form, headers={"secretKey": SECRET}
    ) as resp:
        body = await resp.json()
    assert body["code"] == 0, body
    code: str = body["msg"]
    return code


async def status_on(session: aiohttp.ClientSession, broker: BrokerProcess, code: str) -> int | None:
    async with session.post(
        f"{broker.http}/Console/GetMessage",
        data={"messageCode": code},
        headers={"secretKey": SECRET},
    ) as resp:
        body = await resp.json()
    return body["data"]["Status"] if body["code"] == 0 else None


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_slave_mirrors_master_and_takes_over_when_it_dies(broker_factory):
    master = broker_factory()
    async with aiohttp.ClientSession() as session:
        before = [await send(session, master, f"before-{i}") for i in range(3)]
        slave = broker_factory(
            settings={
                "sync.isSync": 1,
                "sync.isSlave": 1,
                "sync.masterAddr": "127.0.0.1",
                "sync.masterPort": master.port,
            }
        )
        after = [await send(session, master, f"after-{i}") for i in range(2)]

        async def mirrored() -> bool:
            return all([await status_on(session, slave, c) == -1 for c in before + after])

        await until(mirrored)

        # an ack on the master shows up on the slave
        consumer = await login(session, f"{master.ws}/Consumers/Conn/t/m1")
        first = json.loads(await consumer.receive_str(timeout=5))
        await consumer.send_str(first["MessageCode"])

        async def consumed_on_slave() -> bool:
            return await status_on(session, slave, first["MessageCode"]) == 1

        await until(consumed_on_slave)
        await consumer.close()

        # while the master lives the slave does not push
        on_slave = await login(session, f"{slave.ws}/Consumers/Conn/t/s1")
        with pytest.raises(asyncio.TimeoutError):
            await on_slave.receive(timeout=0.5)

        master.kill()
        got = set()
        for _ in range(4):
            push = json.loads(await on_slave.receive_str(timeout=10))
            got.add(push["MessageCode"])
            await on_slave.send_str(push["MessageCode"])
        assert got == set(before + after) - {first["MessageCode"]}

        # the master comes back: the slave follows it again and stops pushing
        master.start()

        async def following_again() -> bool:
            count: int = slave.log().count("following master")
            return count >= 2

        await until(following_again)
        await send(session, slave, "held back")
        with pytest.raises(asyncio.TimeoutError):
            await on_slave.receive(timeout=0.5)
        await on_slave.close()


async def test_slave_with_wrong_key_gives_up_and_serves_alone(broker_factory):
    master = broker_factory(settings={"mq.secretKey": "other"})
    slave = broker_factory(
        settings={
            "sync.isSync": 1,
            "sync.isSlave": 1,
            "sync.masterAddr": "127.0.0.1",
            "sync.masterPort": master.port,
        }
    )
    async with aiohttp.ClientSession() as session:
        code = await send(session, slave, "local")
        consumer = await login(session, f"{slave.ws}/Consumers/Conn/t/c")
        push = json.loads(await consumer.receive_str(timeout=10))
        assert push["MessageCode"] == code
        await consumer.close()
    assert "refused our key" in slave.log()

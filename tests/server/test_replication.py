"""Master-slave sync (docs/protocol.md "Master-slave sync") between two real broker processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import aiohttp
import pytest

from tests.compat.wsclient import login
from tests.gossip.util import free_port
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


MASTER = {"sync.isSync": 1}


def slave_of(master: BrokerProcess) -> dict[str, object]:
    return {
        "sync.isSync": 1,
        "sync.isSlave": 1,
        "sync.masterAddr": "127.0.0.1",
        "sync.masterPort": master.port,
    }


async def test_slave_mirrors_master_and_takes_over_when_it_dies(broker_factory):
    master = broker_factory(settings=MASTER)
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
        with pytest.raises(asyncio.TimeoutError):
            await on_slave.receive(timeout=0.5)
        await on_slave.close()


async def test_slave_with_wrong_key_gives_up_and_serves_alone(broker_factory):
    master = broker_factory(settings={"mq.secretKey": "other", **MASTER})
    slave = broker_factory(
        settings={
            "sync.isSync": 1,
            "sync.isSlave": 1,
            "sync.masterAddr": "127.0.0.1",
            "sync.masterPort": master.port,
        }
    )
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "refused our key" in slave.log()))
        code = await send(session, slave, "local")
        consumer = await login(session, f"{slave.ws}/Consumers/Conn/t/c")
        push = json.loads(await consumer.receive_str(timeout=10))
        assert push["MessageCode"] == code
        await consumer.close()
    assert "refused our key" in slave.log()


async def post(
    session: aiohttp.ClientSession, broker: BrokerProcess, path: str, form: dict[str, str]
) -> dict[str, Any]:
    async with session.post(
        f"{broker.http}{path}", data=form, headers={"secretKey": SECRET}
    ) as resp:
        body: dict[str, Any] = await resp.json()
    return body


async def http_send(
    session: aiohttp.ClientSession, broker: BrokerProcess, data: str, **fields: str
) -> dict[str, Any]:
    form = {"messageData": data, "topic": "t", "delayTime": "0", **fields}
    return await post(session, broker, "/Producer/Send", form)


async def _is_delayed(session: aiohttp.ClientSession, broker: BrokerProcess, code: str) -> bool:
    return await status_on(session, broker, code) == 0


@pytest.mark.parametrize("ack", [0, 1])
async def test_a_slave_whose_master_is_down_at_start_says_it_takes_over(broker_factory, ack):
    """It takes over at once (docs/protocol.md, Master-slave sync), and its log says so,
    and whether it accepts writes: with sync.ack 1 it does not."""
    down = free_port()  # nothing listens there
    settings = {"sync.isSync": 1, "sync.isSlave": 1, "sync.masterPort": down, "sync.ack": ack}
    slave = broker_factory(settings=settings)
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        body = await http_send(session, slave, "x")
    line = next(line for line in slave.log().splitlines() if "takes over" in line)
    if ack:
        assert "pushes, refuses writes: sync.ack is 1" in line, line
        assert body == {"code": -1, "msg": f"master 127.0.0.1:{down} unreachable (sync.ack: 1)"}
    else:
        assert "pushes and accepts writes" in line, line
        assert body["code"] == 0, body


async def test_following_slave_is_read_only_and_says_so(broker_factory):
    master = broker_factory(settings=MASTER)
    slave = broker_factory(settings=slave_of(master))
    where = f"127.0.0.1:{master.port}"
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
        assert await http_send(session, slave, "x") == {"code": -1, "msg": f"slave of {where}"}
        producer = await login(session, f"{slave.ws}/Producers/Conn/t/p1")
        for _ in range(2):  # refused, and the connection is kept
            await producer.send_str('{"MessageData":"x","DelayTime":0}')
            reply = await producer.receive_str(timeout=5)
            assert reply == f"error: this broker is a slave of {where}; send to the master"
        # the console may not change what the master owns: the master's copy would undo it
        delayed = await http_send(session, master, "the master's", delayTime="3600")
        code = delayed["msg"]
        await until(lambda: _is_delayed(session, slave, code))
        for route in ("/Console/DelMessage", "/Console/DeliverNow", "/Console/Requeue"):
            answer = await post(session, slave, route, {"messageCode": code})
            assert answer == {"code": -1, "msg": f"slave of {where}"}, (route, answer)
        assert await status_on(session, slave, code) == 0
        consumer = await login(session, f"{slave.ws}/Consumers/Conn/t/c1")  # may wait
        # the master serves /Sync/Conn; the slave, and a broker without sync, do not
        plain = broker_factory()
        for broker in (slave, plain):
            async with session.get(f"{broker.http}/Sync/Conn") as resp:
                assert resp.status == 404
        # after a takeover the slave accepts writes and pushes them
        master.kill()
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        body = await http_send(session, slave, "after takeover")
        assert body["code"] == 0, body
        push = json.loads(await consumer.receive_str(timeout=10))
        assert push["MessageData"] == "after takeover"
        await producer.send_str('{"MessageData":"ws","DelayTime":0}')
        assert (await producer.receive_str(timeout=5)).startswith("ok")
        await producer.close()
        await consumer.close()


async def test_hand_back_after_the_master_returns(broker_factory):
    """A memory-only master dies; the slave takes writes and consumptions; the master comes
    back empty: it gets every message, none stranded, none consumed twice."""
    master = broker_factory(settings=MASTER)
    slave = broker_factory(settings=slave_of(master))
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
        before = [await send(session, master, f"before-{i}") for i in range(3)]

        async def mirrored() -> bool:
            return all([await status_on(session, slave, c) == -1 for c in before])

        await until(mirrored)
        master.kill()
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        during = [await send(session, slave, f"during-{i}") for i in range(4)]
        consumer = await login(session, f"{slave.ws}/Consumers/Conn/t/c1")
        consumed = set()
        for _ in range(3):  # consume three of the seven on the slave
            push = json.loads(await consumer.receive_str(timeout=10))
            await consumer.send_str(push["MessageCode"])
            consumed.add(push["MessageCode"])

        async def acked_on_slave() -> bool:
            return all([await status_on(session, slave, c) == 1 for c in consumed])

        await until(acked_on_slave)
        await consumer.close()
        master.start()  # memory only: it comes back empty

        async def handed_back() -> bool:
            return "acknowledged the hand-back" in slave.log()

        await until(handed_back, 15)
        everything = set(before) | set(during)
        for code in everything:
            expected = 1 if code in consumed else -1
            assert await status_on(session, master, code) == expected, (code, master.log())
        # the master delivers exactly the four that were not consumed, once
        on_master = await login(session, f"{master.ws}/Consumers/Conn/t/m1")
        got = set()
        for _ in range(4):
            push = json.loads(await on_master.receive_str(timeout=10))
            got.add(push["MessageCode"])
            await on_master.send_str(push["MessageCode"])
        assert got == everything - consumed
        with pytest.raises(asyncio.TimeoutError):
            await on_master.receive(timeout=0.5)
        await on_master.close()
        # and the slave is a read-only follower again
        body = await http_send(session, slave, "x")
        assert body["code"] == -1


@pytest.mark.parametrize("slave_restarted", [False, True])
async def test_a_master_back_with_its_storage_never_redelivers_what_the_slave_consumed(
    broker_factory, tmp_path, slave_restarted
):
    """The master's stored copies are older than the slave's: it holds its pushes until the
    slave has handed back, so what was consumed during the takeover never comes back; also
    when the (persistent) slave was SIGKILLed during its takeover and restarted, which
    then knows the takeover from its marker but not which messages it changed."""
    (tmp_path / "m").mkdir()
    (tmp_path / "s").mkdir()
    master = broker_factory(settings={**MASTER, "mq.isPersistent": 2}, cwd=tmp_path / "m")
    stored = {"mq.isPersistent": 2} if slave_restarted else {}
    slave = broker_factory(settings={**slave_of(master), **stored}, cwd=tmp_path / "s")
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
        before = [await send(session, master, f"before-{i}") for i in range(5)]

        async def mirrored() -> bool:
            return all([await status_on(session, slave, c) == -1 for c in before])

        await until(mirrored)
        master.kill()  # its WAL keeps the five as waiting
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        consumer = await login(session, f"{slave.ws}/Consumers/Conn/t/c1")
        for _ in before:
            push = json.loads(await consumer.receive_str(timeout=10))
            await consumer.send_str(push["MessageCode"])
        await consumer.close()

        async def consumed_on_slave() -> bool:
            return all([await status_on(session, slave, c) == 1 for c in before])

        await until(consumed_on_slave)
        during = {await send(session, slave, f"during-{i}") for i in range(2)}
        if slave_restarted:  # back before the master, so it hands back within HAND_BACK_WAIT
            slave.kill()
            slave.start()
            await until(lambda: asyncio.sleep(0, "had taken over when it stopped" in slave.log()))
        master.start()
        on_master = await login(session, f"{master.ws}/Consumers/Conn/t/m1")
        got = set()
        for _ in during:  # only what the slave stored and nobody consumed
            push = json.loads(await on_master.receive_str(timeout=15))
            got.add(push["MessageCode"])
            await on_master.send_str(push["MessageCode"])
        assert got == during, (got - during, master.log())
        with pytest.raises(asyncio.TimeoutError):
            await on_master.receive(timeout=1.0)
        await on_master.close()
        assert "holding the pushes of 5 recovered messages" in master.log()
        for code in before:
            assert await status_on(session, master, code) == 1


async def sync_login(
    session: aiohttp.ClientSession, master: BrokerProcess
) -> aiohttp.ClientWebSocketResponse:
    """A slave of ours by hand: /Sync/Conn with our extension header, logged in."""
    ws = await session.ws_connect(f"{master.ws}/Sync/Conn", headers={"KapokMQ-Sync": "dedup"})
    assert await ws.receive_str(timeout=5) == "Please enter the secret key"
    await ws.send_str(SECRET)
    assert await ws.receive_str(timeout=5) == "Secret key matching succeeded"
    return ws


async def test_the_first_slave_back_does_not_release_pushes_another_must_hand_back(
    broker_factory, tmp_path
):
    """With two slaves, the first one back with nothing to hand back (its heartbeat) does
    not end a restarted master's hold: the other one, which consumed the master's stored
    messages during its takeover, hands back a moment later, and they never come back."""
    master = broker_factory(settings={**MASTER, "mq.isPersistent": 2}, cwd=tmp_path)
    async with aiohttp.ClientSession() as session:
        before = [await send(session, master, f"before-{i}") for i in range(5)]
        records = []
        for code in before:
            async with session.post(
                f"{master.http}/Console/GetMessage",
                data={"messageCode": code},
                headers={"secretKey": SECRET},
            ) as resp:
                records.append((await resp.json())["data"])
        master.kill()  # its WAL keeps the five as waiting
        master.start()
        consumer = await login(session, f"{master.ws}/Consumers/Conn/t/c1")
        empty = await sync_login(session, master)
        await empty.send_bytes(b"hi")  # back, with nothing to hand back
        with pytest.raises(asyncio.TimeoutError):
            await consumer.receive(timeout=1.0)
        took_over = await sync_login(session, master)
        now = int(time.time())
        consumed = [{**r, "ConsumedTime": now, "Status": 1} for r in records]
        await took_over.send_str("\n".join(json.dumps(r) for r in consumed) + "\n")
        await took_over.send_str(json.dumps({"HandBack": len(consumed)}))
        while not (await took_over.receive_str(timeout=5)).startswith('{"HandBackAck"'):
            pass
        await until(lambda: asyncio.sleep(0, "master: pushing" in master.log()))
        with pytest.raises(asyncio.TimeoutError):
            await consumer.receive(timeout=0.5)
        for code in before:
            assert await status_on(session, master, code) == 1
        for ws in (consumer, empty, took_over):
            await ws.close()


async def test_a_slave_restarted_during_its_takeover_still_hands_back(broker_factory, tmp_path):
    """A persistent slave SIGKILLed while it had taken over, restarted once the master is
    back, remembers the takeover: what it accepted meanwhile is not stranded on it."""
    master = broker_factory(settings=MASTER)
    (tmp_path / "s").mkdir()
    slave = broker_factory(settings={**slave_of(master), "mq.isPersistent": 2}, cwd=tmp_path / "s")
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
        master.kill()
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        during = {await send(session, slave, f"during-{i}") for i in range(3)}
        marker = tmp_path / "s" / "data" / "MQDATA.takeover"
        assert marker.exists()
        slave.kill()
        master.start()  # memory only: it comes back empty
        slave.start()

        async def handed_back() -> bool:
            return "acknowledged the hand-back" in slave.log()

        await until(handed_back, 15)
        on_master = await login(session, f"{master.ws}/Consumers/Conn/t/m1")
        got = set()
        for _ in during:
            push = json.loads(await on_master.receive_str(timeout=10))
            got.add(push["MessageCode"])
            await on_master.send_str(push["MessageCode"])
        assert got == during
        await on_master.close()
    assert not marker.exists()


async def test_a_takeover_with_nothing_to_hand_back_is_forgotten(broker_factory, tmp_path):
    """A persistent slave that took over but changed and holds nothing forgets the
    takeover once it follows the master again (its marker goes), as after a hand-back."""
    master = broker_factory(settings=MASTER)
    (tmp_path / "s").mkdir()
    slave = broker_factory(settings={**slave_of(master), "mq.isPersistent": 2}, cwd=tmp_path / "s")
    marker = tmp_path / "s" / "data" / "MQDATA.takeover"
    await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
    master.kill()
    await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
    assert marker.exists()
    master.start()
    await until(lambda: asyncio.sleep(0, slave.log().count("following master") == 2), 15)
    await until(lambda: asyncio.sleep(0, not marker.exists()))


async def test_sync_ack_oks_only_what_the_slave_holds_and_survives_kill_9(broker_factory):
    master = broker_factory(settings={**MASTER, "sync.ack": 1})
    async with aiohttp.ClientSession() as session:
        alone = await http_send(session, master, "x")
        assert alone == {"code": -1, "msg": "no slave connected (sync.ack: 1)"}
        slave = broker_factory(settings={**slave_of(master), "sync.ack": 1})
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))

        async def accepted() -> bool:
            return bool((await http_send(session, master, "first"))["code"] == 0)

        await until(accepted)  # the master sees its slave a moment after the slave logs it
        producer = await login(session, f"{master.ws}/Producers/Conn/t/p1")
        for i in range(300):  # pipelined: all sent before the first ok is read
            await producer.send_str(f'{{"MessageData":"m{i}","DelayTime":0}}')
        oks = [await producer.receive_str(timeout=10) for _ in range(300)]
        assert all(reply.startswith("ok") for reply in oks), set(oks)
        # the ok waits for the slave: a stopped slave holds it back
        assert slave.proc is not None
        os.kill(slave.proc.pid, signal.SIGSTOP)
        try:
            await producer.send_str('{"MessageData":"held","DelayTime":0}')
            with pytest.raises(asyncio.TimeoutError):
                await producer.receive_str(timeout=1.0)
        finally:
            os.kill(slave.proc.pid, signal.SIGCONT)
        assert (await producer.receive_str(timeout=10)).startswith("ok")
        master.kill()  # right after the last ok: the slave must hold every ok'ed message
        async with session.post(
            f"{slave.http}/Console/CountMessage", headers={"secretKey": SECRET}
        ) as resp:
            counts = await resp.json()
        assert counts["data"]["all"] == 302, counts
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        # with sync.ack 1 the lone slave pushes but refuses writes (an ok needs both)
        body = await http_send(session, slave, "x")
        assert body == {
            "code": -1,
            "msg": f"master 127.0.0.1:{master.port} unreachable (sync.ack: 1)",
        }
        consumer = await login(session, f"{slave.ws}/Consumers/Conn/t/c1")
        assert json.loads(await consumer.receive_str(timeout=10))["MessageData"] == "first"
        await consumer.close()


async def console(
    session: aiohttp.ClientSession, broker: BrokerProcess, route: str, **form: str
) -> dict[str, Any]:
    return await post(session, broker, f"/Console/{route}", form)


async def test_slave_keeps_ttls_dedup_ids_and_dead_reasons_after_it_takes_over(broker_factory):
    """What sync carries beyond the message JSON (docs/protocol.md, Master-slave sync):
    after the master dies the slave still expires a TTL, answers a repeated MessageId with
    the first message's code (also one whose message was deleted before the slave came)
    and shows why a message died on the master."""
    master = broker_factory(settings={**MASTER, "mq.maxDeliveries": 1, "mq.pushRetryTime": 1})
    async with aiohttp.ClientSession() as session:
        gone = await http_send(session, master, "gone", messageId="gone-1")
        assert (await console(session, master, "DelMessage", messageCode=gone["msg"]))["code"] == 0
        slave = broker_factory(settings=slave_of(master))
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
        # dies on the master by max deliveries: pushed once, never acked
        consumer = await login(session, f"{master.ws}/Consumers/Conn/d/c1")
        dying = (await http_send(session, master, "dying", topic="d"))["msg"]
        assert json.loads(await consumer.receive_str(timeout=5))["MessageCode"] == dying

        async def dead_on_slave() -> bool:
            return await status_on(session, slave, dying) == 2

        await until(dead_on_slave)
        await consumer.close()
        first = (await http_send(session, master, "order", messageId="order-1"))["msg"]
        short = (await http_send(session, master, "short", ttl="3"))["msg"]

        async def mirrored() -> bool:
            return all([await status_on(session, slave, c) == -1 for c in (first, short)])

        await until(mirrored)
        on_master = (await console(session, master, "GetMessage", messageCode=short))["data"]
        on_slave = (await console(session, slave, "GetMessage", messageCode=short))["data"]
        assert (on_slave["TTL"], on_slave["ExpiresAt"]) == (3, on_master["ExpiresAt"])
        master.kill()
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))

        died = (await console(session, slave, "GetMessage", messageCode=dying))["data"]
        assert died["DeadReason"] == "max deliveries"
        assert [e["Event"] for e in died["History"]] == ["dead: max deliveries"]
        again = await http_send(session, slave, "order again", messageId="order-1")
        assert again == {"code": 0, "msg": first}
        assert (await http_send(session, slave, "gone again", messageId="gone-1"))["msg"] == gone[
            "msg"
        ]
        counts = (await console(session, slave, "CountMessage"))["data"]
        assert counts["all"] == 3, counts  # dying, order, short: no copy stored twice

        async def expired_on_slave() -> bool:
            return await status_on(session, slave, short) == 2

        await until(expired_on_slave)
        expired = (await console(session, slave, "GetMessage", messageCode=short))["data"]
        assert expired["DeadReason"] == "expired"
        # what is left to deliver on the slave: only the deduplicated order
        taker = await login(session, f"{slave.ws}/Consumers/Conn/t/c2")
        assert json.loads(await taker.receive_str(timeout=10))["MessageCode"] == first
        await taker.close()


async def trace_on(session: aiohttp.ClientSession, broker: BrokerProcess, code: str) -> list[Any]:
    async with session.post(
        f"{broker.http}/Console/GetMessageTrace",
        data={"messageCode": code},
        headers={"secretKey": SECRET},
    ) as resp:
        body = await resp.json()
    return body["data"]["Events"] if body["code"] == 0 else []


async def test_a_slave_traces_what_it_replicates_and_what_it_does_after_a_takeover(
    broker_factory,
):
    """docs/protocol.md "Message trace": a slave's trace of a message starts with its
    arrival (`published`, Engine `sync`); a replicated deletion is no console `deleted`."""
    master = broker_factory(settings={**MASTER, "mq.trace": 1})
    slave = broker_factory(settings={**slave_of(master), "mq.trace": 1})
    async with aiohttp.ClientSession() as session:
        kept, gone = await send(session, master, "kept"), await send(session, master, "gone")

        async def mirrored() -> bool:
            return bool(await trace_on(session, slave, kept)) and bool(
                await trace_on(session, slave, gone)
            )

        await until(mirrored)
        arrived = await trace_on(session, slave, kept)
        assert [(e["Event"], e["Engine"], e["ProducerId"]) for e in arrived] == [
            ("published", "sync", "")
        ]
        on_master = await trace_on(session, master, kept)
        assert on_master[0]["Engine"] == "http" and on_master[0]["Time"] <= arrived[0]["Time"]

        async with session.post(
            f"{master.http}/Console/DelMessage",
            data={"messageCode": gone},
            headers={"secretKey": SECRET},
        ) as resp:
            assert (await resp.json())["code"] == 0

        async def deleted_on_slave() -> bool:
            return await status_on(session, slave, gone) is None

        await until(deleted_on_slave)
        assert [e["Event"] for e in await trace_on(session, slave, gone)] == ["published"]
        assert [e["Event"] for e in await trace_on(session, master, gone)] == [
            "published",
            "deleted",
        ]

        on_slave = await login(session, f"{slave.ws}/Consumers/Conn/t/s1")
        master.kill()
        push = json.loads(await on_slave.receive_str(timeout=10))
        assert push["MessageCode"] == kept
        await on_slave.send_str(kept)

        async def acked_on_slave() -> bool:
            return len(await trace_on(session, slave, kept)) == 3

        await until(acked_on_slave)
        events = await trace_on(session, slave, kept)
        assert [(e["Event"], e.get("ConsumerId")) for e in events] == [
            ("published", None),
            ("pushed", "s1"),
            ("acked", "s1"),
        ]
        await on_slave.close()


async def health(session: aiohttp.ClientSession, broker: BrokerProcess) -> tuple[int, Any]:
    async with session.get(f"{broker.http}/healthz") as resp:
        return resp.status, await resp.json()


async def test_healthz_is_503_while_sync_ack_refuses_every_write(broker_factory):
    """With sync.ack 1 a broker without its peer refuses every write: /healthz says so
    (503, the reason under ``writes``), as it does for failing storage; a following slave,
    read-only by design, is healthy (docs/protocol.md "Master-slave sync")."""
    master = broker_factory(settings={**MASTER, "sync.ack": 1})
    async with aiohttp.ClientSession() as session:
        status, body = await health(session, master)
        assert (status, body["status"]) == (503, "degraded"), body
        assert body["writes"] == "no slave connected (sync.ack: 1)"
        assert "storage" not in body
        slave = broker_factory(settings={**slave_of(master), "sync.ack": 1})

        async def both_healthy() -> bool:
            return (await health(session, master))[0] == 200

        await until(both_healthy)
        assert await health(session, slave) == (200, {"status": "ok", "backlog": 0})
        master.kill()
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        status, body = await health(session, slave)
        assert status == 503, body
        assert body["writes"] == f"master 127.0.0.1:{master.port} unreachable (sync.ack: 1)"

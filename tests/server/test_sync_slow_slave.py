"""A sync slave that stops reading (docs/protocol.md "Master-slave sync", Slow slaves),
between real broker processes: the master cuts it instead of buffering for it without
bound, a healthy slave reading a large initial dump is not cut, and a cut slave follows
the master again without taking over."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time

import aiohttp
import pytest

from kapokmq.cluster import replication
from tests.compat.wsclient import login
from tests.harness import SECRET, BrokerProcess

pytestmark = pytest.mark.timeout(60)

BOUND = 65536  # mq.maxPendingBytes at its smallest
PAYLOAD = "x" * 1024


def rss_mb(broker: BrokerProcess) -> float:
    assert broker.proc is not None
    with open(f"/proc/{broker.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def publish_many(session: aiohttp.ClientSession, broker: BrokerProcess, count: int) -> None:
    """``count`` messages of 1 KiB over one pipelined producer connection, all answered ok."""
    producer = await login(session, f"{broker.ws}/Producers/Conn/t/p")
    frame = '{"MessageData":"' + PAYLOAD + '"}\n'
    for start in range(0, count, 1000):
        batch = min(1000, count - start)
        for _ in range(batch):
            await producer.send_str(frame)
        for _ in range(batch):
            assert await producer.receive_str(timeout=20) == "ok"
    await producer.close()


async def metric(session: aiohttp.ClientSession, broker: BrokerProcess, name: str) -> float:
    """One figure of /metrics (a rendering is served for up to a second: see shows)."""
    async with session.get(f"{broker.http}/metrics", headers={"secretKey": SECRET}) as resp:
        text = await resp.text()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def shows(
    session: aiohttp.ClientSession, broker: BrokerProcess, figures: dict[str, float]
) -> None:
    """Wait until /metrics shows these figures (it renders at most once a second)."""

    async def shown() -> bool:
        return all([await metric(session, broker, k) == v for k, v in figures.items()])

    await until(shown, 5)


async def count_on(session: aiohttp.ClientSession, broker: BrokerProcess) -> int:
    async with session.post(
        f"{broker.http}/Console/CountMessage", headers={"secretKey": SECRET}
    ) as resp:
        body = await resp.json(content_type=None)
    data = body["data"]
    return int(data["all"])


def master_settings() -> dict[str, object]:
    return {"sync.isSync": 1, "mq.maxPendingBytes": BOUND}


def slave_of(master: BrokerProcess) -> dict[str, object]:
    return {
        "sync.isSync": 1,
        "sync.isSlave": 1,
        "sync.masterAddr": "127.0.0.1",
        "sync.masterPort": master.port,
    }


async def test_a_slave_that_heartbeats_but_never_reads_is_cut(broker_factory):
    """The acceptance case: a raw sync client logs in, says `hi` every 0.5 s and reads
    nothing. Unbounded, 20,000 more messages of 1 KiB would sit in the master's memory."""
    master = broker_factory(settings=master_settings())
    alone = broker_factory(settings=master_settings())  # the same traffic, no slave
    async with aiohttp.ClientSession() as session:
        stalled = await login(session, f"{master.ws}/Sync/Conn")

        async def heartbeat() -> None:
            with contextlib.suppress(ConnectionError):  # until the master cuts it
                while True:
                    await stalled.send_str("hi")
                    await asyncio.sleep(0.5)

        beats = asyncio.create_task(heartbeat())
        try:
            # more than the kernel's socket buffers hold: the rest waits in the master
            await asyncio.gather(
                publish_many(session, master, 15000), publish_many(session, alone, 15000)
            )
            await until(lambda: asyncio.sleep(0, "slow slave" in master.log()))
            cut = [line for line in master.log().splitlines() if "slow slave" in line]
            assert len(cut) == 1 and "WARNING" in cut[0], cut
            assert "closing slave from 127.0.0.1" in cut[0]
            assert f"mq.maxPendingBytes ({BOUND})" in cut[0]
            await shows(
                session,
                master,
                {
                    "kapokmq_sync_slaves_cut_total": 1,
                    "kapokmq_sync_slaves": 0,
                    "kapokmq_sync_unread_bytes": 0,
                },
            )

            # after the cut the master holds for nobody: it grows as the master alone does
            before, before_alone = rss_mb(master), rss_mb(alone)
            await asyncio.gather(
                publish_many(session, master, 20000), publish_many(session, alone, 20000)
            )
            grown, grown_alone = rss_mb(master) - before, rss_mb(alone) - before_alone
            print(f"RSS growth over 20,000 x 1 KiB: {grown:.0f} MB, alone {grown_alone:.0f} MB")
            assert grown < grown_alone + 12  # unbounded: ~ +25 MB of sync frames
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats


async def test_a_slave_that_reads_nothing_of_its_dump_costs_the_master_little(broker_factory):
    """20,000 messages of 1 KiB stored: the initial dump is streamed as the slave reads
    it, so one that reads nothing holds about DUMP_AHEAD at the master, not the ~23 MB
    store encoded whole (and queued: twice the master's memory for messages)."""
    master = broker_factory(settings={"sync.isSync": 1})  # the default bound: never cut
    async with aiohttp.ClientSession() as session:
        await publish_many(session, master, 20000)
        before = rss_mb(master)
        stalled = await login(session, f"{master.ws}/Sync/Conn")
        try:

            async def holding() -> bool:
                return await metric(session, master, "kapokmq_sync_unread_bytes") > 0

            await until(holding)
            await asyncio.sleep(1)  # a few more looks at its (full) connection
            unread = await metric(session, master, "kapokmq_sync_unread_bytes")
            grown = rss_mb(master) - before
            print(f"unread {unread / 1e6:.1f} MB, master RSS +{grown:.1f} MB")
            limit = replication.DUMP_AHEAD + replication.DUMP_CHUNK_BYTES + 65536
            assert unread <= limit  # unbounded: ~15 MB (the kernel holds the rest)
            assert grown < 8  # unbounded: ~ +34 MB
        finally:
            await stalled.close()


async def test_a_healthy_slave_reading_a_large_dump_is_not_cut(broker_factory):
    """30,000 messages of 1 KiB: the dump is hundreds of times mq.maxPendingBytes, all
    queued at once, but the slave keeps reading it."""
    master = broker_factory(settings=master_settings())
    async with aiohttp.ClientSession() as session:
        await publish_many(session, master, 30000)
        slave = broker_factory(settings=slave_of(master))
        started = time.monotonic()

        async def holds_all() -> bool:
            return await count_on(session, slave) == 30000

        await until(holds_all, 40)
        print(f"dump of 30,000 x 1 KiB read in {time.monotonic() - started:.1f} s")
        await shows(session, master, {"kapokmq_sync_slaves": 1})
        assert await metric(session, master, "kapokmq_sync_slaves_cut_total") == 0
    assert "slow slave" not in master.log()
    assert "takes over" not in slave.log()


async def test_a_stopped_slave_is_dropped_and_follows_again_without_taking_over(broker_factory):
    """SIGSTOP: no heartbeat, nothing read. The master drops it (and what it queued for it);
    SIGCONT: the slave finds the master up, follows it again and receives the store."""
    master = broker_factory(settings=master_settings())
    slave = broker_factory(settings=slave_of(master))
    assert slave.proc is not None
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
        slave.proc.send_signal(signal.SIGSTOP)
        try:
            await publish_many(session, master, 15000)

            async def dropped() -> bool:
                return await metric(session, master, "kapokmq_sync_slaves") == 0

            await until(dropped)
            await shows(session, master, {"kapokmq_sync_unread_bytes": 0})
        finally:
            slave.proc.send_signal(signal.SIGCONT)
        assert "did not read: dropped" in master.log() or "slow slave" in master.log()

        async def holds_all() -> bool:
            return await count_on(session, slave) == 15000

        await until(holds_all, 30)
        assert "but is up: following it again (no takeover)" in slave.log()
        assert "takes over" not in slave.log()
        # still a following slave: read-only
        async with session.post(
            f"{slave.http}/Producer/Send",
            data={"messageData": "m", "topic": "t", "delayTime": "0"},
            headers={"secretKey": SECRET},
        ) as resp:
            body = await resp.json(content_type=None)
        assert body["code"] == -1 and "slave of" in body["msg"], body


async def test_a_large_hand_back_is_taken(broker_factory):
    """300 messages of 1 KiB taken over: the hand-back frames stay under what the master
    reads from a slave (they were 1,000 records each, over its 64 KiB, and the master closed
    the slave on every attempt: nothing was ever handed back)."""
    master = broker_factory(settings={"sync.isSync": 1})
    slave = broker_factory(settings=slave_of(master))
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.sleep(0, "following master" in slave.log()))
        master.kill()
        await until(lambda: asyncio.sleep(0, "takes over" in slave.log()))
        await publish_many(session, slave, 300)
        master.start()  # memory only: it comes back empty
        await until(lambda: asyncio.sleep(0, "acknowledged the hand-back" in slave.log()))
        assert await count_on(session, master) == 300

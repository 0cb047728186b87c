"""Crash tests: SIGKILL a real broker under load, restart it, count what survived.

Every message whose ``ok`` the producer received must be back (acknowledged ones as
consumed), none twice, nothing that was never sent.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import aiohttp
import pytest

from kapokmq.storage.snapshot import THROTTLE_ENV
from tests.harness import BrokerProcess
from tests.storage.clients import Consumer, Producer, console, wait_consumed

TOPIC = "crash"
pytestmark = pytest.mark.timeout(90)


async def run_until_kill(
    broker: BrokerProcess,
    before_kill: int,
    kill_when: object = None,
) -> tuple[Producer, Consumer, float]:
    """Produce and consume, stop acking, keep producing, SIGKILL mid-stream."""
    producer = Producer()
    consumer = Consumer()
    async with aiohttp.ClientSession() as session:
        ptask = asyncio.create_task(producer.run(session, broker, TOPIC))
        ctask = asyncio.create_task(consumer.run(session, broker, TOPIC))
        await producer.reached(before_kill // 2)
        await consumer.received_at_least(200)
        consumer.acking = False
        await wait_consumed(session, broker, len(consumer.acked))
        await producer.reached(producer.oks + before_kill // 2)
        if callable(kill_when):
            await kill_when(producer)
        broker.kill()
        killed_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(ptask, ctask, return_exceptions=True), 10)
    assert producer.sent > producer.oks or producer.sent >= before_kill
    return producer, consumer, killed_at


async def check_after_restart(
    broker: BrokerProcess,
    producer: Producer,
    consumer: Consumer,
    lost_ok: frozenset[str] | set[str] = frozenset(),
) -> None:
    broker.start()
    sent = {f"m-{i}" for i in range(producer.sent)}
    async with aiohttp.ClientSession() as session:
        counts = await console(session, broker, "CountMessage")
        consumed = await console(session, broker, "GetMessageList", status=1)
        consumed_codes = {m["MessageCode"] for m in consumed}
        assert consumed_codes == consumer.acked, "acknowledged messages must come back consumed"
        assert counts["consumed"] == len(consumer.acked)
        assert counts["delay"] == 0
        after = Consumer(acking=False)
        task = asyncio.create_task(after.run(session, broker, TOPIC))
        await after.received_at_least(counts["unconsumed"])
        await asyncio.sleep(0)
        assert after.duplicates == 0
        task.cancel()
    waiting = list(after.received.values())
    consumed_data = [consumer.received[c] for c in consumer.acked]
    everything = waiting + consumed_data
    assert len(everything) == len(set(everything)), "a message came back twice"
    assert set(everything) <= sent, "a message that was never sent"
    missing = producer.acknowledged() - set(everything)
    assert missing <= lost_ok, f"{len(missing)} acknowledged message(s) lost"
    assert not set(after.received) & consumer.acked


async def test_fsync_always_sigkill_loses_nothing(tmp_path: Path) -> None:
    broker = BrokerProcess(
        settings={"mq.maxInFlight": 1_000_000, "mq.isPersistent": 2, "mq.fsync": "always"},
        cwd=tmp_path,
    ).start()
    try:
        producer, consumer, _ = await run_until_kill(broker, 1000)
        await check_after_restart(broker, producer, consumer)
    finally:
        broker.cleanup()


async def test_fsync_everysec_sigkill_loses_at_most_a_second(tmp_path: Path) -> None:
    broker = BrokerProcess(
        settings={"mq.maxInFlight": 1_000_000, "mq.isPersistent": 2, "mq.fsync": "everysec"},
        cwd=tmp_path,
    ).start()
    try:
        producer, consumer, killed_at = await run_until_kill(broker, 6000)
        recent = {
            f"m-{i}" for i, t in enumerate(producer.ok_times) if t >= killed_at - 1.5
        }  # the bound the policy promises (a SIGKILL in fact loses nothing written)
        await check_after_restart(broker, producer, consumer, lost_ok=recent)
    finally:
        broker.cleanup()


async def test_sigkill_while_snapshot_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each snapshot write (header, ~1 MiB of records, END) takes 5 s: the 200 oks under
    # fsync always that must come in meanwhile can take seconds on a loaded machine, and
    # with 1 s the snapshot could be written before them (the kill then missed it)
    monkeypatch.setenv(THROTTLE_ENV, "5.0")
    broker = BrokerProcess(
        settings={
            "mq.maxInFlight": 1_000_000,
            "mq.isPersistent": 2,
            "mq.fsync": "always",
            "mq.walCompactBytes": 100_000,
        },
        cwd=tmp_path,
    ).start()
    data = tmp_path / "data"

    async def kill_mid_snapshot(producer: Producer) -> None:
        deadline = time.monotonic() + 20
        while not list(data.glob("*.snap.tmp")):
            assert time.monotonic() < deadline, broker.log()
            await asyncio.sleep(0.01)
        await producer.reached(producer.oks + 200)  # changes in the new segment too

    try:
        producer, consumer, _ = await run_until_kill(broker, 1000, kill_mid_snapshot)
        started = re.findall(r"snapshot (\d+) started", broker.log())
        assert started and f"snapshot {started[-1]} written" not in broker.log()
        assert list(data.glob("*.snap.tmp")) and len(list(data.glob("*.wal"))) == 2
        monkeypatch.delenv(THROTTLE_ENV)
        os.environ.pop(THROTTLE_ENV, None)
        await check_after_restart(broker, producer, consumer)
        assert not list(data.glob("*.snap.tmp"))
    finally:
        broker.cleanup()


async def test_clean_restart_keeps_everything_snapshot_mode(tmp_path: Path) -> None:
    broker = BrokerProcess(
        settings={"mq.maxInFlight": 1_000_000, "mq.isPersistent": 1, "mq.persistentTime": 1},
        cwd=tmp_path,
    ).start()
    try:
        producer, consumer = Producer(), Consumer()
        async with aiohttp.ClientSession() as session:
            ptask = asyncio.create_task(producer.run(session, broker, TOPIC))
            ctask = asyncio.create_task(consumer.run(session, broker, TOPIC))
            await producer.reached(1000)
            await consumer.received_at_least(200)
            consumer.acking = False
            await wait_consumed(session, broker, len(consumer.acked))
            broker.stop()  # SIGTERM: final snapshot
            await asyncio.wait_for(asyncio.gather(ptask, ctask, return_exceptions=True), 10)
        assert "shutting down" in broker.log(), broker.log()
        await check_after_restart(broker, producer, consumer)
    finally:
        broker.cleanup()


async def test_corrupt_snapshot_stops_start_up_unless_told(tmp_path: Path) -> None:
    broker = BrokerProcess(
        settings={"mq.maxInFlight": 1_000_000, "mq.isPersistent": 1}, cwd=tmp_path
    ).start()
    try:
        async with aiohttp.ClientSession() as session:
            await console(session, broker, "Ping")
            async with session.post(
                f"{broker.http}/Producer/Send",
                data={"messageData": "x", "topic": "t", "delayTime": "0"},
                headers={"secretKey": "test"},
            ) as resp:
                assert (await resp.json())["code"] == 0
        broker.stop()
        (snap,) = (tmp_path / "data").glob("*.snap")
        raw = bytearray(snap.read_bytes())
        raw[-10] ^= 0xFF
        snap.write_bytes(bytes(raw))
        with pytest.raises(RuntimeError, match="recover-skip-corrupt"):
            broker.start()
        broker.extra_args = ["--recover-skip-corrupt"]
        broker.start()
        assert "corrupt" in broker.log() or "checksum" in broker.log()
    finally:
        broker.cleanup()


@pytest.mark.parametrize(("policy", "n"), [("everysec", 10_000), ("always", 3_000)])
async def test_acked_messages_are_not_redelivered_after_sigkill(
    tmp_path: Path, policy: str, n: int
) -> None:
    """Acks are logged under the fsync policy like publishes: once the broker has read
    them, a SIGKILL does not bring the messages back."""
    broker = BrokerProcess(
        settings={"mq.maxInFlight": 1_000_000, "mq.isPersistent": 2, "mq.fsync": policy},
        cwd=tmp_path,
    ).start()
    try:
        producer, consumer = Producer(window=256), Consumer()
        async with aiohttp.ClientSession() as session:
            ptask = asyncio.create_task(producer.run(session, broker, TOPIC))
            ctask = asyncio.create_task(consumer.run(session, broker, TOPIC))
            await producer.reached(n, timeout=60)
            ptask.cancel()
            await consumer.received_at_least(producer.oks, timeout=30)
            consumer.acking = False
            acked = set(consumer.acked)
            await wait_consumed(session, broker, len(acked), timeout=30)
            broker.kill()
            await asyncio.wait_for(asyncio.gather(ptask, ctask, return_exceptions=True), 10)
        broker.start()
        async with aiohttp.ClientSession() as session:
            counts = await console(session, broker, "CountMessage")
            after = Consumer(acking=False)
            task = asyncio.create_task(after.run(session, broker, TOPIC))
            await after.received_at_least(counts["unconsumed"])
            task.cancel()
        redelivered = set(after.received) & acked
        print(f"{policy}: {len(acked)} acked, {len(redelivered)} redelivered")
        assert counts["consumed"] >= len(acked) >= n
        assert not redelivered
    finally:
        broker.cleanup()

"""A real broker whose data directory is an 8 MiB tmpfs, filled to ENOSPC (needs root).

For both fsync policies: once the disk is full no producer gets `ok` until space is freed,
`/healthz` says why (503), HTTP Send answers `{"code":-1}`, the broker resumes by itself
when space comes back, and a restart after the episode recovers every `ok`ed message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import SECRET, BrokerProcess
from tests.storage.clients import Consumer, console, login

TOPIC = "full"
DATA = "x" * 1000
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill it to ENOSPC needs root")
    where = tmp_path / "data"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Take all but about ``leave`` bytes of the file system."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        f.write(bytes(max(0, free - leave)))
    return filler


class Producer:
    """Pipelined sends ``m-0, m-1, ...``; every reply recorded in order."""

    def __init__(self, window: int = 32) -> None:
        self.window = window
        self.sent = 0
        self.replies: list[str] = []
        self.stop = False
        self._changed = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession, broker: BrokerProcess) -> None:
        ws = await login(session, f"{broker.ws}/Producers/Conn/{TOPIC}/p1")
        reader = asyncio.create_task(self._read(ws))
        try:
            while not self.stop and not reader.done():
                if self.sent - len(self.replies) >= self.window:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                await ws.send_str(f'{{"MessageData":"m-{self.sent} {DATA}","DelayTime":0}}')
                self.sent += 1
            while len(self.replies) < self.sent and not reader.done():  # the last answers
                self._changed.clear()
                await asyncio.wait_for(self._changed.wait(), 10)
        finally:
            await ws.close()
            reader.cancel()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            self.replies.append(msg.data)
            self._changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def acknowledged(self) -> set[str]:
        return {f"m-{i} {DATA}" for i, reply in enumerate(self.replies) if reply == "ok"}


async def health(
    session: aiohttp.ClientSession, broker: BrokerProcess
) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{broker.http}/healthz") as resp:
        return resp.status, await resp.json()


async def metric(session: aiohttp.ClientSession, broker: BrokerProcess, name: str) -> float:
    async with session.get(f"{broker.http}/metrics", headers={"secretKey": SECRET}) as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


async def metric_becomes(
    session: aiohttp.ClientSession, broker: BrokerProcess, name: str, value: float
) -> None:
    """/metrics serves one rendering for up to 1 s (server/metrics.py): ask until fresh."""
    deadline = asyncio.get_running_loop().time() + 3
    while (seen := await metric(session, broker, name)) != value:
        assert asyncio.get_running_loop().time() < deadline, f"{name} stays {seen}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("policy", ["always", "everysec"])
async def test_full_disk_refuses_resumes_and_keeps_every_ok(
    small_disk: Path, tmp_path: Path, policy: str
) -> None:
    broker = BrokerProcess(
        settings={
            "mq.isPersistent": 2,
            "mq.fsync": policy,
            "mq.dataDir": small_disk,
            "mq.maxInFlight": 1_000_000,
        },
        cwd=tmp_path,
    ).start()
    try:
        async with aiohttp.ClientSession() as session:
            assert (await health(session, broker))[0] == 200
            filler = fill(small_disk, leave=200_000)
            producer = Producer()
            task = asyncio.create_task(producer.run(session, broker))
            await producer.until(lambda: any(r != "ok" for r in producer.replies))
            first_error = next(i for i, r in enumerate(producer.replies) if r != "ok")
            await producer.until(lambda: len(producer.replies) >= first_error + 50)
            refused = producer.replies[first_error:]
            assert all(r.startswith("error: storage unavailable: ") for r in refused), set(refused)
            assert "No space left on device" in refused[0]

            status, body = await health(session, broker)
            assert status == 503 and body["status"] == "degraded", body
            assert "No space left on device" in body["storage"]
            await metric_becomes(session, broker, "kapokmq_storage_available", 0)
            assert await metric(session, broker, "kapokmq_storage_write_failures_total") >= 1
            async with session.post(
                f"{broker.http}/Producer/Send",
                data={"messageData": "http", "topic": TOPIC, "delayTime": "0"},
                headers={"secretKey": SECRET},
            ) as resp:
                assert resp.status == 200
                answer = await resp.json()
            assert answer["code"] == -1 and answer["msg"].startswith("storage unavailable: ")

            errors_before_freeing = len(producer.replies)
            filler.unlink()
            await producer.until(lambda: producer.replies[-1] == "ok", timeout=15)
            assert "ok" not in producer.replies[first_error:errors_before_freeing]
            resumed = len(producer.replies)
            await producer.until(lambda: len(producer.replies) >= resumed + 100)
            assert set(producer.replies[resumed:]) == {"ok"}
            producer.stop = True
            await asyncio.wait_for(task, 20)
            assert (await health(session, broker))[0] == 200
            await metric_becomes(session, broker, "kapokmq_storage_available", 1)
        log = broker.log()
        assert log.count("CRITICAL") == 1, log  # logged once per state change
        assert "storage available again" in log

        broker.kill()
        broker.start()
        assert "Start-up stopped" not in broker.log()
        async with aiohttp.ClientSession() as session:
            counts = await console(session, broker, "CountMessage")
            consumer = Consumer(acking=False)
            ctask = asyncio.create_task(consumer.run(session, broker, TOPIC))
            await consumer.received_at_least(counts["unconsumed"])
            ctask.cancel()
        got = set(consumer.received.values())
        missing = producer.acknowledged() - got
        assert not missing, f"{len(missing)} of {len(producer.acknowledged())} oks lost"
        print(
            f"{policy}: {len(producer.acknowledged())} ok, "
            f"{len(producer.replies) - len(producer.acknowledged())} refused, "
            f"{len(got)} recovered after SIGKILL"
        )
    except BaseException:
        print(broker.log()[-5000:])
        raise
    finally:
        broker.cleanup()


async def test_restart_on_a_full_disk_starts_degraded_and_delivers(
    small_disk: Path, tmp_path: Path
) -> None:
    """A restart while the disk is still full: recovery only reads, so the broker starts,
    delivers what it holds, refuses writes, and resumes once space is freed."""
    broker = BrokerProcess(
        settings={"mq.isPersistent": 2, "mq.fsync": "always", "mq.dataDir": small_disk},
        cwd=tmp_path,
    ).start()
    try:
        async with aiohttp.ClientSession() as session:
            producer = Producer()
            task = asyncio.create_task(producer.run(session, broker))
            await producer.until(lambda: len(producer.replies) >= 100)
            filler = fill(small_disk, leave=0)
            await producer.until(lambda: producer.replies[-1] != "ok")
            broker.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        broker.start()
        assert "storage unavailable" in broker.log()
        async with aiohttp.ClientSession() as session:
            status, body = await health(session, broker)
            assert status == 503 and "No space left on device" in body["storage"], body
            counts = await console(session, broker, "CountMessage")
            consumer = Consumer(acking=False)
            ctask = asyncio.create_task(consumer.run(session, broker, TOPIC))
            await consumer.received_at_least(counts["unconsumed"])
            ctask.cancel()
            assert producer.acknowledged() <= set(consumer.received.values())
            filler.unlink()
            for _ in range(100):  # the broker retries within 5 s; it has no event to await
                if (await health(session, broker))[0] == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await health(session, broker))[0] == 200
    except BaseException:
        print(broker.log()[-5000:])
        raise
    finally:
        broker.cleanup()


async def test_recovery_strategy_zero_on_a_full_disk_starts_degraded(
    small_disk: Path, tmp_path: Path
) -> None:
    """recoveryStrategy 0 with no room for the empty snapshot that obsoletes the old files:
    the old files go first, the broker starts refusing writes and resumes by itself."""
    settings: dict[str, object] = {"mq.isPersistent": 2, "mq.dataDir": small_disk}
    broker = BrokerProcess(settings=settings, cwd=tmp_path).start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await login(session, f"{broker.ws}/Producers/Conn/{TOPIC}/p1")
            await ws.send_str('{"MessageData":"old"}')
            assert await ws.receive_str(timeout=10) == "ok"
        broker.stop()
        filler = fill(small_disk, leave=0)
        broker.settings["mq.recoveryStrategy"] = 0
        broker.start()
        async with aiohttp.ClientSession() as session:
            status, body = await health(session, broker)
            assert status == 503 and "No space left on device" in body["storage"], body
            assert (await console(session, broker, "CountMessage"))["all"] == 0
            filler.unlink()
            for _ in range(100):  # the broker retries within 5 s; it has no event to await
                if (await health(session, broker))[0] == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await health(session, broker))[0] == 200
            ws = await login(session, f"{broker.ws}/Producers/Conn/{TOPIC}/p1")
            await ws.send_str('{"MessageData":"new"}')
            assert await ws.receive_str(timeout=10) == "ok"
    except BaseException:
        print(broker.log()[-5000:])
        raise
    finally:
        broker.cleanup()

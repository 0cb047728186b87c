"""A broker started on a read-only data directory (a tmpfs remounted `ro`; needs root).

It recovers what is there (that only reads), delivers it, refuses writes with
`error: storage unavailable: Read-only file system …`, `/healthz` says 503, and once the
file system is writable again it resumes by itself: no restart (docs/durability.md "When the
disk fails").
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.harness import SECRET, BrokerProcess
from tests.storage.clients import login

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting and remounting a tmpfs read-only needs root")
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


def remount(disk: Path, how: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{how}", str(disk)], check=True)


async def send(ws: aiohttp.ClientWebSocketResponse, data: str) -> str:
    await ws.send_str(orjson.dumps({"MessageData": data}).decode())
    return await ws.receive_str(timeout=10)


async def healthz(
    session: aiohttp.ClientSession, broker: BrokerProcess
) -> tuple[int, dict[str, str]]:
    async with session.get(f"{broker.http}/healthz") as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("mode", [1, 2])
async def test_a_read_only_data_dir_starts_degraded_and_resumes_when_writable(
    small_disk: Path, tmp_path: Path, mode: int
) -> None:
    settings = {"mq.isPersistent": mode, "mq.fsync": "always", "mq.dataDir": small_disk}
    broker = BrokerProcess(settings=settings, cwd=tmp_path).start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await login(session, f"{broker.ws}/Producers/Conn/ro/p")
            assert await send(ws, "stored before") == "ok"
        broker.stop()
        remount(small_disk, "ro")
        broker.start()
        async with aiohttp.ClientSession() as session:
            status, body = await healthz(session, broker)
            assert status == 503 and "Read-only file system" in body["storage"], body
            consumer = await login(session, f"{broker.ws}/Consumers/Conn/ro/c")
            pushed = orjson.loads(await consumer.receive_str(timeout=10))
            assert pushed["MessageData"] == "stored before"
            ws = await login(session, f"{broker.ws}/Producers/Conn/ro/p")
            reply = await send(ws, "refused")
            assert reply.startswith("error: storage unavailable: Read-only file system"), reply
            async with session.post(
                f"{broker.http}/Producer/Send",
                data={"messageData": "refused", "topic": "ro", "delayTime": "0"},
                headers={"secretKey": SECRET},
            ) as resp:
                answer = await resp.json()
            assert answer["code"] == -1, answer
            assert answer["msg"].startswith("storage unavailable: Read-only"), answer

            remount(small_disk, "rw")
            for _ in range(100):  # the retry runs within 0.2-5 s; no event crosses over
                if (await healthz(session, broker))[0] == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await healthz(session, broker))[0] == 200
            assert await send(ws, "after") == "ok"
        assert (small_disk / "MQDATA.lock").exists()
    except BaseException:
        print(broker.log()[-4000:])
        raise
    finally:
        broker.cleanup()

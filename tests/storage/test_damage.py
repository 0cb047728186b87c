"""One flipped byte in a real broker's WAL or snapshot of 20,000 messages: start-up is
refused naming the file and the offset; with --recover-skip-corrupt only the damaged
frame (WAL, at most 100 records) or chunk (snapshot, at most 500 records or 64 KiB) is
lost, and a copy of the damaged file is kept beside it."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import aiohttp
import pytest

from tests.harness import BrokerProcess
from tests.storage.clients import Producer, console

TOTAL = 20_000
pytestmark = pytest.mark.timeout(120)


async def produce(broker: BrokerProcess, n: int) -> None:
    producer = Producer(window=64)
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(producer.run(session, broker, "damage"))
        await producer.reached(n, timeout=60)
        task.cancel()


async def stored(broker: BrokerProcess) -> int:
    async with aiohttp.ClientSession() as session:
        counts = await console(session, broker, "CountMessage")
    return int(counts["all"])


def damaged_start(broker: BrokerProcess, data: Path, saved: Path, name: str, at: float) -> int:
    """Restore the data directory, flip one byte at fraction ``at`` of file ``name`` (past
    its header) and check the refused start; returns the offset flipped."""
    shutil.rmtree(data)
    shutil.copytree(saved, data)
    path = data / name
    raw = bytearray(path.read_bytes())
    where = 32 + int((len(raw) - 32) * at)
    raw[where] ^= 0x5A
    path.write_bytes(bytes(raw))
    broker.extra_args = []
    with pytest.raises(RuntimeError) as info:
        broker.start()
    log = str(info.value)
    assert name in log and "Start-up stopped" in log, log
    offset = int(re.search(r"byte offset (\d+)", log).group(1))  # type: ignore[union-attr]
    assert where - 100_000 <= offset <= where  # the start of the frame holding the byte
    assert re.search(r"\d+ valid frame\(s\) follow", log)
    return where


@pytest.mark.parametrize("kind", ["wal", "snap"])
async def test_one_flipped_byte_costs_one_frame(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "data"
    broker = BrokerProcess(
        settings={"mq.isPersistent": 2, "mq.fsync": "everysec", "mq.maxInFlight": 1_000_000},
        cwd=tmp_path,
    ).start()
    try:
        await produce(broker, TOTAL)
        total = await stored(broker)
        assert total >= TOTAL
        if kind == "wal":
            broker.kill()  # the WAL stays as written, no final snapshot
        else:
            broker.stop()  # SIGTERM: everything in one final snapshot
        (name,) = [p.name for p in data.glob(f"*.{kind}")]
        saved = tmp_path / "saved"
        shutil.copytree(data, saved)
        need = 0.995 if kind == "wal" else 0.95
        for at in (0.1, 0.5, 0.9) if kind == "wal" else (0.2, 0.7):
            damaged_start(broker, data, saved, name, at)
            broker.extra_args = ["--recover-skip-corrupt"]
            broker.start()
            kept = await stored(broker)
            copies = list(data.glob(f"{name}.corrupt-*"))
            log = broker.log()
            broker.kill()
            assert kept >= need * total, f"{kept} of {total} kept with a flip at {at}"
            assert len(copies) == 1 and copies[0].read_bytes() != (saved / name).read_bytes()
            assert "skipped (--recover-skip-corrupt" in log
            print(f"{kind} flip at {at:.0%}: kept {kept} of {total} ({kept / total:.2%})")
    finally:
        broker.cleanup()

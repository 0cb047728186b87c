"""``WalWriter.append_many`` writes exactly the records ``append`` would, at every msgpack
array-header size (1, 3 and 5 bytes) and with text msgpack cannot encode."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kapokmq.storage.format import HEADER_SIZE, Record, Tail, new_unpacker, read_frames, sanitized
from kapokmq.storage.layout import DataDir
from kapokmq.storage.wal import WalWriter


def records(n: int, start: int = 0) -> list[Record]:
    return [
        (1, f"{i:032x}", "topic", "x" * (i % 7), i, 0, 0, -1, 1.5, 0)
        for i in range(start, start + n)
    ]


async def written(tmp_path: Path, batches: list[list[Record]], many: bool) -> list[Any]:
    tmp_path.mkdir()
    datadir = DataDir(tmp_path, "kapokmq")
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "no", executor)
        for batch in batches:
            if many:
                wal.append_many(batch)
            else:
                for record in batch:
                    wal.append(record)
            wal.flush()  # one frame per batch, like one read's worth
        await wal.close()
    path = datadir.wal_path(1)
    size = path.stat().st_size
    unpacker = new_unpacker()
    with path.open("rb") as f:
        f.seek(HEADER_SIZE)
        tail = Tail(HEADER_SIZE, size)
        counts = []
        for count, payload in read_frames(f, size, tail):
            counts.append(count)
            unpacker.feed(payload)
    assert tail.clean and counts == [len(b) for b in batches]
    return list(unpacker)


@pytest.mark.parametrize("size", [1, 15, 16, 65535, 65536])
async def test_append_many_equals_appends(tmp_path: Path, size: int) -> None:
    batches = [records(size), records(3, size)]
    one_by_one = await written(tmp_path / "a", batches, many=False)
    batched = await written(tmp_path / "b", batches, many=True)
    assert batched == one_by_one
    assert len(batched) == size + 3 and batched[-1][1] == f"{size + 2:032x}"


async def test_append_many_with_a_lone_surrogate(tmp_path: Path) -> None:
    bad = (1, "f" * 32, "topic", "a\ud800b", 0, 0, 0, -1, 0.0, 0)
    batch = [*records(2), bad, *records(2, 2)]
    got = await written(tmp_path / "w", [batch], many=True)
    assert got[2][3] == sanitized(bad)[3] and got[2][3].startswith("a\ufffd")
    assert [r[1] for r in got] == [r[1] for r in batch]

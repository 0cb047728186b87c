"""``WalWriter.append_many`` writes exactly the records ``append`` would, at every msgpack
array-header size (1, 3 and 5 bytes) and with text msgpack cannot encode, in frames of
at most ``WAL_FRAME_RECORDS`` records."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kapokmq.storage.files import Buffer, FileOps
from kapokmq.storage.format import (
    HEADER_SIZE,
    VERSION,
    WAL_FRAME_RECORDS,
    Record,
    Scan,
    as_record,
    read_frames,
    sanitized,
)
from kapokmq.storage.layout import DataDir
from kapokmq.storage.wal import SEAL_BYTES, WalError, WalWriter


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
    scan = Scan()
    frames = list(read_frames(datadir.wal_path(1).read_bytes(), HEADER_SIZE, VERSION, scan))
    assert not scan.damages
    # one frame per WAL_FRAME_RECORDS records of a batch, the rest in a last one
    expected = []
    for batch in batches:
        full, rest = divmod(len(batch), WAL_FRAME_RECORDS)
        expected += [WAL_FRAME_RECORDS] * full + ([rest] if rest else [])
    assert [len(f) for f in frames] == expected
    return [as_record(record) for frame in frames for record in frame]


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


async def test_big_records_split_frames_and_writes(tmp_path: Path) -> None:
    """Frames of more than one record stay under SEAL_BYTES; a flush of more than
    FLUSH_AT bytes is several writes, every record once and in order."""
    big = [(1, f"{i:032x}", "topic", "x" * 300_000, i, 0, 0, -1, 1.5, 0) for i in range(20)]
    batch = [*records(150), *big, *records(5, 150)]
    datadir = DataDir(tmp_path, "kapokmq")
    writes: list[int] = []
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "no", executor)
        real = wal._write

        def counted(fd: int, parts: Sequence[Buffer]) -> None:
            writes.append(sum(map(len, parts)))
            real(fd, parts)

        wal._write = counted
        wal.append_many(batch)
        wal.flush()
        await wal.close()
    scan = Scan()
    data = datadir.wal_path(1).read_bytes()
    frames = [[as_record(r) for r in f] for f in read_frames(data, HEADER_SIZE, VERSION, scan)]
    assert not scan.damages
    assert [r[1] for f in frames for r in f] == [r[1] for r in batch]
    assert max(len(f) for f in frames) == WAL_FRAME_RECORDS
    for frame in frames:
        assert len(frame) == 1 or sum(len(msgpack.packb(r)) for r in frame) <= SEAL_BYTES
    assert len(frames) >= 2 + 20 // 3  # at most three big ones fit in a frame
    assert len(writes) == 2 and sum(writes) == len(data) - HEADER_SIZE


class SecondWriteFails(FileOps):
    """The real calls, except that the second data write (after the header) raises EIO
    once half of it is on disk."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, fd: int, parts: Sequence[Buffer]) -> None:
        self.writes += 1
        if self.writes == 3:  # header, first step of the flush, then this one
            super().write(fd, [b"".join(bytes(p) for p in parts)[: sum(map(len, parts)) // 2]])
            raise OSError(errno.EIO, "Input/output error")
        super().write(fd, parts)


async def test_a_failed_step_of_a_big_flush_cuts_back_to_a_frame(tmp_path: Path) -> None:
    """A flush written in FLUSH_AT steps whose second write fails: the segment ends at
    the last whole frame of the first, waiting tickets fail, the writer stops."""
    big = [(1, f"{i:032x}", "topic", "x" * 300_000, i, 0, 0, -1, 1.5, 0) for i in range(20)]
    datadir = DataDir(tmp_path, "kapokmq", SecondWriteFails())
    failures: list[WalError] = []
    with ThreadPoolExecutor(1) as executor:
        loop = asyncio.get_running_loop()
        wal = WalWriter(loop, datadir, 1, "always", executor, failures.append)
        wal.append_many(big)
        ticket = wal.ticket()
        assert ticket is not None
        wal.flush()
        with pytest.raises(WalError, match="Input/output error"):
            await asyncio.wait_for(ticket, 5)
        assert len(failures) == 1 and wal.error is not None
        wal.append(big[0])  # dropped: the manager rebuilds from memory
        wal.flush()
        await wal.close()
    scan = Scan()
    data = datadir.wal_path(1).read_bytes()
    assert len(data) == wal.size
    frames = list(read_frames(data, HEADER_SIZE, VERSION, scan))
    assert not scan.damages
    written = [as_record(r)[1] for f in frames for r in f]
    assert 0 < len(written) < len(big) and written == [r[1] for r in big[: len(written)]]

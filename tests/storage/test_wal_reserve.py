"""The WAL allocates disk blocks past a segment's end ahead of its appends (fallocate,
size kept) and gives them back when the segment is retired or closed; a reservation
that fails changes nothing else."""

from __future__ import annotations

import asyncio
import errno
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kapokmq.storage.files import FileOps
from kapokmq.storage.format import HEADER_SIZE, VERSION, Record, Scan, as_record, read_frames
from kapokmq.storage.layout import DataDir
from kapokmq.storage.wal import RESERVE_AHEAD, WalWriter


def batch(n: int, start: int) -> list[Record]:
    return [(2, f"{i:032x}", 2, i, 0, 1) for i in range(start, start + n)]


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def can_reserve(where: Path) -> bool:
    probe = where / "probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT)
    try:
        FileOps().reserve(fd, 0, 1 << 16)
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()
    return True


async def test_blocks_are_reserved_ahead_and_given_back(tmp_path: Path) -> None:
    if not can_reserve(tmp_path):
        pytest.skip("this file system has no fallocate with FALLOC_FL_KEEP_SIZE")
    datadir = DataDir(tmp_path, "kapokmq")
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "no", executor)
        wal.append_many(batch(100, 0))
        wal.flush()
        assert wal._reserving is not None
        await wal._reserving
        first = datadir.wal_path(1)
        assert os.stat(first).st_size == wal.size  # the size is kept
        assert allocated(first) >= wal.size + RESERVE_AHEAD // 2
        wal.rotate(2)  # the retired segment gives its reservation back
        assert allocated(first) < wal.size + (64 << 10)
        wal.append_many(batch(100, 100))
        wal.flush()
        await wal.close()  # so does the closed one
        second = datadir.wal_path(2)
        assert os.stat(second).st_size == wal.size
        assert allocated(second) < wal.size + (64 << 10)
    codes = []
    for path in (first, second):
        scan = Scan()
        frames = read_frames(path.read_bytes(), HEADER_SIZE, VERSION, scan)
        codes += [as_record(r)[1] for f in frames for r in f]
        assert not scan.damages
    assert codes == [f"{i:032x}" for i in range(200)]


class NoSpaceToReserve(FileOps):
    def __init__(self) -> None:
        self.reservations = 0

    def reserve(self, fd: int, offset: int, length: int) -> None:
        self.reservations += 1
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_failed_reservation_only_stops_reserving(tmp_path: Path) -> None:
    files = NoSpaceToReserve()
    datadir = DataDir(tmp_path, "kapokmq", files)
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "always", executor)
        for start in range(0, 60_000, 20_000):  # ~3 MB: past a reservation's renewal
            wal.append_many(batch(20_000, start))
            ticket = wal.ticket()
            assert ticket is not None
            wal.flush()
            await asyncio.wait_for(ticket, 30)  # fsynced as ever
        assert wal.error is None and files.reservations == 1  # not tried again
        await wal.close()
    scan = Scan()
    data = datadir.wal_path(1).read_bytes()
    frames = list(read_frames(data, HEADER_SIZE, VERSION, scan))
    assert not scan.damages and sum(map(len, frames)) == 60_000

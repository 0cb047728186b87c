"""The WAL's fdatasync as a Linux AIO request the loop submits and reaps (files.LoopSync):
it makes what was written durable like fdatasync(2), a refused request falls back to the
WAL thread, and a file layer that replaces ``datasync`` keeps getting it called."""

from __future__ import annotations

import asyncio
import errno
import os
import select
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import pytest

from kapokmq.storage.files import FileOps, LoopSync
from kapokmq.storage.format import HEADER_SIZE, VERSION, Record, Scan, as_record, read_frames
from kapokmq.storage.layout import DataDir
from kapokmq.storage.wal import WalWriter


def batch(n: int, start: int) -> list[Record]:
    return [(2, f"{i:032x}", 2, i, 0, 1) for i in range(start, start + n)]


def real_loop_sync() -> LoopSync:
    syncer = LoopSync.open()
    if syncer is None:
        pytest.skip("no Linux AIO here: the WAL syncs in its thread")
    return syncer


def backend(uring: bool) -> LoopSync:
    try:
        syncer = LoopSync(uring)
    except Exception:
        pytest.skip(f"no {'io_uring' if uring else 'Linux AIO'} here")
    if syncer.uring != uring:
        syncer.close()
        pytest.skip("caio without io_uring")
    return syncer


async def readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, ready.set_result, None)
    try:
        await asyncio.wait_for(ready, 10)
    finally:
        loop.remove_reader(fd)


@pytest.mark.parametrize("uring", [True, False], ids=["io_uring", "linux_aio"])
async def test_a_request_ends_on_the_eventfd_and_a_bad_one_fails(
    tmp_path: Path, uring: bool
) -> None:
    syncer = backend(uring)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        assert syncer.results() == []  # nothing done yet: no blocking, no result
        os.write(fd, b"x" * 4096)
        syncer.submit(fd)
        await readable(syncer.fileno())
        assert syncer.results() == [0]
        if uring:  # io_uring takes it and ends it with the error
            syncer.submit(fd + 1000)
            await readable(syncer.fileno())
            assert syncer.results() == [-errno.EBADF]
        else:  # Linux AIO refuses it at once, nothing started
            with pytest.raises(OSError, match="EBADF"):
                syncer.submit(fd + 1000)
            assert syncer.results() == []
    finally:
        os.close(fd)
        syncer.close()


def test_io_uring_first_and_linux_aio_where_it_is_refused() -> None:
    backend(True).close()  # (skips without io_uring)
    syncer = real_loop_sync()
    assert syncer.uring
    syncer.close()
    refused = SystemError("io_uring_setup: Operation not permitted")  # e.g. a seccomp filter
    with mock.patch("caio.linux_uring.Context", side_effect=refused):
        syncer = real_loop_sync()
    assert not syncer.uring
    syncer.close()


async def test_always_syncs_on_the_loop_and_the_records_read_back(tmp_path: Path) -> None:
    real_loop_sync().close()
    datadir = DataDir(tmp_path, "kapokmq")
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "always", executor)
        assert wal._loop_sync is not None
        for start in range(0, 300, 100):
            wal.append_many(batch(100, start))
            await wal.barrier()
        # the first fsync (a new file: the directory too) is the thread's, the rest AIO
        assert wal.syncs == 3 and wal.synced == wal.appended == 300
        await wal.close()
        assert wal._loop_sync is None
    scan = Scan()
    frames = read_frames(datadir.wal_path(1).read_bytes(), HEADER_SIZE, VERSION, scan)
    assert [as_record(r)[1] for f in frames for r in f] == [f"{i:032x}" for i in range(300)]
    assert not scan.damages


class RefusedLoopSync(LoopSync):
    """A kernel that refuses the request (a file system without fsync for AIO: EINVAL)."""

    def submit(self, fd: int) -> None:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


class RefusingFiles(FileOps):
    def loop_sync(self) -> LoopSync | None:
        syncer = RefusedLoopSync.open()
        if syncer is None:
            pytest.skip("no Linux AIO here: the WAL syncs in its thread")
        return syncer


async def test_a_refused_request_falls_back_to_the_thread(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path, "kapokmq", RefusingFiles())
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "always", executor)
        wal.append_many(batch(10, 0))
        await wal.barrier()  # the thread's (a new file)
        wal.append_many(batch(10, 10))
        await wal.barrier()  # refused on the loop: the thread's too
        assert wal._loop_sync is None and wal.error is None
        assert wal.synced == 20
        await wal.close()


class CountedFsync(FileOps):
    def __init__(self) -> None:
        self.calls = 0

    def datasync(self, fd: int) -> None:
        self.calls += 1
        super().datasync(fd)


async def test_a_file_layer_that_replaces_datasync_gets_it_called(tmp_path: Path) -> None:
    files = CountedFsync()
    assert files.loop_sync() is None
    datadir = DataDir(tmp_path, "kapokmq", files)
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "always", executor)
        for start in (0, 10):
            wal.append_many(batch(10, start))
            await wal.barrier()
        assert files.calls == 2
        await wal.close()


async def test_a_flush_reaps_an_ended_sync_and_starts_the_next(tmp_path: Path) -> None:
    """The loop was busy when the request ended (no poll since): the next flush settles
    it, tells on_settled at once and starts the fsync of what it wrote."""
    real_loop_sync().close()
    settled: list[int] = []
    datadir = DataDir(tmp_path, "kapokmq")
    with ThreadPoolExecutor(1) as executor:
        wal = WalWriter(asyncio.get_running_loop(), datadir, 1, "always", executor)
        wal.on_settled = lambda: settled.append(wal.synced)
        wal.append_many(batch(10, 0))
        await wal.barrier()  # the thread's (a new file)
        wal.append_many(batch(10, 10))
        first = wal.ticket()
        wal.flush()  # written: the loop's request starts
        assert first is not None and wal._loop_sync is not None and wal._loop_job is not None
        # block the loop until the request has ended, so its eventfd callback cannot run
        readable, _, _ = select.select([wal._loop_sync.fileno()], [], [], 10)
        assert readable and not first.done()
        wal.append_many(batch(10, 20))
        second = wal.ticket()
        wal.flush()
        assert first.done() and settled == [10, 20]
        assert second is not None and not second.done() and wal._loop_job is not None
        await second
        assert settled == [10, 20, 30]
        await wal.close()

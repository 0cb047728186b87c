"""The write-ahead log writer: append on the loop, write once per iteration, fsync in a thread.

Records are msgpack-encoded into a buffer as the broker reports changes; one callback per
event-loop iteration writes the buffer as one CRC-checked frame (see ``format``). fsync
runs in a dedicated thread so the loop never waits for the disk:

* ``always``   — ``barrier()`` resolves once every record appended before the call is on
  disk. Group commit: while one fsync runs, new frames pile up and the next fsync covers
  all of them, so many producers share one disk flush.
* ``everysec`` — an fsync every second (a SIGKILL loses nothing already written; a power
  failure at most about the last second).
* ``no``       — the OS decides when to write back; fsync only at rotation and close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import msgpack

from kapokmq.storage.format import KIND_WAL, Record, encode_frame, encode_header, sanitized
from kapokmq.storage.layout import DataDir, StorageError, datasync, fsync_dir, write_all

log = logging.getLogger(__name__)

FLUSH_AT = 4 << 20  # write at once when a buffer grows past this within one iteration


class WalWriter:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        datadir: DataDir,
        seq: int,
        policy: str,
        executor: Executor,
    ) -> None:
        self.loop = loop
        self.datadir = datadir
        self.policy = policy
        self.executor = executor
        self.seq = seq
        self._buf = bytearray()
        self._count = 0
        self._pack: Callable[[object], bytes] = msgpack.Packer().pack
        self._flush_scheduled = False
        self.appended = 0  # records appended since start
        self.written = 0  # records handed to the OS
        self.synced = 0  # records known to be on disk
        self.bytes_written = 0  # since the last rotation
        self.frames = 0
        self.syncs = 0
        self.sync_seconds = 0.0
        self.max_sync_seconds = 0.0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._open_future: asyncio.Future[None] | None = None  # for the unwritten buffer
        self._syncing = False
        self._retired: list[int] = []
        self._dir_dirty = False
        self.error: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.fd = self._create(seq)
        if policy == "everysec":
            self._timer = loop.call_later(1.0, self._every_second)

    # ------------------------------------------------------------------ segments
    def _create(self, seq: int) -> int:
        path = self.datadir.wal_path(seq)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            write_all(fd, encode_header(KIND_WAL, seq, time.time()))
        except OSError as exc:
            raise StorageError(f"cannot create WAL segment {path}: {exc}") from None
        self._dir_dirty = True
        return fd

    def rotate(self, seq: int) -> None:
        """Start segment ``seq``; the current one is synced and closed in the background."""
        self.flush()
        new_fd = self._create(seq)
        self._retired.append(self.fd)
        self.fd = new_fd
        self.seq = seq
        self.bytes_written = 0
        self._kick()

    # ------------------------------------------------------------------ appending
    def append(self, record: Record) -> None:
        try:
            data = self._pack(record)
        except UnicodeEncodeError:
            data = self._pack(sanitized(record))
        self._buf += data
        self._appended(1)

    def append_many(self, records: list[Record]) -> None:
        """``append`` for each record, with one msgpack call: an array's encoding is its
        header followed by its items' encodings, so dropping the header leaves exactly
        the records one after the other, as ``append`` would have written them."""
        n = len(records)
        try:
            data = self._pack(records)
        except UnicodeEncodeError:  # a lone surrogate somewhere: the careful way
            for record in records:
                self.append(record)
            return
        self._buf += memoryview(data)[1 if n < 16 else 3 if n < 65536 else 5 :]
        self._appended(n)

    def _appended(self, n: int) -> None:
        self._count += n
        self.appended += n
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)
        elif len(self._buf) > FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one frame."""
        self._flush_scheduled = False
        count = self._count
        if not count:
            return
        buf = self._buf
        self._buf = bytearray()
        self._count = 0
        if self.error is not None:
            return
        head = encode_frame(buf, count)
        try:
            n = os.writev(self.fd, [head, buf])
            total = len(head) + len(buf)
            if n < total:
                write_all(self.fd, (head + buf)[n:])
        except OSError as exc:
            self._fail(exc)
            return
        self.frames += 1
        self.bytes_written += total
        self.written = self.appended
        if self._open_future is not None:
            self._waiters.append((self.written, self._open_future))
            self._open_future = None
        if self._waiters:
            self._kick()

    # ------------------------------------------------------------------ syncing
    def ticket(self) -> asyncio.Future[None] | None:
        """A future done once everything appended so far is on disk; None if it already is.

        All records of one write batch share one future, so a pipelined producer costs a
        callback per message, not a future. Never cancel it: it is shared.
        """
        if self.synced >= self.appended:
            return None
        if self.error is not None:
            raise StorageError(f"write-ahead log failed: {self.error}")
        if self.written < self.appended:  # still in the buffer: the next frame's future
            if self._open_future is None:
                self._open_future = self.loop.create_future()
            return self._open_future
        waiters = self._waiters
        if waiters and waiters[-1][0] == self.written:
            return waiters[-1][1]
        fut: asyncio.Future[None] = self.loop.create_future()
        waiters.append((self.written, fut))
        self._kick()
        return fut

    async def barrier(self) -> None:
        """Return once everything appended so far is on disk (fsync policy ``always``)."""
        fut = self.ticket()
        if fut is not None:
            await asyncio.shield(fut)

    def _kick(self) -> None:
        """Start an fsync if none is running and there is something to sync."""
        if self._syncing or self.error is not None or self._closed:
            return
        if self.written <= self.synced and not self._retired and not self._dir_dirty:
            return
        self._syncing = True
        target = self.written
        retired, self._retired = self._retired, []
        sync_dir, self._dir_dirty = self._dir_dirty, False
        fut = self.loop.run_in_executor(self.executor, self._sync_job, self.fd, retired, sync_dir)
        fut.add_done_callback(lambda f: self._sync_done(f, target))

    def _sync_job(self, fd: int, retired: list[int], sync_dir: bool) -> float:
        started = time.perf_counter()
        for old in retired:
            datasync(old)
            os.close(old)
        datasync(fd)
        if sync_dir:
            fsync_dir(self.datadir.path)
        return time.perf_counter() - started

    def _sync_done(self, fut: asyncio.Future[float], target: int) -> None:
        self._syncing = False
        exc = fut.exception()
        if exc is not None:
            self._fail(exc)
            return
        took = fut.result()
        self.syncs += 1
        self.sync_seconds += took
        self.max_sync_seconds = max(self.max_sync_seconds, took)
        self.synced = max(self.synced, target)
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.synced:
            w = waiters.popleft()[1]
            if not w.done():
                w.set_result(None)
        if waiters or self._retired:
            if self._count:
                self.flush()
            self._kick()

    def _every_second(self) -> None:
        self._timer = self.loop.call_later(1.0, self._every_second)
        self.flush()
        self._kick()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            log.critical(
                "write-ahead log %s failed: %s; changes are no longer durable", self.seq, exc
            )
        self.error = exc
        err = StorageError(f"write-ahead log failed: {exc}")
        if self._open_future is not None:
            self._waiters.append((self.appended, self._open_future))
            self._open_future = None
        while self._waiters:
            w = self._waiters.popleft()[1]
            if not w.done():
                w.set_exception(err)

    # ------------------------------------------------------------------ closing
    async def drain(self) -> None:
        """Flush and fsync everything appended so far (whatever the policy)."""
        self.flush()
        while self._syncing:
            await asyncio.sleep(0.001)
        if self.error is None:
            target = self.written
            retired, self._retired = self._retired, []
            took = await self.loop.run_in_executor(
                self.executor, self._sync_job, self.fd, retired, True
            )
            self.sync_seconds += took
            self.synced = max(self.synced, target)
            self._dir_dirty = False
            if self._open_future is not None:
                self._waiters.append((self.written, self._open_future))
                self._open_future = None
            for _, w in self._waiters:
                if not w.done():
                    w.set_result(None)
            self._waiters.clear()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.drain()
        self._closed = True
        os.close(self.fd)

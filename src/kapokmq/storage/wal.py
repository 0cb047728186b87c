"""The write-ahead log writer: append on the loop, write once per iteration, fsync beside it.

Records (tuples of plain values) are collected as the broker reports changes; one
callback per event-loop iteration encodes them as CRC-checked frames of at most
``WAL_FRAME_RECORDS`` records each (a batch record of up to that many messages is a frame
of its own), one encoder call per frame, and writes them in one write (see ``format``).
fsync never blocks the loop: the segment's fdatasync is a Linux AIO request the loop
submits and reaps (``files.LoopSync``: no thread has to take the GIL from the busy loop
to start it or to report it); where there is none, and for what else needs syncing (a
retired segment, the directory), it runs in a dedicated thread:

* ``always``   — ``ticket()``/``barrier()`` resolve once every record appended before the
  call is on disk. Group commit: while one fsync runs, new frames pile up and the next
  fsync covers all of them, so many producers share one disk flush. Acks are records
  like any other: they ride in the same frames and fsyncs, and nobody waits for them.
* ``everysec`` — an fsync every second (a SIGKILL loses nothing already written; a power
  failure at most about the last second).
* ``no``       — the OS decides when to write back; fsync only at rotation and close.

A failed write or fsync (full disk, EIO, read-only file system) stops the writer for
good: waiting tickets fail, later records are dropped, and ``on_failure`` tells the
storage manager, which refuses writes and later starts a fresh writer on a new segment
from the state in memory (manager.py). A write that failed half-way is cut off again, so
the segment ends at a frame boundary.

Disk blocks past the segment's end are allocated ahead of the writes, in the WAL thread
(``FileOps.reserve``: fallocate with the file's size kept), so the loop's appends skip
the file system's block allocation: about a third less CPU per byte written on ext4.
A reservation that fails (no fallocate) changes nothing but that, and none is made on a
disk with less than ``RESERVE_FREE_MIN`` free, so a filling disk is met as before; what
is left of one is given back (truncated) when a segment is retired or closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor

import msgspec

from kapokmq.storage.files import describe
from kapokmq.storage.format import (
    KIND_WAL,
    WAL_FRAME_RECORDS,
    Record,
    encode_header,
    frame_head,
    sanitized,
)
from kapokmq.storage.layout import DataDir, StorageError, unavailable

FLUSH_AT = 4 << 20  # bytes: a flush of a huge batch writes in steps of about this size
SEAL_BYTES = 1 << 20  # a frame of more than one record is split until it is at most this
# bytes of disk allocated past the segment's end at a time, renewed at half: the thread's
# answer can take a GIL switch or two (5 ms each) while the loop writes ~40 MB/s
RESERVE_AHEAD = 2 << 20
RESERVE_FREE_MIN = 256 << 20  # no reservations on a disk with less free space than this


class WalError(StorageError):
    """The write-ahead log could not write or sync; ``reason`` is for the operator and
    ``str()`` is what a producer is told after ``error: `` (docs/protocol.md)."""

    def __init__(self, reason: str) -> None:
        super().__init__(unavailable(reason))
        self.reason = reason


class WalWriter:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        datadir: DataDir,
        seq: int,
        policy: str,
        executor: Executor,
        on_failure: Callable[[WalError], None] | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.datadir = datadir
        self.files = datadir.files
        self._write = self.files.write
        self.policy = policy
        self.executor = executor
        self.on_failure = on_failure
        self.on_settled = on_settled  # called right after tickets were settled
        self.seq = seq
        # appended, encoded and written by the next flush: runs of records, each run
        # framed WAL_FRAME_RECORDS at a time; a batch record is a run of its own
        self._run: list[Record] = []  # the last run: ``append`` adds to it
        self._pending: list[list[Record]] = [self._run]
        # msgspec writes the same msgpack bytes as msgpack.Packer (checked in
        # tests/storage/test_wal_encoding.py) in a quarter of the time: 41 vs 166 ns per ADD
        self._pack: Callable[[object], bytes] = msgspec.msgpack.Encoder().encode
        self._flush_scheduled = False
        self.appended = 0  # records appended since start
        self.written = 0  # records handed to the OS
        self.synced = 0  # records known to be on disk
        self.bytes_written = 0  # since the last rotation
        self.size = 0  # of the current segment, up to the last complete write
        self.frames = 0
        self.syncs = 0
        self.sync_seconds = 0.0
        self.max_sync_seconds = 0.0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._open_future: asyncio.Future[None] | None = None  # for the unwritten buffer
        self._job: asyncio.Future[float] | None = None  # the fsync running
        self._loop_job: asyncio.Future[float] | None = None  # _job if it is a LoopSync's
        self._sync_target = 0  # records the running LoopSync request makes durable
        self._sync_started = 0.0
        self._reserved = 0  # the current segment's blocks are allocated up to here
        self._reserving: asyncio.Future[bool] | None = None  # the reservation running
        self._retired: list[int] = []
        self._dir_dirty = False
        self.error: WalError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        try:
            self.fd = self._create(seq)
        except WalError as exc:  # born failed (a full disk at start): the caller checks .error
            self.fd = -1
            self.error = exc
        self._loop_sync = self.files.loop_sync() if policy != "no" and self.fd >= 0 else None
        if self._loop_sync is not None:
            loop.add_reader(self._loop_sync.fileno(), self._loop_synced)
        if policy == "everysec":
            self._timer = loop.call_later(1.0, self._every_second)

    # ------------------------------------------------------------------ segments
    def _create(self, seq: int) -> int:
        path = self.datadir.wal_path(seq)
        files = self.files
        try:
            fd = files.create(path, exclusive=True)
        except OSError as exc:
            raise WalError(f"{describe(exc)} (creating {path.name})") from None
        header = encode_header(KIND_WAL, seq, time.time())
        try:
            files.write(fd, [header])
        except OSError as exc:
            with contextlib.suppress(OSError):
                files.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise WalError(f"{describe(exc)} (creating {path.name})") from None
        self.size = len(header)
        self._dir_dirty = True
        return fd

    def rotate(self, seq: int) -> None:
        """Start segment ``seq``; the current one is synced and closed in the background."""
        self.flush()
        if self.error is not None:
            raise self.error
        old_fd, old_size = self.fd, self.size  # _create sets the size of the new one
        try:
            new_fd = self._create(seq)
        except WalError as exc:
            self._fail(exc, f"starting segment {seq}")
            raise
        self._release(old_fd, old_size)
        self._retired.append(old_fd)
        self.fd = new_fd
        self.seq = seq
        self.bytes_written = 0
        self._reserved = 0
        self._kick()

    # ------------------------------------------------------------------ appending
    def append(self, record: Record) -> None:
        """Log ``record``, a tuple of plain values. It is encoded by the iteration's flush,
        so nothing in it (a list included) may change after this call."""
        self._run.append(record)
        self.appended += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def append_many(self, records: list[Record]) -> None:
        """``append`` for each of ``records``."""
        self._run += records
        self.appended += len(records)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def append_batches(self, records: list[Record]) -> None:
        """``append`` for batch records (format.ADD_BATCH, CONSUMED_BATCH, each of at most
        ``WAL_FRAME_RECORDS`` messages), each written as a frame of its own, so one
        damaged byte still costs at most that many messages."""
        if not records:
            return
        pending = self._pending
        for record in records:
            pending.append([record])
        run: list[Record] = []
        self._run = run
        pending.append(run)
        self.appended += len(records)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def _frames(self, runs: list[list[Record]]) -> Iterator[tuple[bytes, memoryview]]:
        """Head and body of each frame for ``runs``: one encoder call per frame of at
        most ``WAL_FRAME_RECORDS`` records of a run, whose output (a msgpack array) is the
        body as it is, nothing copied; a frame of more than ``SEAL_BYTES`` is split in two."""
        pack = self._pack
        step = WAL_FRAME_RECORDS
        todo: list[list[Record]] = []  # popped from the end: the first frame last
        for records in reversed(runs):
            if len(records) <= step:
                if records:
                    todo.append(records)
            else:
                todo += [records[i : i + step] for i in reversed(range(0, len(records), step))]
        while todo:
            part = todo.pop()
            try:
                body = pack(part)
            except UnicodeEncodeError:  # a lone surrogate somewhere: the careful way
                body = pack([sanitized(record) for record in part])
            n = len(part)
            if len(body) > SEAL_BYTES and n > 1:
                todo += (part[n >> 1 :], part[: n >> 1])
                continue
            items = memoryview(body)[1 if n < 16 else 3 if n < 65536 else 5 :]
            yield frame_head(items, n), items

    def flush(self) -> None:
        """Write every record appended so far, as frames, in one write (one per
        ``FLUSH_AT`` bytes for a huge batch)."""
        self._flush_scheduled = False
        if self.written == self.appended:
            return
        pending = self._pending
        run: list[Record] = []
        self._run = run
        self._pending = [run]
        if self.error is not None:
            return  # failed for good: the manager rebuilds the files from memory
        parts: list[bytes | memoryview] = []
        size = 0
        for head, body in self._frames(pending):
            parts += (head, body)
            size += len(head) + len(body)
            if size >= FLUSH_AT:
                if not self._write_frames(parts, size):
                    return
                parts = []
                size = 0
        if parts and not self._write_frames(parts, size):
            return
        self.written = self.appended
        if self._open_future is not None:
            self._waiters.append((self.written, self._open_future))
            self._open_future = None
        if self._loop_job is not None:
            self._loop_synced()
        if self._waiters:
            self._kick()

    def _write_frames(self, parts: list[bytes | memoryview], size: int) -> bool:
        """One write; False (and the writer failed) if it did not succeed."""
        try:
            self._write(self.fd, parts)
        except OSError as exc:
            self._cut_back(parts)
            self._fail(exc, f"writing {self.datadir.wal_path(self.seq).name}")
            return False
        self.size += size
        self.frames += len(parts) >> 1
        self.bytes_written += size
        if self._reserved - self.size < RESERVE_AHEAD >> 1 and self._reserving is None:
            self._reserve()
        return True

    def _reserve(self) -> None:
        """Allocate the next ``RESERVE_AHEAD`` bytes past the end in the WAL thread (the
        one-thread executor runs it before any later fsync or close of this fd)."""
        start, fd = self.size, self.fd
        self._reserved = start + RESERVE_AHEAD
        job = self.loop.run_in_executor(self.executor, self._reserve_job, fd, start)
        self._reserving = job
        job.add_done_callback(lambda job: self._reserve_done(job, fd))

    def _reserve_job(self, fd: int, start: int) -> bool:
        """Reserve unless the disk is close to full: there the space is the snapshot's
        and the next segment's, and a full disk is noticed as soon as it was before."""
        disk = os.statvfs(self.datadir.path)
        if disk.f_bavail * disk.f_frsize < RESERVE_FREE_MIN:
            return False
        self.files.reserve(fd, start, RESERVE_AHEAD)
        return True

    def _release(self, fd: int, size: int) -> None:
        """Give back the blocks reserved past ``size`` (truncating to the same size does)."""
        with contextlib.suppress(OSError):
            self.files.truncate(fd, size)

    def _reserve_done(self, job: asyncio.Future[bool], fd: int) -> None:
        self._reserving = None
        failed = job.cancelled() or job.exception() is not None or not job.result()
        if failed and fd == self.fd:  # (nearly) full disk or no fallocate: appends allocate
            self._reserved = 1 << 62  # not again for this segment

    def _cut_back(self, parts: list[bytes | memoryview]) -> None:
        """After a partial write: end the segment at the last whole frame that reached
        the file (a full disk takes what fits: those records survive a crash before the
        rebuild, docs/durability.md "When the disk fails")."""
        keep = self.size
        with contextlib.suppress(OSError):
            reached = os.fstat(self.fd).st_size
            for i in range(0, len(parts) - 1, 2):  # (head, body) pairs
                end = keep + len(parts[i]) + len(parts[i + 1])
                if end > reached:
                    break
                keep = end
                self.frames += 1
        self.size = keep  # what a later release or close keeps
        with contextlib.suppress(OSError):
            self.files.truncate(self.fd, keep)

    # ------------------------------------------------------------------ syncing
    def ticket(self) -> asyncio.Future[None] | None:
        """A future done once everything appended so far is on disk; None if it already is.

        All records of one write batch share one future, so a pipelined producer costs a
        callback per message, not a future. Never cancel it: it is shared. It fails with
        ``WalError`` if the batch cannot be made durable.
        """
        if self.synced >= self.appended:
            return None
        if self.error is not None:
            failed: asyncio.Future[None] = self.loop.create_future()
            failed.set_exception(self.error)
            failed.exception()  # retrieved: nobody needs to wait for it to be logged
            return failed
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
        if self._job is not None or self.error is not None or self._closed:
            return
        if self.written <= self.synced and not self._retired and not self._dir_dirty:
            return
        target = self.written
        if self._loop_sync is not None and not self._retired and not self._dir_dirty:
            try:
                self._loop_sync.submit(self.fd)
            except OSError:  # refused (no fsync for AIO here): the thread from now on
                self._stop_loop_sync()
            else:
                self._job = self._loop_job = self.loop.create_future()
                self._sync_target = target
                self._sync_started = time.perf_counter()
                return
        retired, self._retired = self._retired, []
        sync_dir, self._dir_dirty = self._dir_dirty, False
        job = self.loop.run_in_executor(self.executor, self._sync_job, self.fd, retired, sync_dir)
        self._job = job
        job.add_done_callback(lambda f: self._sync_done(f, target))

    def _loop_synced(self) -> None:
        """The running LoopSync request ended (the eventfd is readable), or maybe did: a
        flush asks too while one runs, since the loop may have been busy when the eventfd
        said so; its replies then go out, and the next fsync starts, without waiting for
        the loop's next poll."""
        job, loop_sync = self._loop_job, self._loop_sync
        if loop_sync is None:
            return
        try:
            results = loop_sync.results()
        except OSError as exc:
            results = [-(exc.errno or errno.EIO)]
        if not results or job is None:
            return
        self._loop_job = None
        failed = min(results)
        if failed < 0:
            job.set_exception(OSError(-failed, os.strerror(-failed)))
        else:
            job.set_result(time.perf_counter() - self._sync_started)
        self._sync_done(job, self._sync_target)

    def _stop_loop_sync(self) -> None:
        loop_sync, self._loop_sync = self._loop_sync, None
        if loop_sync is not None:
            self.loop.remove_reader(loop_sync.fileno())
            loop_sync.close()

    def _sync_job(self, fd: int, retired: list[int], sync_dir: bool) -> float:
        started = time.perf_counter()
        files = self.files
        try:
            for old in retired:
                files.datasync(old)
        finally:
            for old in retired:
                with contextlib.suppress(OSError):
                    files.close(old)
        files.datasync(fd)
        if sync_dir:
            files.fsync_dir(self.datadir.path)
        return time.perf_counter() - started

    def _sync_done(self, fut: asyncio.Future[float], target: int) -> None:
        self._job = None
        exc = fut.exception()
        if exc is not None:
            self._fail(exc, f"syncing {self.datadir.wal_path(self.seq).name}")
            return
        took = fut.result()
        self.syncs += 1
        self.sync_seconds += took
        self.max_sync_seconds = max(self.max_sync_seconds, took)
        self.synced = max(self.synced, target)
        waiters = self._waiters
        settled = bool(waiters) and waiters[0][0] <= self.synced
        while waiters and waiters[0][0] <= self.synced:
            w = waiters.popleft()[1]
            if not w.done():
                w.set_result(None)
        if settled and self.on_settled is not None:
            self.on_settled()
        if waiters or self._retired:
            if self.written < self.appended:
                self.flush()
            self._kick()

    def _every_second(self) -> None:
        self._timer = self.loop.call_later(1.0, self._every_second)
        self.flush()
        self._kick()

    def _fail(self, exc: BaseException, doing: str) -> None:
        """Stop for good: fail every waiting ticket, tell the manager (once)."""
        first = self.error is None
        if first:
            reason = f"{exc.reason if isinstance(exc, WalError) else describe(exc)} ({doing})"
            self.error = WalError(reason)
        error = self.error
        assert error is not None
        if self._open_future is not None:
            self._waiters.append((self.appended, self._open_future))
            self._open_future = None
        while self._waiters:
            w = self._waiters.popleft()[1]
            if not w.done():
                w.set_exception(error)
                w.exception()  # retrieved: a ticket nobody waits for must not log
        if first and self.on_failure is not None:
            self.on_failure(error)

    # ------------------------------------------------------------------ closing
    async def _idle(self) -> None:
        while self._job is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._job)
            await asyncio.sleep(0)  # let _sync_done run

    async def drain(self) -> None:
        """Flush and fsync everything appended so far (whatever the policy)."""
        self.flush()
        await self._idle()
        if self.error is not None:
            return
        target = self.written
        retired, self._retired = self._retired, []
        try:
            took = await self.loop.run_in_executor(
                self.executor, self._sync_job, self.fd, retired, True
            )
        except OSError as exc:
            self._fail(exc, f"syncing {self.datadir.wal_path(self.seq).name}")
            return
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
        """Drain and close (a failed writer just closes its files)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.drain()
        self._closed = True
        if self._reserving is not None:  # it names self.fd: let it end before the close
            await asyncio.wait([self._reserving])
        self._stop_loop_sync()
        if self.fd >= 0:
            self._release(self.fd, self.size)
        for fd in [*self._retired, self.fd]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    self.files.close(fd)
        self._retired = []

"""Snapshots: every stored message, written atomically without stalling the event loop.

The caller hands over a list of the messages at the moment the new WAL segment started (a
cheap copy of references). Messages are encoded on the loop in slices of a few hundred,
yielding between slices, and the bytes are written and fsynced by a worker thread; then
the temp file is renamed into place and the directory fsynced. A message that changes
while the snapshot is being written may be saved in its newer state; the WAL segment that
began with the snapshot holds that change too and replaying it is idempotent.

A snapshot file is a header (kind 2) followed by frames of ADD records and a final END
record holding the message count; a file without it is incomplete and counts as corrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import msgpack

from kapokmq.model import Message
from kapokmq.storage.format import (
    END,
    KIND_SNAPSHOT,
    encode_frame,
    encode_header,
    message_record,
    sanitized,
)
from kapokmq.storage.layout import DataDir, datasync, fsync_dir, write_all

SLICE = 500  # messages encoded per loop slice (~1 ms)
FRAME_BYTES = 1 << 20  # aim for frames of about this size

# Testing hook: seconds the writer thread sleeps per frame, to widen the window in which
# a crash test can kill the broker while a snapshot is being written.
THROTTLE_ENV = "KAPOKMQ_TEST_SNAPSHOT_THROTTLE"


@dataclass(slots=True)
class SnapshotStats:
    seq: int
    messages: int
    bytes: int
    seconds: float
    slices: int


class _Encoder:
    """Turns messages into framed bytes, a slice at a time."""

    def __init__(self) -> None:
        self.pack: Callable[[object], bytes] = msgpack.Packer().pack
        self.buf = bytearray()
        self.count = 0
        self.messages = 0

    def add(self, batch: Sequence[Message]) -> None:
        pack = self.pack
        buf = self.buf
        n = 0
        for msg in batch:
            if msg.removed:
                continue
            record = message_record(msg)
            try:
                buf += pack(record)
            except UnicodeEncodeError:
                buf += pack(sanitized(record))
            n += 1
        self.count += n
        self.messages += n

    def take(self, final: bool = False) -> bytes | None:
        if final:
            self.buf += self.pack((END, self.messages))
            self.count += 1
        if not self.count:
            return None
        frame = encode_frame(self.buf, self.count) + self.buf
        self.buf = bytearray()
        self.count = 0
        return frame


def encode_slices(
    messages: Sequence[Message], enc: _Encoder, slice_size: int = SLICE
) -> Iterator[bytes | None]:
    """Yield a frame whenever one is full, ``None`` after each slice without one."""
    for start in range(0, len(messages), slice_size):
        enc.add(messages[start : start + slice_size])
        if len(enc.buf) >= FRAME_BYTES:
            yield enc.take()
        else:
            yield None
    yield enc.take(final=True)


class SnapshotFile:
    """A temp file that becomes snapshot ``seq`` on ``commit``; all calls block (threads)."""

    def __init__(self, datadir: DataDir, seq: int) -> None:
        self.datadir = datadir
        self.seq = seq
        self.temp = datadir.temp_path(seq)
        self.final = datadir.snapshot_path(seq)
        self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.bytes = 0
        self.throttle = float(os.environ.get(THROTTLE_ENV, "0") or 0)
        self.write(encode_header(KIND_SNAPSHOT, seq, time.time()))

    def write(self, data: bytes) -> None:
        if self.throttle:
            time.sleep(self.throttle)
        write_all(self.fd, data)
        self.bytes += len(data)

    def commit(self) -> None:
        datasync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.temp, self.final)
        fsync_dir(self.datadir.path)

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


async def write_snapshot(
    loop: asyncio.AbstractEventLoop,
    executor: Executor,
    datadir: DataDir,
    seq: int,
    messages: Sequence[Message],
) -> SnapshotStats:
    """Write snapshot ``seq`` incrementally; the loop runs between slices."""
    started = time.perf_counter()
    file = await loop.run_in_executor(executor, SnapshotFile, datadir, seq)
    pending: asyncio.Future[None] | None = None
    slices = 0
    enc = _Encoder()
    try:
        for frame in encode_slices(messages, enc):
            slices += 1
            if frame is not None:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(executor, file.write, frame)
            await asyncio.sleep(0)
        if pending is not None:
            await pending
            pending = None
        await loop.run_in_executor(executor, file.commit)
    except BaseException:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending
        await loop.run_in_executor(executor, file.abort)
        raise
    return SnapshotStats(seq, enc.messages, file.bytes, time.perf_counter() - started, slices)


def write_snapshot_sync(datadir: DataDir, seq: int, messages: Sequence[Message]) -> SnapshotStats:
    """Write snapshot ``seq`` in one go (start-up, shutdown, tools, tests)."""
    started = time.perf_counter()
    file = SnapshotFile(datadir, seq)
    enc = _Encoder()
    try:
        for frame in encode_slices(messages, enc, slice_size=10_000):
            if frame is not None:
                file.write(frame)
        file.commit()
    except BaseException:
        file.abort()
        raise
    return SnapshotStats(seq, enc.messages, file.bytes, time.perf_counter() - started, 1)


def snapshot_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

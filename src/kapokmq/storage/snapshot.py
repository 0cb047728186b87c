"""Snapshots: every stored message, written atomically without stalling the event loop.

The caller hands over a list of the messages at the moment the new WAL segment started (a
cheap copy of references). Messages are encoded on the loop in slices of a few hundred,
yielding between slices, and the bytes are written and fsynced by a worker thread; then
the temp file is renamed into place and the directory fsynced. A message that changes
while the snapshot is being written may be saved in its newer state; the WAL segment that
began with the snapshot holds that change too and replaying it is idempotent.

A snapshot file is a header (kind 2) followed by checksummed chunks of ADD records (at
most ``CHUNK_RECORDS`` records or ``CHUNK_BYTES`` bytes each, so one damaged byte costs at
most one chunk), each followed by its META record if the message has a TTL or a
dead-letter history, then the DEDUP records, then one TRACE record per message trace
(encoded in slices too), and a final chunk holding the END record with the message count;
a file without it is incomplete and counts as corrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import msgpack

from kapokmq.model import Code, Message, code_text
from kapokmq.storage.format import (
    CHUNK_BYTES,
    CHUNK_RECORDS,
    END,
    KIND_SNAPSHOT,
    TRACE,
    encode_header,
    frame_head,
    message_record,
    sanitized,
)
from kapokmq.storage.layout import DataDir

SLICE = 500  # messages encoded per loop slice (~1 ms)
WRITE_BYTES = 1 << 20  # chunks are handed to the writer thread about this much at a time

# Testing hook: seconds the writer thread sleeps per frame, to widen the window in which
# a crash test can kill the broker while a snapshot is being written.
THROTTLE_ENV = "KAPOKMQ_TEST_SNAPSHOT_THROTTLE"


@dataclass(slots=True)
class Extras:
    """What a snapshot holds beside the messages: META records by message code, and the
    DEDUP and TRACE records (taken on the loop when the snapshot starts)."""

    meta: dict[Code, tuple[Any, ...]] = field(default_factory=dict)
    dedup: list[tuple[Any, ...]] = field(default_factory=list)
    # (code, events) of every message trace: immutable tuples, encoded as TRACE records
    traces: list[tuple[Code, tuple[Any, ...]]] = field(default_factory=list)


@dataclass(slots=True)
class SnapshotStats:
    seq: int
    messages: int
    bytes: int
    seconds: float
    slices: int


class _Encoder:
    """Turns messages into checksummed chunks, a slice at a time."""

    def __init__(self, extras: Extras | None = None) -> None:
        self.pack: Callable[[object], bytes] = msgpack.Packer().pack
        self.buf = bytearray()  # the open chunk's records
        self.count = 0
        self.out = bytearray()  # sealed chunks not yet taken
        self.records = 0  # in sealed chunks
        self.others = 0  # of them, not messages (META, DEDUP)
        self.extras = extras or Extras()

    @property
    def messages(self) -> int:
        return self.records - self.others

    def add(self, batch: Sequence[Message]) -> None:
        pack = self.pack
        for msg in batch:
            if msg.removed:
                continue
            record = message_record(msg)
            try:
                data = pack(record)
            except UnicodeEncodeError:
                data = pack(sanitized(record))
            if self.count and len(self.buf) + len(data) > CHUNK_BYTES:
                self._seal()
            self.buf += data
            self.count += 1
            if self.count >= CHUNK_RECORDS:
                self._seal()
            meta = self.extras.meta
            if meta:
                extra = meta.get(msg.code)
                if extra is not None:
                    self.other(extra)

    def other(self, record: tuple[Any, ...]) -> None:
        """A record that is not a message (META, DEDUP, TRACE)."""
        try:
            data = self.pack(record)
        except UnicodeEncodeError:
            data = self.pack(sanitized(record))
        self._put(data)

    def _put(self, data: bytes) -> None:
        if self.count and len(self.buf) + len(data) > CHUNK_BYTES:
            self._seal()
        self.buf += data
        self.count += 1
        self.others += 1
        if self.count >= CHUNK_RECORDS:
            self._seal()

    def _seal(self) -> None:
        if self.count:
            self.out += frame_head(self.buf, self.count)
            self.out += self.buf
            self.records += self.count
            self.buf = bytearray()
            self.count = 0

    def take(self, final: bool = False) -> bytes | None:
        if final:  # the END record in a chunk of its own: damage elsewhere cannot hide it
            for record in self.extras.dedup:
                self.other(record)
            self._seal()
            messages = self.messages
            end = self.pack((END, messages))
            self.out += frame_head(end, 1) + end
        if not self.out:
            return None
        data = bytes(self.out)
        self.out = bytearray()
        return data


def encode_slices(
    messages: Sequence[Message], enc: _Encoder, slice_size: int = SLICE
) -> Iterator[bytes | None]:
    """Yield bytes to write whenever about ``WRITE_BYTES`` are ready, ``None`` after each
    slice without; the last item ends the snapshot."""
    for start in range(0, len(messages), slice_size):
        enc.add(messages[start : start + slice_size])
        if len(enc.out) >= WRITE_BYTES:
            yield enc.take()
        else:
            yield None
    traces = enc.extras.traces
    for start in range(0, len(traces), slice_size):
        for code, events in traces[start : start + slice_size]:
            enc.other((TRACE, code_text(code), events))
        if len(enc.out) >= WRITE_BYTES:
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
        self.files = datadir.files
        self.fd = self.files.create(self.temp)
        self.bytes = 0
        self.throttle = float(os.environ.get(THROTTLE_ENV, "0") or 0)
        try:
            self.write(encode_header(KIND_SNAPSHOT, seq, time.time()))
        except BaseException:
            self.abort()
            raise

    def write(self, data: bytes) -> None:
        if self.throttle:
            time.sleep(self.throttle)
        self.files.write(self.fd, [data])
        self.bytes += len(data)

    def commit(self) -> None:
        self.files.datasync(self.fd)
        fd, self.fd = self.fd, -1
        self.files.close(fd)
        self.files.replace(self.temp, self.final)
        self.datadir.fsync()

    def abort(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            with contextlib.suppress(OSError):
                self.files.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


async def write_snapshot(
    loop: asyncio.AbstractEventLoop,
    executor: Executor,
    datadir: DataDir,
    seq: int,
    messages: Sequence[Message],
    extras: Extras | None = None,
) -> SnapshotStats:
    """Write snapshot ``seq`` incrementally; the loop runs between slices."""
    started = time.perf_counter()
    file = await loop.run_in_executor(executor, SnapshotFile, datadir, seq)
    pending: asyncio.Future[None] | None = None
    slices = 0
    enc = _Encoder(extras)
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


def write_snapshot_sync(
    datadir: DataDir, seq: int, messages: Sequence[Message], extras: Extras | None = None
) -> SnapshotStats:
    """Write snapshot ``seq`` in one go (start-up, shutdown, tools, tests)."""
    started = time.perf_counter()
    file = SnapshotFile(datadir, seq)
    enc = _Encoder(extras)
    try:
        for frame in encode_slices(messages, enc, slice_size=10_000):
            if frame is not None:
                file.write(frame)
        file.commit()
    except BaseException:
        file.abort()
        raise
    return SnapshotStats(seq, enc.messages, file.bytes, time.perf_counter() - started, 1)

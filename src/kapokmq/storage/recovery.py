"""Rebuild the message table from the newest snapshot and the WAL segments after it.

Replay is idempotent (records carry absolute values, not deltas), so a snapshot that
already reflects some of the changes in its WAL segment is harmless. A torn or corrupt
tail of the newest segment is the expected result of a crash: it is reported and
truncated. Anything else that cannot be read — a corrupt snapshot, a damaged segment in
the middle — stops start-up unless ``skip_corrupt`` is set, in which case whatever can be
read is kept and the rest is reported as lost.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kapokmq.model import Message
from kapokmq.storage.format import (
    ADD,
    END,
    HEADER_SIZE,
    KIND_SNAPSHOT,
    KIND_WAL,
    REMOVE,
    STATUS_OF,
    UPDATE,
    FormatError,
    Record,
    Tail,
    decode_header,
    message_from_record,
    new_unpacker,
    read_frames,
)
from kapokmq.storage.layout import DataDir, StorageError

log = logging.getLogger(__name__)

SKIP_HINT = "start with --recover-skip-corrupt (mq.recoverSkipCorrupt=1) to keep what can be read"


class CorruptData(StorageError):
    """A data file that cannot be fully read (not a torn WAL tail)."""


@dataclass
class Recovered:
    messages: dict[str, Message] = field(default_factory=dict)
    snapshot_seq: int | None = None
    snapshot_messages: int = 0
    wal_segments: int = 0
    wal_records: int = 0
    wal_bytes: int = 0
    truncated_bytes: int = 0
    dropped_records: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_seq: int = 0


class Progress:
    """Logs records/s and percentage at most once a second during long recoveries."""

    def __init__(self, total_bytes: int, every: float = 1.0) -> None:
        self.total = max(total_bytes, 1)
        self.every = every
        self.started = time.monotonic()
        self.last = self.started
        self.records = 0
        self.done = 0

    def update(self, done_bytes: int, records: int) -> None:
        self.done += done_bytes
        self.records += records
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.records / max(now - self.started, 1e-9)
            log.info(
                "recovery: %.0f%% (%d records, %.0f records/s)",
                100.0 * self.done / self.total,
                self.records,
                rate,
            )


Apply = Callable[[Record], None]


def _applier(msgs: dict[str, Message], topics: dict[str, str]) -> Apply:
    def apply(rec: Record) -> None:
        op = rec[0]
        if op == ADD:
            msg = message_from_record(rec, topics)
            msgs[msg.code] = msg
        elif op == UPDATE:
            old = msgs.get(rec[1])
            if old is not None:
                old.status = STATUS_OF[rec[2]]
                old.consumed_time = rec[3]
                old.delay_time = rec[4]
                old.attempts = rec[5]
        elif op == REMOVE:
            msgs.pop(rec[1], None)

    return apply


def _open(path: Path, kind: int) -> tuple[BinaryIO, int]:
    f = path.open("rb")
    size = os.fstat(f.fileno()).st_size
    try:
        header = decode_header(f.read(HEADER_SIZE))
    except FormatError:
        f.close()
        raise
    if header.kind != kind:
        f.close()
        raise FormatError(f"expected file kind {kind}, found {header.kind}")
    return f, size


def load_snapshot(
    path: Path, msgs: dict[str, Message], topics: dict[str, str], progress: Progress
) -> tuple[int, str]:
    """Load a snapshot into ``msgs``; returns (messages, problem or "")."""
    try:
        f, size = _open(path, KIND_SNAPSHOT)
    except (OSError, FormatError) as exc:
        return 0, f"snapshot {path.name}: {exc}"
    unpacker = new_unpacker()
    tail = Tail(HEADER_SIZE, size)
    loaded = 0
    expected: int | None = None
    status_of = STATUS_OF
    intern = topics.setdefault
    new = Message
    with f:
        for count, payload in read_frames(f, size, tail):
            unpacker.feed(payload)
            # the hot loop of a recovery: build messages inline (no call per record)
            for rec in unpacker:
                if rec[0] != ADD:
                    if rec[0] == END:
                        expected = rec[1]
                        continue
                    return loaded, f"snapshot {path.name}: unexpected record type {rec[0]}"
                _, code, topic, data, created, consumed, delay, status, arrival, attempts = rec
                msg = new(
                    code,
                    data,
                    intern(topic, topic),
                    created,
                    delay,
                    status_of[status],
                    arrival,
                    consumed,
                    attempts,
                )
                msgs[msg.code] = msg
                loaded += 1
            progress.update(len(payload), count)
    if not tail.clean:
        return loaded, f"snapshot {path.name}: {tail.reason}"
    if expected is None:
        return loaded, f"snapshot {path.name}: incomplete (no end record)"
    if expected != loaded:
        return loaded, f"snapshot {path.name}: holds {loaded} messages, end record says {expected}"
    return loaded, ""


def replay_wal(
    path: Path, apply: Apply, progress: Progress, last: bool
) -> tuple[int, Tail | None, str]:
    """Apply one segment; returns (records, tail if damaged, problem if unreadable)."""
    try:
        f, size = _open(path, KIND_WAL)
    except FormatError as exc:
        if last and os.path.getsize(path) < HEADER_SIZE:
            # created just before a crash, header not (fully) written
            return 0, Tail(0, os.path.getsize(path), "torn header"), ""
        return 0, None, f"WAL segment {path.name}: {exc}"
    unpacker = new_unpacker()
    tail = Tail(HEADER_SIZE, size)
    records = 0
    with f:
        for count, payload in read_frames(f, size, tail):
            unpacker.feed(payload)
            for rec in unpacker:
                apply(rec)
            records += count
            progress.update(len(payload), count)
    return records, (None if tail.clean else tail), ""


def recover(datadir: DataDir, skip_corrupt: bool = False) -> Recovered:
    """Read the data directory (whose lock the caller holds) into an ordered table."""
    started = time.perf_counter()
    listing = datadir.list()
    result = Recovered(max_seq=listing.max_seq)
    for temp in listing.temps:
        log.info("removing unfinished snapshot %s", temp.name)
        temp.unlink(missing_ok=True)
    base = max(listing.snapshots, default=0)
    segments = sorted(seq for seq in listing.wals if seq >= base)
    files = [listing.wals[s] for s in segments]
    if base:
        files.append(listing.snapshots[base])
    total = sum(p.stat().st_size for p in files)
    progress = Progress(total)
    topics: dict[str, str] = {}
    msgs = result.messages
    if base:
        loaded, problem = load_snapshot(listing.snapshots[base], msgs, topics, progress)
        result.snapshot_seq = base
        result.snapshot_messages = loaded
        if problem:
            _corrupt(result, problem, skip_corrupt, f"kept {loaded} messages read before it")
    apply = _applier(msgs, topics)
    for i, seq in enumerate(segments):
        path = listing.wals[seq]
        last = i == len(segments) - 1
        records, tail, problem = replay_wal(path, apply, progress, last)
        result.wal_segments += 1
        result.wal_records += records
        result.wal_bytes += path.stat().st_size
        if problem:
            _corrupt(result, problem, skip_corrupt, "skipped the segment")
            continue
        if tail is None:
            continue
        lost = path.stat().st_size - tail.good_end
        what = (
            f"WAL segment {path.name}: {tail.reason}; dropped {lost} bytes "
            f"({tail.dropped_frames} frame(s), at least {tail.dropped_records} record(s))"
        )
        if not last:
            _corrupt(result, what, skip_corrupt, "dropped the rest of the segment")
        else:
            log.warning("%s; truncating the torn tail", what)
            result.problems.append(what)
        result.truncated_bytes += lost
        result.dropped_records += tail.dropped_records
        if tail.good_end == 0:
            path.unlink()
        elif last or skip_corrupt:
            _truncate(path, tail.good_end)
    result.seconds = time.perf_counter() - started
    return result


def _corrupt(result: Recovered, problem: str, skip: bool, kept: str) -> None:
    if not skip:
        raise CorruptData(f"{problem}. Start-up stopped to protect your data; {SKIP_HINT}.")
    log.error("%s; %s (--recover-skip-corrupt)", problem, kept)
    result.problems.append(problem)


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)

"""Rebuild the message table from the newest snapshot and the WAL segments after it.

Replay is idempotent (records carry absolute values, not deltas), so a snapshot that
already reflects some of the changes in its WAL segment is harmless.

What is found on disk is sorted into (docs/durability.md "Recovery and damaged files"):

* a torn tail — an incomplete last frame of a WAL segment, what a crash in the middle of
  a write leaves: reported and truncated;
* damage — a frame that fails its checksum with data after it, a bad header, a damaged
  or incomplete snapshot: start-up stops naming the file, the byte offset and how many
  valid frames follow, unless ``skip_corrupt``; then the file is first copied aside
  (``<name>.corrupt-<time>``), only the damaged frames are skipped (the reader finds the
  next valid frame) and what was skipped is reported.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kapokmq.model import Message
from kapokmq.storage.format import (
    ADD,
    DEDUP,
    END,
    HEADER_SIZE,
    KIND_SNAPSHOT,
    KIND_WAL,
    META,
    REMOVE,
    STATUS_OF,
    TRACE,
    TRACE_EVENTS,
    UPDATE,
    Buffer,
    FileHeader,
    FormatError,
    Record,
    Scan,
    decode_header,
    message_from_record,
    read_frames,
)
from kapokmq.storage.layout import DataDir, StorageError

log = logging.getLogger(__name__)

SKIP_HINT = (
    "start with --recover-skip-corrupt (mq.recoverSkipCorrupt=1) to skip only the damaged "
    "part and keep everything else (a copy of the file is kept beside it first)"
)


class CorruptData(StorageError):
    """A data file that cannot be fully read (not a torn WAL tail)."""


@dataclass
class Recovered:
    messages: dict[str, Message] = field(default_factory=dict)
    # code -> (ttl, deadline, history) from META records; dedup key -> (code, until)
    meta: dict[str, Meta] = field(default_factory=dict)
    dedup: dict[str, tuple[str, float]] = field(default_factory=dict)
    # code -> trace events as read (snapshot's, then the WAL's; duplicates possible)
    traces: dict[str, list[Event]] = field(default_factory=dict)
    snapshot_seq: int | None = None
    snapshot_messages: int = 0
    wal_segments: int = 0
    wal_records: int = 0
    wal_bytes: int = 0
    truncated_bytes: int = 0
    dropped_records: int = 0  # a lower bound: what the headers of skipped frames announced
    skipped_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    kept_copies: list[Path] = field(default_factory=list)
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
Meta = tuple[int, float | None, list[tuple[int, str]]]
Event = tuple[object, ...]


def _apply_extra(
    rec: Record,
    meta: dict[str, Meta],
    dedup: dict[str, tuple[str, float]],
    traces: dict[str, list[Event]],
) -> bool:
    """A META, DEDUP or trace record (snapshot or WAL); False for any other record."""
    op = rec[0]
    if op == META:
        _, code, ttl, deadline, history = rec
        meta[code] = (ttl, deadline, [(int(t), str(event)) for t, event in history])
    elif op == DEDUP:
        _, key, code, until = rec
        dedup[key] = (code, float(until))
    elif op == TRACE_EVENTS:
        pairs = rec[1]
        for i in range(0, len(pairs) - 1, 2):
            traces.setdefault(pairs[i], []).append(pairs[i + 1])
    elif op == TRACE:
        traces.setdefault(rec[1], []).extend(rec[2])
    else:
        return False
    return True


def _applier(
    msgs: dict[str, Message],
    topics: dict[str, str],
    meta: dict[str, Meta],
    dedup: dict[str, tuple[str, float]],
    traces: dict[str, list[Event]],
) -> Apply:
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
            meta.pop(rec[1], None)
        else:
            _apply_extra(rec, meta, dedup, traces)

    return apply


@contextlib.contextmanager
def _mapped(path: Path, kind: int) -> Iterator[tuple[Buffer, FileHeader]]:
    """The whole file, mapped read-only, and its checked header."""
    with path.open("rb") as f:
        header = decode_header(f.read(HEADER_SIZE))
        if header.kind != kind:
            raise FormatError(f"expected file kind {kind}, found {header.kind}")
        size = os.fstat(f.fileno()).st_size
        buf = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        try:
            yield buf, header
        finally:
            buf.close()


@dataclass
class FileResult:
    """What reading one file gave: records or messages, and what was wrong with it."""

    records: int = 0
    scan: Scan = field(default_factory=Scan)
    problem: str = ""  # the file could not be read at all, or is incomplete


def load_snapshot(
    path: Path,
    msgs: dict[str, Message],
    topics: dict[str, str],
    progress: Progress,
    meta: dict[str, Meta] | None = None,
    dedup: dict[str, tuple[str, float]] | None = None,
    traces: dict[str, list[Event]] | None = None,
) -> FileResult:
    """Load a snapshot into ``msgs`` (``records`` = messages loaded)."""
    result = FileResult()
    scan = result.scan
    scan.pos = HEADER_SIZE
    loaded = 0
    expected: int | None = None
    status_of = STATUS_OF
    intern = topics.setdefault
    meta_of = meta if meta is not None else {}
    dedup_of = dedup if dedup is not None else {}
    traces_of = traces if traces is not None else {}
    new = Message
    try:
        with _mapped(path, KIND_SNAPSHOT) as (buf, header):
            last = HEADER_SIZE
            for records in read_frames(buf, HEADER_SIZE, header.version, scan):
                # the hot loop of a recovery: build messages inline (no call per record)
                for rec in records:
                    if rec[0] != ADD:
                        if rec[0] == END:
                            expected = rec[1]
                            continue
                        if _apply_extra(rec, meta_of, dedup_of, traces_of):
                            continue
                        result.problem = f"unexpected record type {rec[0]}"
                        continue
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
                progress.update(scan.pos - last, len(records))
                last = scan.pos
    except (OSError, FormatError) as exc:
        result.problem = str(exc)
        return result
    result.records = loaded
    if expected is None:
        result.problem = result.problem or "incomplete (no end record)"
    elif expected != loaded and not scan.damages:
        result.problem = f"holds {loaded} messages, its end record says {expected}"
    return result


def replay_wal(path: Path, apply: Apply, progress: Progress) -> FileResult:
    """Apply one segment (``records`` = records applied)."""
    result = FileResult()
    scan = result.scan
    try:
        with _mapped(path, KIND_WAL) as (buf, header):
            last = HEADER_SIZE
            for records in read_frames(buf, HEADER_SIZE, header.version, scan):
                for rec in records:
                    apply(rec)
                result.records += len(records)
                progress.update(scan.pos - last, len(records))
                last = scan.pos
    except (OSError, FormatError) as exc:
        result.problem = str(exc)
    return result


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
    progress = Progress(sum(p.stat().st_size for p in files))
    topics: dict[str, str] = {}
    msgs = result.messages
    judge = _Judge(datadir, result, skip_corrupt)
    if base:
        path = listing.snapshots[base]
        snap = load_snapshot(path, msgs, topics, progress, result.meta, result.dedup, result.traces)
        result.snapshot_seq = base
        result.snapshot_messages = snap.records
        judge.file(path, "snapshot", snap, torn_ok=False)
    apply = _applier(msgs, topics, result.meta, result.dedup, result.traces)
    for seq in segments:
        path = listing.wals[seq]
        size = path.stat().st_size
        if size < HEADER_SIZE:
            # created just before a crash (or a full disk), header not (fully) written
            log.warning("WAL segment %s: header incomplete (%d bytes); removed", path.name, size)
            result.problems.append(f"WAL segment {path.name}: header incomplete")
            path.unlink()
            continue
        wal = replay_wal(path, apply, progress)
        result.wal_segments += 1
        result.wal_records += wal.records
        result.wal_bytes += size
        judge.file(path, "WAL segment", wal, torn_ok=True)
        torn = wal.scan.torn_tail
        if torn is not None and not wal.problem:
            log.warning("%s; truncating the torn tail", torn.describe(f"WAL segment {path.name}"))
            result.problems.append(f"WAL segment {path.name}: torn tail at {torn.offset}")
            result.truncated_bytes += torn.bytes
            result.dropped_records += torn.records
            try:
                _truncate(path, torn.offset)
            except OSError as exc:  # read-only, say: the tail is simply skipped again
                log.warning("could not truncate %s (%s)", path.name, exc.strerror or exc)
    result.seconds = time.perf_counter() - started
    return result


class _Judge:
    """Decides what one file's problems mean: stop, or (with the flag) keep a copy and go on."""

    def __init__(self, datadir: DataDir, result: Recovered, skip: bool) -> None:
        self.datadir = datadir
        self.result = result
        self.skip = skip

    def file(self, path: Path, what: str, read: FileResult, torn_ok: bool) -> None:
        name = f"{what} {path.name}"
        damages = read.scan.damages if not torn_ok else read.scan.problems()
        texts = [d.describe(name) for d in damages]
        if read.problem:
            texts.append(f"{name}: {read.problem}")
        if not texts:
            return
        if not self.skip:
            more = f" (and {len(texts) - 1} more problem(s) in it)" if len(texts) > 1 else ""
            raise CorruptData(
                f"{texts[0]}{more}. Start-up stopped to protect your data; {SKIP_HINT}."
            )
        copy = self.datadir.keep_damaged(path)
        self.result.kept_copies.append(copy)
        for text, damage in zip(texts, [*damages, None], strict=False):
            log.error("%s; skipped (--recover-skip-corrupt, a copy is in %s)", text, copy.name)
            self.result.problems.append(text)
            if damage is not None:
                self.result.skipped_bytes += damage.bytes
                self.result.dropped_records += damage.records


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)

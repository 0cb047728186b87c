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
from itertools import repeat
from operator import attrgetter
from pathlib import Path

from kapokmq.model import IDLE, Code, Flight, Message, Status, bodies_of, code_key, code_keys
from kapokmq.storage.format import (
    HEADER_SIZE,
    KIND_SNAPSHOT,
    KIND_WAL,
    AddBatch,
    AddBatchText,
    AddRecord,
    Buffer,
    ConsumedBatch,
    Damage,
    Decoded,
    DedupRecord,
    End,
    FileHeader,
    FormatError,
    HeaderDamaged,
    MetaRecord,
    Remove,
    Scan,
    TraceEvents,
    TraceRecord,
    Unknown,
    Update,
    decode_header,
    read_frames,
    tuples,
)
from kapokmq.storage.layout import DataDir, StorageError

log = logging.getLogger(__name__)
_code = attrgetter("code")
# AddRecord's columns (Tables._add_run)
_topic = attrgetter("topic")
_data = attrgetter("data")
_created = attrgetter("create_time")
_consumed = attrgetter("consumed_time")
_delay = attrgetter("delay_time")
_status = attrgetter("status")
_arrival = attrgetter("arrival")
_attempts = attrgetter("attempts")

SKIP_HINT = (
    "start with --recover-skip-corrupt (mq.recoverSkipCorrupt=1) to skip only the damaged "
    "part and keep everything else (a copy of the file is kept beside it first)"
)


class CorruptData(StorageError):
    """A data file that cannot be fully read (not a torn WAL tail)."""


@dataclass
class Recovered:
    # codes as the broker keeps them (model.code_key), not as the files spell them
    messages: dict[Code, Message] = field(default_factory=dict)
    # code -> (ttl, deadline, history) from META records; dedup key -> (code, until)
    meta: dict[Code, Meta] = field(default_factory=dict)
    dedup: dict[str, tuple[Code, float]] = field(default_factory=dict)
    # code -> trace events as read (snapshot's, then the WAL's; duplicates possible)
    traces: dict[Code, list[Event]] = field(default_factory=dict)
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


Meta = tuple[int, float | None, list[tuple[int, str]]]
Event = tuple[object, ...]


class Tables:
    """What a recovery builds: messages by code (in creation order, as the store keeps
    them), META, DEDUP and trace extras, and the interned topic names."""

    __slots__ = ("dedup", "flights", "messages", "meta", "topics", "traces")

    def __init__(self, into: Recovered) -> None:
        self.messages = into.messages
        self.meta = into.meta
        self.dedup = into.dedup
        self.traces = into.traces
        self.topics: dict[str, str] = {}
        self.flights: dict[int, Flight] = {}  # landed(): ConsumedTime -> its flight

    def add(self, records: list[Decoded], other: Callable[[Decoded], object]) -> None:
        """Store a frame's messages and hand its other records to ``other``, in their
        order: each run of ADD records at once (``_add_run``; a snapshot chunk is one)."""
        run: list[AddRecord] = []
        for rec in records:
            if type(rec) is AddRecord:
                run.append(rec)
                continue
            if run:
                self._add_run(run)
                run = []
            other(rec)
        if run:
            self._add_run(run)

    def _add_run(self, run: list[AddRecord]) -> None:
        """The messages of consecutive ADD records, built column by column in C (a
        recovery's hot loop; no Python code per record when the codes are canonical and
        the times agree).

        A decoded record holds its own topic string and time objects; the topic is
        interned (there are few topics), equal arrivals in a run share one object (a
        batch published in one loop iteration shares one), the code becomes what the
        broker keeps (``code_keys``), the payload its ``body`` (``bodies_of``) and a
        ConsumedTime a shared flight (``landed``), so a recovered message weighs what a
        published one does. As ``model.new_message``: a CreateTime that is not the whole
        second of the arrival wins."""
        codes = code_keys(list(map(_code, run)))
        topics = list(map(_topic, run))
        intern = self.topics.setdefault
        stamps: list[float] = list(map(_arrival, run))
        seen: dict[float, float] = {}
        arrivals = list(map(seen.setdefault, stamps, stamps))
        created = list(map(_created, run))
        if created != list(map(int, arrivals)):
            arrivals = [
                a if int(a) == c else float(c) for a, c in zip(arrivals, created, strict=True)
            ]
        consumed = list(map(_consumed, run))
        flights = list(map(self.landed, consumed)) if any(consumed) else repeat(IDLE)
        msgs = map(
            Message,
            codes,
            map(intern, topics, topics),
            bodies_of(list(map(_data, run))),
            map(_delay, run),
            map(_status, run),
            arrivals,
            map(_attempts, run),
            flights,
        )
        self.messages.update(zip(codes, msgs, strict=True))

    def landed(self, consumed_time: int) -> Flight:
        """The flight of messages consumed at ``consumed_time``, one per time (acks
        share seconds), as ``Broker._consumed_many`` shares one per ack."""
        flight = self.flights.get(consumed_time)
        if flight is None:
            if not consumed_time:
                return IDLE
            flight = self.flights[consumed_time] = Flight(None, 0.0, consumed_time)
        return flight

    def apply(self, rec: Decoded) -> bool:
        """A record other than ADD (WAL: any; snapshot: META, DEDUP, TRACE); False if unknown."""
        if isinstance(rec, AddBatch | AddBatchText):
            msgs = rec.messages(self.topics.setdefault(rec.topic, rec.topic))
            if msgs is None:
                return False
            self.messages.update(zip(map(_code, msgs), msgs, strict=True))
        elif isinstance(rec, ConsumedBatch):
            codes = rec.code_list()
            if codes is None:
                return False
            get = self.messages.get
            flight, consumed = self.landed(rec.consumed_time), Status.CONSUMED
            for number, attempts in zip(codes, rec.attempts, strict=True):
                old = get(number)
                if old is not None:
                    old.status = consumed
                    old.flight = flight  # ConsumedTime (not in flight: a recovery's)
                    old.attempts = attempts
        elif isinstance(rec, Update):
            old = self.messages.get(code_key(rec.code))
            if old is not None:
                old.status = rec.status
                old.flight = self.landed(rec.consumed_time)  # ConsumedTime
                old.delay_time = rec.delay_time
                old.attempts = rec.attempts
        elif isinstance(rec, Remove):
            code = code_key(rec.code)
            self.messages.pop(code, None)
            self.meta.pop(code, None)
        elif isinstance(rec, MetaRecord):
            self.meta[code_key(rec.code)] = (rec.ttl, rec.deadline, rec.history)
        elif isinstance(rec, DedupRecord):
            self.dedup[rec.key] = (code_key(rec.code), rec.until)
        elif isinstance(rec, TraceEvents):
            pairs = rec.pairs
            traces = self.traces
            for i in range(0, len(pairs) - 1, 2):
                traces.setdefault(code_key(pairs[i]), []).append(tuples(pairs[i + 1]))
        elif isinstance(rec, TraceRecord):
            self.traces.setdefault(code_key(rec.code), []).extend(tuples(rec.events))
        else:
            return False
        return True


@contextlib.contextmanager
def _mapped(path: Path, kind: int, scan: Scan) -> Iterator[tuple[Buffer, FileHeader]]:
    """The whole file, mapped read-only, and its checked header. A damaged header (bad
    magic or checksum) is noted in ``scan`` as damage at offset 0 and the file is read as
    format 2, whose frames resynchronise: only the header is lost, not the file."""
    with path.open("rb") as f:
        try:
            header = decode_header(f.read(HEADER_SIZE))
        except HeaderDamaged:
            header = FileHeader(kind, 0, 0.0)
            scan.damages.append(Damage(0, HEADER_SIZE, torn=False, at_tail=False))
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
    unknown: list[object] = field(default_factory=list)  # WAL: types of records ignored


def load_snapshot(path: Path, tables: Tables, progress: Progress) -> FileResult:
    """Load a snapshot into ``tables`` (``records`` = messages loaded)."""
    result = FileResult()
    scan = result.scan
    scan.pos = HEADER_SIZE
    # its messages, counted as records (not by the table's growth: recovery may load it
    # over an older snapshot's messages, see _fallback): every record but the others
    loaded = 0
    expected: int | None = None

    def other(rec: Decoded) -> None:
        nonlocal expected, loaded
        loaded -= 1
        if isinstance(rec, End):
            expected = rec.count
        elif not tables.apply(rec):
            op = rec.op if isinstance(rec, Unknown) else type(rec).__name__
            result.problem = f"unexpected record type {op}"

    try:
        with _mapped(path, KIND_SNAPSHOT, scan) as (buf, header):
            last = HEADER_SIZE
            for records in read_frames(buf, HEADER_SIZE, header.version, scan):
                loaded += len(records)
                tables.add(records, other)
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


def replay_wal(path: Path, tables: Tables, progress: Progress) -> FileResult:
    """Apply one segment (``records`` = records applied), in order; a record of an
    unknown type or shape (a newer build's) is ignored and noted in ``unknown``."""
    result = FileResult()
    scan = result.scan
    add, tables_apply = tables.add, tables.apply

    def apply(rec: Decoded) -> None:
        if not tables_apply(rec):
            result.unknown.append(rec.op if isinstance(rec, Unknown) else type(rec).__name__)

    try:
        with _mapped(path, KIND_WAL, scan) as (buf, header):
            last = HEADER_SIZE
            for records in read_frames(buf, HEADER_SIZE, header.version, scan):
                add(records, apply)
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
        _remove(temp)
    base = max(listing.snapshots, default=0)
    start = _fallback(listing.snapshots, base) if skip_corrupt else base
    snapshots = sorted(seq for seq in listing.snapshots if seq >= start)
    segments = sorted(seq for seq in listing.wals if seq >= start)
    files = [listing.wals[s] for s in segments] + [listing.snapshots[s] for s in snapshots]
    progress = Progress(sum(p.stat().st_size for p in files))
    tables = Tables(result)
    judge = _Judge(datadir, result, skip_corrupt)
    # snapshot N is the state when WAL segment N began: read in that order, each file
    # applied over what came before (replay is idempotent), the newest state wins
    for seq, is_wal, path in sorted(
        [(s, False, listing.snapshots[s]) for s in snapshots]
        + [(s, True, listing.wals[s]) for s in segments]
    ):
        if not is_wal:
            snap = load_snapshot(path, tables, progress)
            result.snapshot_seq = seq
            result.snapshot_messages = snap.records
            judge.file(path, "snapshot", snap, torn_ok=False)
            continue
        size = path.stat().st_size
        if size < HEADER_SIZE or _only_zeros(path):
            # created just before a crash (or a full disk), header not (fully) written; a
            # power loss can leave its blocks allocated but never written (zeros)
            log.warning("WAL segment %s: header incomplete (%d bytes); removed", path.name, size)
            result.problems.append(f"WAL segment {path.name}: header incomplete")
            _remove(path)
            continue
        wal = replay_wal(path, tables, progress)
        result.wal_segments += 1
        result.wal_records += wal.records
        result.wal_bytes += size
        judge.file(path, "WAL segment", wal, torn_ok=True)
        if wal.unknown:
            log.warning(
                "WAL segment %s: %d record(s) of a type or shape this build does not read "
                "were ignored (record types: %s)",
                path.name,
                len(wal.unknown),
                ", ".join(sorted({str(op) for op in wal.unknown})),
            )
            result.problems.append(f"WAL segment {path.name}: {len(wal.unknown)} unknown")
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


def _fallback(snapshots: dict[int, Path], base: int) -> int:
    """With --recover-skip-corrupt: where to start reading. The newest snapshot, unless it
    is damaged and an older one is still there (a crash came between the newest's rename
    and the deletion of the files it obsoletes): then that older one and the WAL after it
    supply what the damaged one lost, which would otherwise be deleted unread."""
    older = [seq for seq in snapshots if seq < base]
    if not older:
        return base
    newest = load_snapshot(snapshots[base], Tables(Recovered()), Progress(0, every=1e9))
    if not newest.problem and not newest.scan.damages:
        return base
    start = max(older)
    log.warning(
        "snapshot %s is damaged and %s is still there: recovering from it and the WAL "
        "after it, then from what %s still holds",
        snapshots[base].name,
        snapshots[start].name,
        snapshots[base].name,
    )
    return start


def _only_zeros(path: Path) -> bool:
    """A file holding nothing but zero bytes (read only past a zero header)."""
    with path.open("rb") as f:
        if f.read(HEADER_SIZE).strip(b"\0"):
            return False
        while block := f.read(1 << 20):
            if block.strip(b"\0"):
                return False
    return True


def _remove(path: Path) -> None:
    """Delete a file recovery does not read; on a read-only file system it stays (and is
    ignored again next time)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s (%s)", path.name, exc.strerror or exc)


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)

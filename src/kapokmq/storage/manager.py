"""Storage lifecycle: recover at start, log changes, snapshot on schedule, flush at exit.

``isPersistent`` 1: a snapshot every ``persistentTime`` seconds when something changed.
``isPersistent`` 2: every change goes to the WAL (fsync per ``mq.fsync``); a snapshot
compacts it once the current segment outgrows ``walCompactBytes`` and the last snapshot.
Both write a final snapshot on a clean shutdown, so the next start reads one file.

When a write or fsync fails (full disk, EIO, read-only file system) storage goes
*unavailable* (docs/durability.md "When the disk fails"): producer writes are refused
through the runtime's write gate, ``/healthz`` says why, and a retry with backoff tries
to write the whole state in memory as a fresh snapshot with a new WAL segment. Once that
works, writes are accepted again; messages already stored stay deliverable throughout.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from kapokmq.config import Config, Persistence
from kapokmq.core.broker import Broker
from kapokmq.model import Code, Message, Status, code_text
from kapokmq.storage.files import REAL, FileOps, describe
from kapokmq.storage.format import (
    ADD_BATCH,
    CODE_BYTES,
    CONSUMED_BATCH,
    DEDUP,
    REMOVE,
    TRACE_EVENTS,
    UPDATE,
    WAL_FRAME_RECORDS,
    Record,
    join_codes,
    message_record,
    meta_record,
)
from kapokmq.storage.layout import DataDir, StorageError, unavailable
from kapokmq.storage.recovery import Recovered, recover
from kapokmq.storage.snapshot import Extras, SnapshotStats, write_snapshot, write_snapshot_sync
from kapokmq.storage.wal import WalError, WalWriter

log = logging.getLogger("kapokmq.storage")

GATE = "storage"  # the write gate's source name (runtime.refuse_writes)
RETRY_FIRST = 0.2  # seconds before the first rebuild attempt; doubled up to RETRY_MAX
RETRY_MAX = 5.0
TICK = 1.0  # seconds between checks whether a snapshot is due


class WalListener:
    """Turns broker changes into WAL records (the hot path: keep it lean); also the
    broker's journal of TTLs, dead-letter histories and dedup ids (META, DEDUP)."""

    __slots__ = ("append", "append_batches", "append_many", "broker")

    def __init__(self, wal: WalWriter, broker: Broker) -> None:
        self.broker = broker
        self.use(wal)

    def use(self, wal: WalWriter) -> None:
        """Log to ``wal`` from now on (a new writer after a storage failure)."""
        self.append = wal.append
        self.append_many = wal.append_many
        self.append_batches = wal.append_batches

    def message_added(self, msg: Message) -> None:
        self.append(message_record(msg))

    def message_updated(self, msg: Message) -> None:
        self.append(update_record(msg))

    def message_removed(self, msg: Message) -> None:
        self.append((REMOVE, code_text(msg.code)))

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        """One publish call's messages as ADD_BATCH records of at most WAL_FRAME_RECORDS
        (docs/performance.md "Session 6: WAL"); per-message ADD records for string codes."""
        if not msgs:
            return
        first = msgs[0]
        topic, created, arrival = first.topic, first.create_time, first.arrival

        def add_batch(part: list[Message], codes: bytes) -> Record:
            delays = [m.delay_time for m in part]
            bodies = [m.body for m in part]  # as they are: bin (format 4, format.py)
            return (ADD_BATCH, topic, created, arrival, codes, bodies, delays if any(delays) else 0)

        self._batched(msgs, codes, add_batch, message_record)

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        """One consumer's acks (all consumed at one time) as CONSUMED_BATCH records."""
        if not msgs:
            return
        consumed = msgs[0].consumed_time

        def consumed_batch(part: list[Message], codes: bytes) -> Record:
            return (CONSUMED_BATCH, consumed, codes, [m.attempts for m in part])

        self._batched(msgs, codes, consumed_batch, update_record)

    def _batched(
        self,
        msgs: list[Message],
        codes: bytes | None,
        batch: Callable[[list[Message], bytes], Record],
        single: Callable[[Message], Record],
    ) -> None:
        """``msgs`` as ``batch`` records of at most WAL_FRAME_RECORDS messages each, in
        order; a part with a code kept as its string (``code_key``) as ``single`` records.
        ``codes``: the messages' codes as the records hold them, if the broker has them
        (MessageListener), so they are not converted again (docs/performance.md
        "Session 9: WAL codes")."""
        records: list[Record] = []
        step = WAL_FRAME_RECORDS
        for start in range(0, len(msgs), step):
            part = msgs[start : start + step] if len(msgs) > step else msgs
            if codes is not None:
                records.append(batch(part, codes[CODE_BYTES * start : CODE_BYTES * (start + step)]))
                continue
            try:
                part_codes = join_codes(part)
            except (AttributeError, OverflowError):  # a code kept as its string
                self.append_batches(records)  # (in order)
                records = []
                self.append_many([single(m) for m in part])
                continue
            records.append(batch(part, part_codes))
        if records:
            self.append_batches(records)

    def meta_changed(self, msg: Message) -> None:
        self.append(meta_of(self.broker, msg.code))

    def dedup_remembered(self, key: str, code: Code, until: float) -> None:
        self.append((DEDUP, key, code_text(code), until))

    def save_trace(self) -> None:
        """The trace events recorded since the last call as TRACE_EVENTS records (a
        few thousand events each): called once per loop iteration that recorded any."""
        trace = self.broker.trace
        if trace is None:
            return
        pairs = trace.take_unsaved()
        pairs[::2] = map(code_text, pairs[::2])  # code, event, code, event...
        for start in range(0, len(pairs), TRACE_RECORD_PAIRS):
            self.append((TRACE_EVENTS, pairs[start : start + TRACE_RECORD_PAIRS]))


TRACE_RECORD_PAIRS = 4000  # list items (code, event, ...) per TRACE_EVENTS record


def _settle_written(future: asyncio.Future[None], wal: WalWriter) -> None:
    """``Storage.written_ticket``'s end, after the WAL's flush: done, or its error."""
    if future.done():
        return
    if wal.error is None:
        future.set_result(None)
    else:
        future.set_exception(wal.error)
        future.exception()  # retrieved: shared, and a caller may only wait for it


def update_record(msg: Message) -> tuple[object, ...]:
    return (
        UPDATE,
        code_text(msg.code),
        msg.status,
        msg.consumed_time,
        msg.delay_time,
        msg.attempts,
    )


def meta_of(broker: Broker, code: Code) -> tuple[object, ...]:
    """The META record of one message, from the broker's TTLs and dead-letter history."""
    lifetimes = broker.lifetimes
    return meta_record(
        code, lifetimes.ttl(code), lifetimes.deadline(code), broker.dead_letters.history(code)
    )


def snapshot_extras(broker: Broker) -> Extras:
    """META records for the messages that need one, DEDUP records for the remembered ids."""
    codes = set(broker.lifetimes.codes()) | set(broker.dead_letters.codes())
    trace = broker.trace
    return Extras(
        {code: meta_of(broker, code) for code in codes},
        [(DEDUP, key, code_text(code), until) for key, code, until in broker.dedup.items()],
        trace.items() if trace is not None else [],
    )


class ChangeCounter:
    """isPersistent 1: only notes that a snapshot is due."""

    __slots__ = ("changes",)

    def __init__(self) -> None:
        self.changes = 0

    def message_added(self, msg: Message) -> None:
        self.changes += 1

    def message_updated(self, msg: Message) -> None:
        self.changes += 1

    def message_removed(self, msg: Message) -> None:
        self.changes += 1

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        self.changes += len(msgs)

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        self.changes += len(msgs)


class StorageHost(Protocol):
    """What storage needs of the broker it keeps (server/runtime.py BrokerRuntime)."""

    config: Config
    broker: Broker
    loop: asyncio.AbstractEventLoop

    def restored(self) -> None:
        """Recovered messages are in the broker: their timers are due."""

    def storage_opened(self, storage: Storage) -> None:
        """Read ``durable_barrier``, ``durable_ticket``, ``wal`` and the health (``fault``,
        ``write_failures``) from ``storage`` from now on."""

    def refuse_writes(self, source: str, ws_text: str, http_text: str | None = None) -> None: ...

    def durable_settled(self) -> None:
        """The WAL settled tickets (fsync ``always``): replies waiting for them can go."""

    def accept_writes(self, source: str) -> None: ...


class Storage:
    def __init__(self, runtime: StorageHost, files: FileOps = REAL) -> None:
        mq = runtime.config.mq
        self.runtime = runtime
        self.broker = runtime.broker
        self.loop = runtime.loop
        self.mode = mq.isPersistent
        self.policy = mq.fsync
        self.persist_every = float(mq.persistentTime)
        self.compact_bytes = mq.walCompactBytes
        self.datadir = DataDir(Path(mq.dataDir), mq.persistentFile, files)
        self.wal_executor = ThreadPoolExecutor(1, thread_name_prefix="kapokmq-wal")
        self.snap_executor = ThreadPoolExecutor(1, thread_name_prefix="kapokmq-snapshot")
        self.wal: WalWriter | None = None
        # fsync `always`: awaited before HTTP Send answers, and, for pipelined producers, a
        # future done once everything published so far is on disk (None if it already is)
        self.durable_barrier: Callable[[], Awaitable[None]] | None = None
        self.durable_ticket: Callable[[], asyncio.Future[None] | None] | None = None
        self.listener: WalListener | None = None
        self._written: asyncio.Future[None] | None = None  # written_ticket's
        self.counter = ChangeCounter()
        self.fault: str | None = None  # why storage is unavailable right now
        self.write_failures = 0  # failed writes, fsyncs and rebuild attempts since start
        self.rebuilds = 0  # successful recoveries from a failure
        self._retry_delay = RETRY_FIRST
        self._retry: asyncio.TimerHandle | None = None
        self._rebuild_task: asyncio.Task[None] | None = None
        self.available = asyncio.Event()  # set while writes succeed (tests await it)
        self.available.set()
        self.seq = 0  # newest sequence number in use
        self.last_snapshot_at = time.monotonic()
        self.last_snapshot_bytes = 0
        self.last_snapshot: SnapshotStats | None = None
        self.recovered: Recovered | None = None
        self._snapshot_task: asyncio.Task[SnapshotStats | None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._snapshot_soon = False
        self._trace_pending = False  # a save of the trace's new events is scheduled

    # ------------------------------------------------------------------ start
    def open(self) -> None:
        """Recover (or discard) what is on disk and start logging; call before listening."""
        mq = self.runtime.config.mq
        self.datadir.open()
        try:
            if mq.recoveryStrategy == 1:
                # a million new long-lived objects: the cyclic GC would re-scan them again
                # and again while they are built (about 40% of a recovery); freeze instead
                gc.disable()
                try:
                    self.recovered = recover(self.datadir, skip_corrupt=bool(mq.recoverSkipCorrupt))
                    self._restore(self.recovered)
                finally:
                    gc.enable()
                self.seq = self.recovered.max_seq
            else:
                self._discard()
            self.seq += 1
            if self.mode == Persistence.WAL:
                wal = self._new_wal(self.seq)
                self.listener = WalListener(wal, self.broker)
                self.broker.add_listener(self.listener)
                self.broker.add_journal(self.listener)
                trace = self.broker.trace
                if trace is not None:
                    trace.unsaved = []
                    trace.on_unsaved = self._trace_soon
                if wal.error is not None:  # e.g. still no space: start, refusing writes
                    self._failed(wal.error.reason)
            else:
                self.broker.add_listener(self.counter)
                if self.datadir.read_only:  # no snapshot could be written: say so now
                    self._failed(f"Read-only file system ({self.datadir.path})")
        except BaseException:
            self.datadir.close()
            raise
        self._timer = self.loop.call_later(TICK, self._tick)
        self.runtime.storage_opened(self)
        where = self.datadir.path.resolve()
        if self.mode == Persistence.WAL:
            log.info("storage: WAL + snapshots in %s (fsync %s)", where, self.policy)
        else:
            log.info("storage: snapshots every %gs in %s", self.persist_every, where)

    def _new_wal(self, seq: int) -> WalWriter:
        """A writer for segment ``seq``, made the one the runtime and the listener use."""
        wal = WalWriter(
            self.loop,
            self.datadir,
            seq,
            self.policy,
            self.wal_executor,
            self._wal_failed,
            self.runtime.durable_settled,
        )
        self.wal = wal
        if self.listener is not None:
            self.listener.use(wal)
        if self.policy == "always":  # stable callables: connections may keep them
            self.durable_barrier = self._barrier
            self.durable_ticket = self._ticket
        return wal

    def _trace_soon(self) -> None:
        if not self._trace_pending:
            self._trace_pending = True
            self.loop.call_soon(self._save_trace)

    def _save_trace(self) -> None:
        self._trace_pending = False
        if self.listener is not None:
            self.listener.save_trace()

    def _ticket(self) -> asyncio.Future[None] | None:
        assert self.wal is not None
        return self.wal.ticket()

    async def _barrier(self) -> None:
        assert self.wal is not None
        await self.wal.barrier()

    def written_ticket(self) -> asyncio.Future[None] | None:
        """fsync ``everysec`` and ``no``: a future done once what was appended so far has
        reached the OS (None if it has), for an answer written at once otherwise, as HTTP
        Send's is, before the iteration's WAL write: a SIGKILL in between would lose an
        answered message (docs/durability.md "Guarantees"). Shared by the iteration's
        callers; never cancel it. Done by a callback queued after the WAL's flush (which
        the append queued), so it costs no write of its own; failed with the WAL's error
        if that write failed, so the answer is the error, never an ``ok`` for a message
        not written (docs/durability.md "When the disk fails")."""
        wal = self.wal
        if wal is None or wal.written >= wal.appended:
            return None
        written = self._written
        if written is None or written.done():
            written = self._written = self.loop.create_future()
            self.loop.call_soon(_settle_written, written, wal)
        return written

    def _restore(self, rec: Recovered) -> None:
        mq = self.runtime.config.mq
        started = time.perf_counter()
        cutoff = time.time() - mq.cleanTime if mq.isClean else None
        drop_consumed = bool(mq.isCleanConsumed)
        consumed = Status.CONSUMED
        table, rec.messages = rec.messages, {}  # the table becomes the store's own
        dropped = 0
        if cutoff is not None or drop_consumed:
            gone = [
                code
                for code, msg in table.items()
                # arrival < cutoff + 1 first (CreateTime, its whole second, < cutoff needs
                # it): no call for the many young messages
                if (cutoff is not None and msg.arrival < cutoff + 1 and msg.stale_before(cutoff))
                or (drop_consumed and msg.status is consumed)
            ]
            for code in gone:
                del table[code]
            dropped = len(gone)
        self.broker.restore_table(table)
        self.broker.restore_extras(rec.meta, rec.dedup)
        rec.meta.clear()
        rec.dedup.clear()
        trace = self.broker.trace
        if trace is not None:
            for code, events in rec.traces.items():
                trace.restore(code, events)
        rec.traces.clear()
        self.runtime.restored()
        if len(self.broker.store) > 10_000:
            # long-lived and acyclic: keep the cyclic GC from re-scanning them (a full
            # collection over a million messages pauses the loop for ~100 ms). No collect
            # first: recovery makes no cycles, and scanning a million objects costs ~1 s.
            gc.freeze()
        counts = self.broker.store.counts()
        if rec.snapshot_seq is not None or rec.wal_segments:
            log.info(
                "recovered %d messages (%d waiting, %d delayed, %d consumed, %d dead; "
                "%d expired or cleaned) from %s and %d WAL record(s) in %d segment(s) "
                "in %.2fs",
                len(self.broker.store),
                counts[Status.WAITING],
                counts[Status.DELAYED],
                counts[Status.CONSUMED],
                counts[Status.DEAD],
                dropped,
                f"snapshot {rec.snapshot_seq} ({rec.snapshot_messages} messages)"
                if rec.snapshot_seq is not None
                else "no snapshot",
                rec.wal_records,
                rec.wal_segments,
                rec.seconds + time.perf_counter() - started,
            )
        if rec.wal_records or rec.problems or dropped:
            self._snapshot_soon = True  # fold the replayed log into a fresh snapshot

    def _discard(self) -> None:
        """recoveryStrategy 0: start empty; an empty snapshot makes older files obsolete."""
        listing = self.datadir.list()
        self.seq = listing.max_seq + 1
        old = len(listing.snapshots) + len(listing.wals)
        try:
            try:
                write_snapshot_sync(self.datadir, self.seq, [])
            except OSError:  # no room even for that: the files it obsoletes go first
                self.datadir.remove_before(self.seq)
                write_snapshot_sync(self.datadir, self.seq, [])
            self.datadir.remove_before(self.seq)
            for temp in listing.temps:
                temp.unlink(missing_ok=True)
        except OSError as exc:  # nothing old is left to recover: start, refusing writes
            self._failed(_reason(exc, f"writing snapshot {self.seq}"))
        if old:
            log.warning(
                "recoveryStrategy 0: discarded %d data file(s) in %s", old, self.datadir.path
            )

    # ------------------------------------------------------------------ snapshots
    def _tick(self) -> None:
        self._timer = self.loop.call_later(TICK, self._tick)
        if self._snapshot_task is not None or self.fault is not None:
            return
        due = self._snapshot_soon
        if self.wal is not None:
            due = due or self.wal.bytes_written >= max(self.compact_bytes, self.last_snapshot_bytes)
        elif self.counter.changes:
            # a tick early rather than late: a change just after a snapshot is then saved
            # within persistentTime seconds, not persistentTime + a tick
            due = due or time.monotonic() - self.last_snapshot_at > self.persist_every - TICK
        if due:
            self._snapshot_soon = False
            self.start_snapshot()

    def start_snapshot(self) -> asyncio.Task[SnapshotStats | None]:
        """Begin a snapshot in the background (or return the one already running)."""
        if self._snapshot_task is None:
            self._snapshot_task = self.loop.create_task(self._snapshot())
        return self._snapshot_task

    async def _snapshot(self) -> SnapshotStats | None:
        try:
            self.seq += 1
            seq = self.seq
            if self.wal is not None:
                self.wal.rotate(seq)
            messages = list(self.broker.store)
            extras = snapshot_extras(self.broker)
            changes = self.counter.changes
            self.last_snapshot_at = time.monotonic()
            log.info("snapshot %d started (%d messages)", seq, len(messages))
            stats = await write_snapshot(
                self.loop, self.snap_executor, self.datadir, seq, messages, extras
            )
            await self.loop.run_in_executor(self.snap_executor, self.datadir.remove_before, seq)
            self.counter.changes -= changes
            self.last_snapshot_bytes = stats.bytes
            self.last_snapshot = stats
            log.info(
                "snapshot %d written: %d messages, %d bytes in %.2fs",
                seq,
                stats.messages,
                stats.bytes,
                stats.seconds,
            )
            return stats
        except (OSError, StorageError) as exc:
            self._failed(_reason(exc, f"writing snapshot {self.seq}"))
            return None
        finally:
            self._snapshot_task = None

    # ------------------------------------------------------------------ failure and resume
    def _wal_failed(self, error: WalError) -> None:
        self._failed(error.reason)

    def _failed(self, reason: str) -> None:
        """A write failed: refuse producer writes and retry (logged once per state change)."""
        self.write_failures += 1
        if self.fault == reason:
            return
        if self.fault is None:
            log.critical(
                "storage unavailable: %s. Producers get 'error: storage unavailable' until a "
                "fresh snapshot can be written; stored messages are still delivered",
                reason,
            )
        elif _cause(self.fault) != _cause(reason):  # not once per retry and file name
            log.error("storage still unavailable, now: %s", reason)
        self.fault = reason
        self.available.clear()
        text = unavailable(reason)
        self.runtime.refuse_writes(GATE, text, text)
        if self._retry is None and self._rebuild_task is None:
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        delay = self._retry_delay
        self._retry_delay = min(delay * 2, RETRY_MAX)
        self._retry = self.loop.call_later(delay, self._start_rebuild)

    def _start_rebuild(self) -> None:
        self._retry = None
        if self._rebuild_task is None:
            self._rebuild_task = self.loop.create_task(self._rebuild())

    async def _rebuild(self) -> None:
        """Write the state in memory as snapshot N with a new WAL segment N, then delete
        everything older: the files are consistent again whatever was half-written."""
        try:
            while self._snapshot_task is not None:
                await self._snapshot_task
            self.seq += 1
            seq = self.seq
            failed = self.wal
            if failed is not None:
                wal = self._new_wal(seq)  # from here on, changes go to the new segment
                await failed.close()
                if wal.error is not None:
                    raise wal.error
            messages = list(self.broker.store)
            changes = self.counter.changes
            stats = await write_snapshot(
                self.loop,
                self.snap_executor,
                self.datadir,
                seq,
                messages,
                snapshot_extras(self.broker),
            )
            if self.wal is not None and self.wal.error is not None:
                raise self.wal.error
            await self.loop.run_in_executor(self.snap_executor, self.datadir.remove_before, seq)
            self.datadir.lock_file()  # started on a read-only file system: lock it now
        except (OSError, StorageError) as exc:
            reason = _reason(exc, f"writing snapshot {self.seq}")
            log.debug("storage rebuild %d failed: %s", self.seq, reason)
            self._failed(reason)
            self._rebuild_task = None
            self._schedule_retry()
            return
        self._rebuild_task = None
        self.counter.changes -= changes
        self.last_snapshot_bytes = stats.bytes
        self.last_snapshot = stats
        self.last_snapshot_at = time.monotonic()
        self.rebuilds += 1
        log.warning(
            "storage available again after: %s. Snapshot %d holds all %d messages; writes "
            "are accepted",
            self.fault,
            seq,
            stats.messages,
        )
        self.fault = None
        self._retry_delay = RETRY_FIRST
        self.runtime.accept_writes(GATE)
        self.available.set()

    # ------------------------------------------------------------------ stop
    async def close(self) -> None:
        """Flush everything and write a final snapshot (after the listener has stopped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for task in (self._rebuild_task, self._snapshot_task):
            if task is not None:
                await task
        if self._retry is not None:  # the rebuild failed and scheduled another
            self._retry.cancel()
            self._retry = None
        dirty = bool(self.counter.changes) or self.fault is not None
        if self.listener is not None:
            self.listener.save_trace()
        if self.wal is not None:
            dirty = dirty or self.wal.bytes_written > 0 or self.wal.appended > 0
            await self.wal.close()
            self.durable_barrier = None
            self.durable_ticket = None
        if dirty or self._snapshot_soon:
            seq = self.seq + 1
            messages = list(self.broker.store)
            extras = snapshot_extras(self.broker)
            try:
                stats = await self.loop.run_in_executor(
                    self.snap_executor, write_snapshot_sync, self.datadir, seq, messages, extras
                )
                await self.loop.run_in_executor(self.snap_executor, self.datadir.remove_before, seq)
                self.seq = seq
                log.info(
                    "final snapshot %d: %d messages, %d bytes", seq, stats.messages, stats.bytes
                )
            except Exception as exc:
                if self.mode == Persistence.WAL:
                    log.error("final snapshot failed (%s); the WAL is kept", exc)
                else:  # isPersistent 1: nothing else holds the changes since the last one
                    log.error(
                        "final snapshot failed (%s): the changes since the last snapshot are lost",
                        exc,
                    )
        self.datadir.close()
        self.wal_executor.shutdown(wait=True)
        self.snap_executor.shutdown(wait=True)


def _cause(reason: str) -> str:
    """A reason without what was being done: "No space left on device" of
    "No space left on device (creating MQDATA.000000000007.wal)"."""
    return reason.partition(" (")[0]


def _reason(exc: BaseException, doing: str) -> str:
    """The operator's reason for a failure: what failed and while doing what."""
    if isinstance(exc, WalError):
        return exc.reason
    return f"{describe(exc)} ({doing})"


def open_storage(runtime: StorageHost, files: FileOps = REAL) -> Storage | None:
    """Start durable storage per ``mq.isPersistent`` (None for memory only)."""
    if runtime.config.mq.isPersistent == Persistence.MEMORY:
        return None
    storage = Storage(runtime, files)
    storage.open()
    return storage


__all__ = ["Storage", "StorageError", "StorageHost", "open_storage"]

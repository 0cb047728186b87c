"""The sans-I/O broker: every state change of every message happens here.

Driven only by method calls and an injected clock; no sockets, no asyncio. The transport
layer calls ``publish``/``ack``/``attach_consumer``..., arranges for ``dispatch`` to run
soon after ``on_dirty`` fires, and calls ``tick`` at ``next_deadline``. Storage and
replication subscribe to message changes through ``MessageListener``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple, Protocol, cast

import orjson

from kapokmq.config import Config
from kapokmq.core.dedup import DedupWindow, dedup_key
from kapokmq.core.dispatch import FANOUT, dispatch
from kapokmq.core.lifetimes import EXPIRED, MAX_DELIVERIES, DeadLetters, Lifetimes
from kapokmq.core.schedule import Scheduler
from kapokmq.core.store import MessageStore
from kapokmq.core.topics import STALLED_AFTER, ConsumerSession, Deliver, Topic
from kapokmq.core.trace import (
    CONSUMER_GONE,
    DEAD,
    DELETED,
    DELIVERED_NOW,
    REDELIVERED,
    REPLICATED,
    REQUEUED,
    SLOW_CONSUMER,
    TIMEOUT,
    Source,
    Trace,
)
from kapokmq.model import (
    GONE,
    IDLE,
    ClientInfo,
    Code,
    CodeGenerator,
    Flight,
    Message,
    Status,
    body_of,
    code_key,
    code_keys,
    code_text,
)
from kapokmq.protocol import Extras, SendItem

Clock = Callable[[], float]

# messages one step of the mq.isClean check looks at: a few ms of loop time per step
# (docs/performance.md, "The isClean check")
CLEAN_SLICE = 2_000

_WAITING = Status.WAITING
_DELAYED = Status.DELAYED
_CONSUMED = Status.CONSUMED
_delay_of = itemgetter(1)  # a SendItem's DelayTime


class MessageListener(Protocol):
    """Receives every message state change, in order (storage, replication)."""

    def message_added(self, msg: Message) -> None: ...

    def message_updated(self, msg: Message) -> None:
        """Status, ConsumedTime or DelayTime changed."""

    def message_removed(self, msg: Message) -> None: ...

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        """``message_added`` for each of a batch (one producer's read), in order: new
        messages of one topic, one creation time and arrival, none consumed or pushed
        yet, delayed exactly when their delay is > 0 (the WAL's ADD_BATCH record).
        ``codes``: their codes as 16 big-endian bytes each when the caller has them
        (storage/format.py ``join_codes``), else None."""

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        """``message_updated`` for each of a batch (one consumer's acks), in order: all
        consumed at one ConsumedTime (the WAL's CONSUMED_BATCH record). ``codes`` as for
        ``messages_added``."""


class Journal(Protocol):
    """Keeps what storage and replication must know beyond message state: TTLs,
    dead-letter history and dedup ids (storage/manager.py in WAL mode, a master's
    cluster/replication.py). A change is journaled before the listeners hear of the
    message it belongs to."""

    def meta_changed(self, msg: Message) -> None:
        """The message's TTL deadline or dead-letter history changed."""

    def dedup_remembered(self, key: str, code: Code, until: float) -> None: ...


_dumps = orjson.dumps


def _restored(flight: Flight) -> Flight:
    """A restored message's flight: not in flight, not pushed by this broker, its
    ConsumedTime kept (model.Flight)."""
    if flight.owner is None and not flight.at:
        return flight
    return Flight(None, 0.0, flight.consumed) if flight.consumed else IDLE


def _landed(flight: Flight) -> Flight:
    """A flight's end: not in flight any more; any copies still in pub/sub windows
    leave them by its time (``Broker._sweep``)."""
    return Flight(None, flight.at) if flight.at else IDLE


class ReplicaExtras(NamedTuple):
    """What a replicated message carries beyond its A1 JSON (``replicate_extras``)."""

    ttl: int = 0
    deadline: float | None = None  # when its TTL runs out (None: not running)
    history: list[tuple[int, str]] | None = None  # dead-letter history, oldest first
    dedup: tuple[str, float] | None = None  # (dedup key, until)


@dataclass(slots=True)
class ProducerSession:
    session_id: int
    info: ClientInfo


class Broker:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        on_dirty: Callable[[], None] | None = None,
        new_code: Callable[[], Code] | None = None,
        on_room: Callable[[], None] | None = None,
    ) -> None:
        """``on_dirty``: something can be dispatched, call ``dispatch`` soon. ``on_room``:
        the backlog went below messageChanBuffer. Message changes go to the listeners of
        ``add_listener``."""
        self.config = config
        self.clock = clock
        self.on_dirty = on_dirty
        self.on_room = on_room
        self._generator = CodeGenerator() if new_code is None else None
        self.new_code = new_code or cast("CodeGenerator", self._generator).next_code
        self.store = MessageStore()
        self.scheduler = Scheduler()
        self.lifetimes = Lifetimes()
        self.dead_letters = DeadLetters()
        self._topic_ttl: dict[str, int] = {}
        self.dedup = DedupWindow(config.mq.dedupMaxIds)
        # storage (WAL mode) and a master's replication hub: see add_journal
        self.journals: list[Journal] = []
        self._topic_window: dict[str, int] = {}
        # mq.trace (docs/protocol.md "Message trace"); None: off, no hook does anything
        self.trace: Trace | None = (
            Trace(min(1.0, mq_trace), config.mq.traceMaxEvents, clock, self.store.get)
            if (mq_trace := config.mq.trace) > 0
            else None
        )
        self.topics: dict[str, Topic] = {}
        self.producers: dict[int, ProducerSession] = {}
        self.listeners: list[MessageListener] = []
        self._dirty: set[Topic] = set()
        self._overflowed: list[ConsumerSession] = []  # slow consumers found by dispatch
        self.paused = False
        self._sessions = 0  # consumer sessions, all topics
        self._subscribers = 0  # the pub/sub ones among them
        self._ids = itertools.count(1)
        mq = config.mq
        self.retry_after: float | None = float(mq.pushRetryTime) if mq.isRePush else None
        # how often in-flight tables are checked for redelivery (its worst-case lateness)
        self.sweep_every = min(0.1, mq.pushRetryTime / 10)
        self._next_sweep = clock()
        self._next_stall_check = clock()
        self.max_deliveries = mq.maxDeliveries
        self.clean_consumed = bool(mq.isCleanConsumed)
        self.backlog_limit = mq.messageChanBuffer
        self.clean_after: int | None = mq.cleanTime if mq.isClean else None
        self.check_every = float(mq.checkSpeed)
        self._next_expiry = clock() + self.check_every
        self.clean_slice = CLEAN_SLICE
        # optional rate limit of the original: pushCount pushes per pushMessagesSpeed seconds
        self.throttle = config.push_throttle()
        self._budget = mq.pushCount
        self._budget_reset = clock()

    # ------------------------------------------------------------------ topics & sessions
    def topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(name, self.config.topic_push_type(name))
        return topic

    def attach_consumer(
        self, info: ClientInfo, deliver: Deliver, overflow: Callable[[], None] | None = None
    ) -> ConsumerSession:
        """A new consumer session. ``overflow`` closes its connection when the broker cuts
        it as a slow consumer (without one it is never cut)."""
        topic = self.topic(info.topic)
        mq = self.config.mq
        session = ConsumerSession(
            next(self._ids),
            info,
            topic,
            mq.maxInFlight,
            deliver if self.trace is None else self.trace.tracing_deliver(deliver, info.client_id),
            mq.maxPendingBytes,
            overflow,
            self.clock(),
        )
        topic.consumers.append(session)
        self._sessions += 1
        self._subscribers += topic.pubsub
        if topic.ready:
            self._mark(topic)
        return session

    def detach_consumer(self, session: ConsumerSession, why: str = CONSUMER_GONE) -> None:
        """Forget a session; whatever it had in flight goes back to the front of the queue
        (redelivered because of ``why``, in the message trace)."""
        topic = session.topic
        try:
            topic.consumers.remove(session)
        except ValueError:
            return
        self._sessions -= 1
        self._subscribers -= topic.pubsub
        if topic.pubsub:
            back = self._orphaned_copies(session)
        else:
            back = [
                m
                for m in session.in_flight.values()
                if m.flight.owner is session and m.status is Status.WAITING
            ]
        for msg in back:
            msg.flight = IDLE
        session.in_flight.clear()
        session.pending.clear()
        session.pending_bytes = 0
        if back:
            topic.stats.redelivered += len(back)  # pushed again, as after pushRetryTime
            if self.trace is not None:
                self.trace.happened(back, REDELIVERED, self.clock(), why)
            back.sort(key=lambda m: m.arrival)
            topic.ready.extendleft(reversed(back))
            self._mark(topic)

    def pause_pushes(self, session: ConsumerSession) -> None:
        """The session's socket buffer is full (the transport's ``pause_writing``)."""
        session.paused = True

    def resume_pushes(self, session: ConsumerSession) -> None:
        """The socket buffer drained (``resume_writing``): push again."""
        if session.paused:
            session.paused = False
            self._mark(session.topic)

    def cut_stalled(self, session: ConsumerSession, paused_since: float, after: float) -> bool:
        """Point-to-point: a session whose socket has stayed full since ``paused_since`` and
        that has acked nothing for ``after`` seconds is a slow consumer. It is cut, so the
        messages it holds go to the other consumers at once, if another one can take them
        now: else the cut would only drop a consumer that may be working on one message at
        a time (as the Go client does), and what it holds is bounded anyway (its window and
        mq.maxPendingBytes). True if it was cut."""
        if (
            session.topic.pubsub
            or not session.in_flight
            or self.clock() - max(paused_since, session.acked_at) < after
            or not any(
                other is not session and not other.paused and len(other.in_flight) < other.window
                for other in session.topic.consumers
            )
        ):
            return False
        self._cut(session)
        return True

    def _cut(self, session: ConsumerSession) -> None:
        """A slow consumer: detached at once (its point-to-point messages go back to the
        queue, its queued copies are dropped) and its transport told to close it."""
        if session not in session.topic.consumers:
            return
        session.topic.stats.slow_consumers += 1
        self.detach_consumer(session, SLOW_CONSUMER)
        if session.overflow is not None:
            session.overflow()

    def _orphaned_copies(self, session: ConsumerSession) -> list[Message]:
        """Pub/sub: the leaving session's messages that no remaining subscriber holds."""
        held: set[Code] = set()
        for other in session.topic.consumers:
            held.update(other.in_flight)
            held.update(m.code for m in other.pending)
        orphaned: dict[Code, Message] = {}
        for msg in (*session.in_flight.values(), *session.pending):
            if msg.flight.owner is FANOUT and msg.status is Status.WAITING and msg.code not in held:
                orphaned[msg.code] = msg
        return list(orphaned.values())

    def attach_producer(self, info: ClientInfo) -> ProducerSession:
        session = ProducerSession(next(self._ids), info)
        self.producers[session.session_id] = session
        return session

    def detach_producer(self, session: ProducerSession) -> None:
        self.producers.pop(session.session_id, None)

    def consumers(self) -> list[ConsumerSession]:
        return [c for topic in self.topics.values() for c in topic.consumers]

    # ------------------------------------------------------------------ messages
    @property
    def backlog(self) -> int:
        """Unconsumed messages (waiting or delayed): what messageChanBuffer bounds."""
        return self.store.unconsumed()

    @property
    def full(self) -> bool:
        return self.store.unconsumed() >= self.backlog_limit

    def publish(self, topic_name: str, data: str, delay: int = 0, ttl: int = 0) -> Message:
        """One message (``ttl`` seconds, 0 = the topic's default). Unlike ``publish_many``
        it does not check the backlog limit: callers that must honour it check ``full``."""
        item: SendItem = (data, delay, Extras(ttl)) if ttl else (data, delay)
        return self._add(topic_name, [item])[0][0]

    def publish_once(self, topic_name: str, item: SendItem, source: Source | None = None) -> str:
        """One message (HTTP Send); returns its code, or the first message's code when its
        MessageId was seen within the topic's dedup window (nothing stored then)."""
        msgs, _, _ = self._add(topic_name, [item], source)
        if msgs:
            return code_text(msgs[0].code)
        assert len(item) == 3  # only a dedup id makes _add skip an item
        first = self.dedup.first(dedup_key(topic_name, item[2].message_id), self.clock())
        assert first is not None
        return code_text(first)

    def publish_many(
        self, topic_name: str, items: list[SendItem], source: Source | None = None
    ) -> tuple[int, bool]:
        """``publish`` for the (MessageData, DelayTime) frames a producer sent in one read,
        oldest first, as far as the backlog limit allows. Returns how many were taken
        (duplicates within the dedup window included: they are answered as the first) and
        whether any was delayed or has a TTL (the caller's timer may need to fire
        sooner). ``source`` names the producer in the message trace."""
        room = self.backlog_limit - self.store.unconsumed()
        if room < len(items):
            if room <= 0:
                return 0, False
            items = items[:room]
        _, delayed, taken = self._add(topic_name, items, source)
        return taken, delayed

    def _add(
        self, topic_name: str, items: list[SendItem], source: Source | None = None
    ) -> tuple[list[Message], bool, int]:
        """New messages, queued or scheduled, stored and announced; whether any is
        delayed or has a TTL (a new deadline); how many items were taken (new or
        duplicates of a dedup id). The clock, the topic and the dirty mark are looked at
        once per call."""
        now = self.clock()
        topic = self.topics.get(topic_name) or self.topic(topic_name)
        new_code = self.new_code
        ready = topic.ready.append
        msgs: list[Message] = []
        append = msgs.append
        waiting = delayed = False
        n_delayed = 0
        default_ttl = self._topic_ttl.get(topic_name)
        if default_ttl is None:
            default_ttl = self._topic_ttl[topic_name] = self.config.topic_ttl(topic_name)
        duplicates = 0
        raw: bytes | None = None  # the codes' bytes, if known (MessageListener)
        if (
            items
            and not default_ttl
            and max(map(len, items)) == 2
            and max(map(_delay_of, items)) <= 0
        ):
            # the usual read: (MessageData, DelayTime) frames, none delayed, no TTL, no
            # MessageId: one comprehension, ~800 instructions per message less than the
            # loop below (callgrind; docs/performance.md "Session 7: e2e")
            codes, raw = self._new_codes(len(items))
            pairs = cast("list[tuple[str, int]]", items)
            msgs = [
                Message(code, topic_name, body_of(data), delay, _WAITING, now)
                for code, (data, delay) in zip(codes, pairs, strict=True)
            ]
            topic.ready.extend(msgs)
            items = []
            waiting = True
        for item in items:
            key = None
            if len(item) == 2:
                data, delay = item
                ttl = default_ttl
            else:
                data, delay, extras = item
                ttl = extras.ttl or default_ttl
                if extras.message_id and self._dedup_window(topic_name):
                    key = dedup_key(topic_name, extras.message_id)
                    if self.dedup.first(key, now) is not None:
                        duplicates += 1  # answered as the first, not stored again
                        self.dedup.duplicates += 1
                        continue
            # model.body_of, its common case inlined (a call less per message)
            if data.isascii() and "<" not in data and ">" not in data and "&" not in data:
                body = _dumps(data)[1:-1]
            else:
                body = body_of(data)
            if delay > 0:
                msg = Message(new_code(), topic_name, body, delay, _DELAYED, now)
                self.scheduler.add_delay(msg, now + delay)
                delayed = True
                n_delayed += 1
            else:
                msg = Message(new_code(), topic_name, body, delay, _WAITING, now)
                ready(msg)
                waiting = True
            if ttl:
                self.lifetimes.track(msg, ttl, None if delay > 0 else now)
                delayed = True  # its expiry is a deadline too: the caller's timer must know
                for journal in self.journals:
                    journal.meta_changed(msg)
            if key is not None:
                until = now + self._dedup_window(topic_name)
                self.dedup.remember(key, msg.code, until, now)
                for journal in self.journals:
                    journal.dedup_remembered(key, msg.code, until)
            append(msg)
        self.store.add_new(msgs, n_delayed)
        topic.stats.published += len(msgs)
        if self.trace is not None:
            self.trace.published(msgs, now, source)
        if waiting:
            self._mark(topic)
        for listener in self.listeners:
            listener.messages_added(msgs, raw)
        return msgs, delayed, len(msgs) + duplicates

    def _new_codes(self, n: int) -> tuple[list[Code], bytes | None]:
        """``n`` new codes and, when they are the generator's (``new_code`` not
        replaced, as tests do), their bytes (``CodeGenerator.take``)."""
        generator = self._generator
        if generator is not None and self.new_code is generator.next_code:
            return generator.take(n)
        new_code = self.new_code
        return [new_code() for _ in range(n)], None

    def _dedup_window(self, topic_name: str) -> int:
        window = self._topic_window.get(topic_name)
        if window is None:
            window = self._topic_window[topic_name] = self.config.topic_dedup_window(topic_name)
        return window

    def restore(self, msg: Message) -> None:
        """Insert a recovered or replicated message without notifying listeners.

        Waiting messages are queued for immediate delivery: nobody holds them any more.
        """
        msg.flight = _restored(msg.flight)
        self.store.add(msg)
        topic = self.topic(msg.topic)
        if msg.status is Status.DELAYED:
            self.scheduler.add_delay(msg, msg.arrival + msg.delay_time)
        elif msg.status is Status.WAITING:
            topic.ready.append(msg)
            self._mark(topic)

    def restore_many(self, msgs: list[Message]) -> None:
        """``restore`` for many messages, in creation order, without a call per message."""
        self.store.add_many(msgs)
        self._queue_restored(msgs)

    def restore_table(self, table: dict[Code, Message]) -> None:
        """``restore_many`` for a recovery's table (code -> message, creation order),
        which becomes the store's own table (``MessageStore.add_table``)."""
        self.store.add_table(table)
        self._queue_restored(table.values())

    def _queue_restored(self, msgs: Iterable[Message]) -> None:
        """Restored messages go to their topic's ready queue or to the delay schedule."""
        waiting, delayed = Status.WAITING, Status.DELAYED
        add_delay = self.scheduler.add_delay
        topics: dict[str, Topic] = {}
        for msg in msgs:
            flight = msg.flight
            if flight.owner is not None or flight.at:  # a recovery's are not (_restored)
                msg.flight = _restored(flight)
            status = msg.status
            if status is waiting:
                topic = topics.get(msg.topic)
                if topic is None:
                    topic = topics[msg.topic] = self.topic(msg.topic)
                topic.ready.append(msg)
            elif status is delayed:
                add_delay(msg, msg.arrival + msg.delay_time)
        for topic in topics.values():
            self._mark(topic)

    def replicate(self, record: Message) -> None:
        """Apply a master's view of one message (slave side of master-slave sync).

        New codes are inserted; known ones take the record's status, ConsumedTime and
        DelayTime. Listeners are told, so a slave's own storage keeps the copy.
        """
        msg = self.store.get(record.code)
        if msg is None:
            self.restore(record)
            if self.trace is not None:  # its trace here starts with its arrival
                self.trace.published([record], self.clock(), REPLICATED)
            for listener in self.listeners:
                listener.message_added(record)
            return
        msg.delay_time = record.delay_time
        self.store.retimed(msg)
        status = record.status
        if msg.status is not status:
            self._release(msg)
            if msg.status is _CONSUMED:  # its pub/sub flight was kept (Flight)
                msg.flight = _landed(msg.flight)
            if msg.status is _DELAYED:
                self.scheduler.cancel(msg.code)
            self.store.set_status(msg, status)
            topic = self.topic(msg.topic)
            if status is Status.WAITING:
                topic.ready.append(msg)
                self._mark(topic)
            elif status is Status.DELAYED:
                self.scheduler.add_delay(msg, msg.arrival + msg.delay_time)
        msg.consumed_time = record.consumed_time  # after the flight's changes above
        for listener in self.listeners:
            listener.message_updated(msg)

    def _release(self, msg: Message) -> None:
        """Take a message out of whatever in-flight tables hold it. A consumed one is in
        none any more (its pub/sub copies stay in the other subscribers' windows)."""
        holder = msg.flight.owner
        if holder is None or holder is GONE or msg.status is _CONSUMED:
            return
        topic = self.topic(msg.topic)
        if isinstance(holder, ConsumerSession):
            holder.in_flight.pop(msg.code, None)
        else:
            for session in topic.consumers:
                session.in_flight.pop(msg.code, None)
        msg.flight = _landed(msg.flight)
        self._mark(topic)  # a window opened

    def ack(self, session: ConsumerSession, code: Code) -> bool:
        """Mark a message consumed; unknown or already consumed codes are ignored. ``code``
        as the wire spells it or as the broker keeps it (``model.code_key``)."""
        code = code_key(code)
        now = self.clock()
        if self.trace is not None:
            self.trace.acked((code,), session.topic.name, session.info.client_id, now)
        msg = session.in_flight.pop(code, None)
        if msg is None:
            if self._ack_other(session, code, None):
                session.acked_at = now
                return True
            return False
        session.acked_at = now
        topic = session.topic
        dirty = self._dirty  # self._mark(topic), inlined: its window has room again
        if topic not in dirty:
            was_clean = not dirty
            dirty.add(topic)
            if was_clean and self.on_dirty is not None:
                self.on_dirty()
        if msg.flight.owner is session and msg.status is _WAITING:
            # the common case, a point-to-point message acked by the session holding it
            msg.flight = IDLE
            return self._consumed(msg, topic)
        return self._ack_other(session, code, msg)

    def ack_many(self, session: ConsumerSession, codes: Sequence[Code]) -> None:
        """``ack`` for every code a consumer sent in one read, with the per-ack
        bookkeeping (clock, counters, window, backlog room, listeners) done once per batch.

        The common acks are collected and consumed together: a point-to-point message
        acked by the session holding it, a pub/sub message acked first by any subscriber
        (holder ``FANOUT``). A pub/sub copy already consumed by another subscriber only
        leaves this session's window. Before any other ack the collected ones are
        consumed, so the result is that of ``ack`` code by code (a repeated code is
        ignored, like a second ``ack``)."""
        self.ack_keys(session, code_keys(codes))

    def ack_keys(
        self, session: ConsumerSession, codes: Sequence[Code], raw: bytes | None = None
    ) -> None:
        """``ack_many`` for codes already as the broker keeps them (``model.code_key``;
        a consumer session's, server/session.py ``ack_codes``). A common ack's message
        is marked consumed in the same pass (its status, ConsumedTime and flight); the
        counts, the listeners and the rest follow once per run of them
        (``_consumed_marked``). ``raw``: ``codes`` as 16 big-endian bytes each, handed
        to the listeners when every ack was a common one (so they are the consumed
        messages' codes, in order: MessageListener ``messages_updated``)."""
        now = self.clock()
        if self.trace is not None:
            self.trace.acked(codes, session.topic.name, session.info.client_id, now)
        consumed_at = int(now)
        # ConsumedTime is kept by the flight (model.Flight): one for the point-to-point
        # messages (their flight is over), one per pub/sub fan-out (kept for the copies)
        landed = Flight(None, 0.0, consumed_at)
        fanned = twin = IDLE
        topic = session.topic
        in_flight = session.in_flight
        held = len(in_flight)
        pop = in_flight.pop
        done: list[Message] = []
        applied = False  # an uncommon ack consumed a message (the common ones: ``held``)
        for code in codes:
            msg = pop(code, None)
            if msg is not None:
                status = msg.status
                if status is _CONSUMED:
                    continue  # another subscriber's ack consumed it: its copy is acked
                if status is _WAITING:
                    flight = msg.flight
                    holder = flight.owner
                    if holder is session:
                        msg.flight = landed
                        msg.status = _CONSUMED
                        done.append(msg)
                        continue
                    if holder is FANOUT:  # its flight stays: the others' copies go by it
                        if flight is not fanned:
                            fanned, twin = flight, flight.landed(consumed_at)
                        msg.flight = twin
                        msg.status = _CONSUMED
                        done.append(msg)
                        continue
            if done:
                self._consumed_marked(done, topic)
                done = []
            if self._ack_other(session, code, msg):
                applied = True
        if len(in_flight) != held:  # its window has room again
            self._mark(topic)
            applied = True
        if applied:  # unknown or repeated acks: no sign of life (docs/protocol.md "Slow consumers")
            session.acked_at = now
        if done:
            self._consumed_marked(done, topic, raw if len(done) == len(codes) else None)

    def _ack_other(self, session: ConsumerSession, code: Code, msg: Message | None) -> bool:
        """The uncommon acks: not in this session's window (``msg`` None), pub/sub copies,
        messages redelivered to someone else, or already consumed, dead or deleted.

        An ack only ever applies to a message of the session's own topic; any other code
        is ignored and counted as unknown (docs/protocol.md, "Consumer session"). An ack
        of a dead message is too late: it is ignored and counted, the message stays dead
        ("TTL and dead letters")."""
        topic = session.topic
        if msg is None:
            msg = self.store.get(code)
            if msg is None or msg.topic != topic.name:
                topic.stats.unknown_acks += 1
                return False
        holder = msg.flight.owner
        if holder is GONE or msg.status is Status.CONSUMED or msg.status is Status.DELAYED:
            return False
        if msg.status is Status.DEAD:
            topic.stats.late_acks += 1
            return False
        if isinstance(holder, ConsumerSession) and holder is not session:
            holder.in_flight.pop(code, None)
            self._mark(topic)
        # pub/sub (holder FANOUT): the message is consumed, but every other subscriber's
        # copy stays in that subscriber's window until it acks it or leaves (or its flight
        # is swept), so a subscriber that does not read cannot be pushed past its window
        if holder is not FANOUT:
            msg.flight = IDLE
        return self._consumed(msg, topic)

    def _consumed_marked(
        self, msgs: list[Message], topic: Topic, codes: bytes | None = None
    ) -> None:
        """What follows once waiting messages were set consumed (``_consumed``, or
        ``ack_keys`` for every ack of a consumer's read): the counts, the listeners
        (``codes``: the messages' codes as MessageListener takes them, if known),
        isCleanConsumed and the backlog room."""
        store = self.store
        store.consumed_waiting(len(msgs))
        topic.stats.acked += len(msgs)
        for listener in self.listeners:
            listener.messages_updated(msgs, codes)
        if self.clean_consumed:
            for msg in msgs:
                self._remove(msg)
        if store.unconsumed() + len(msgs) >= self.backlog_limit:  # it was full before
            self._room()

    def _consumed(self, msg: Message, topic: Topic) -> bool:
        """Mark a waiting message consumed (one ack's)."""
        msg.status = _CONSUMED
        msg.consumed_time = int(self.clock())
        self._consumed_marked([msg], topic)
        return True

    def delete(self, code: Code, by_console: bool = True) -> bool:
        """Delete a message: the console's DelMessage (a trace event), or another
        broker's deletion replicated (``by_console`` False: none)."""
        code = code_key(code)
        msg = self.store.get(code)
        if msg is None:
            return False
        was_full = self.full
        if by_console and self.trace is not None:
            self.trace.happened((msg,), DELETED, self.clock())
        self._remove(msg)
        if was_full:
            self._room()
        return True

    def requeue(self, code: Code) -> bool:
        """Give a dead (or consumed) message another life: waiting, attempts reset."""
        code = code_key(code)
        msg = self.store.get(code)
        if msg is None or msg.status not in (Status.DEAD, Status.CONSUMED):
            return False
        now = self.clock()
        was_dead = msg.status is Status.DEAD
        if was_dead:
            self.dead_letters.requeued(code, now)
        if self.trace is not None:
            self.trace.happened((msg,), REQUEUED, now)
        msg.attempts = 0
        msg.flight = _landed(msg.flight)  # ConsumedTime 0 too
        self._become_due(msg, now, journal=was_dead)  # a new life: a TTL runs again from now
        return True

    def deliver_now(self, code: Code) -> bool:
        """Make a delayed message due at once (the console's "deliver now"). Its DelayTime
        becomes the seconds it actually waited, as a redelivery rewrites it."""
        code = code_key(code)
        msg = self.store.get(code)
        if msg is None or msg.status is not Status.DELAYED:
            return False
        now = self.clock()
        self.scheduler.cancel(code)
        if self.trace is not None:
            self.trace.happened((msg,), DELIVERED_NOW, now)
        msg.delay_time = max(0, int(now) - msg.create_time)
        self.store.retimed(msg)
        self._become_due(msg, now)
        return True

    def _become_due(self, msg: Message, since: float, journal: bool = False) -> None:
        """``msg`` waits from ``since`` on (its delay ended, or the console said so): its
        TTL runs from then, it is queued and the listeners are told. ``journal``: its
        dead-letter history changed too."""
        self.store.set_status(msg, Status.WAITING)
        lifetimes = self.lifetimes
        if lifetimes and lifetimes.ttl(msg.code):
            lifetimes.start(msg, since)
            journal = True
        if journal:
            self._meta_changed(msg)
        topic = self.topic(msg.topic)
        topic.ready.append(msg)
        self._mark(topic)
        for listener in self.listeners:
            listener.message_updated(msg)

    def _remove(self, msg: Message) -> None:
        if msg.status is _DELAYED:
            self.scheduler.cancel(msg.code)
        self._release(msg)
        self.store.remove(msg.code)  # its flight becomes GONE: after _release
        if self.lifetimes:
            self.lifetimes.forget(msg.code)
        if self.dead_letters:
            self.dead_letters.forget(msg.code)
        for listener in self.listeners:
            listener.message_removed(msg)

    # ------------------------------------------------------------------ dispatch
    def _mark(self, topic: Topic) -> None:
        if not self._dirty and self.on_dirty is not None:
            self._dirty.add(topic)
            self.on_dirty()
        else:
            self._dirty.add(topic)

    def set_paused(self, paused: bool) -> None:
        """Stop or resume all pushing (a slave does not push while its master lives)."""
        self.paused = paused
        if not paused and self._dirty and self.on_dirty is not None:
            self.on_dirty()

    def dispatch(self) -> int:
        """Push everything that can be pushed now; returns the number of pushes."""
        if self.paused:
            return 0
        if self.throttle is not None:
            return self._dispatch_throttled(self.throttle)
        pushed = 0
        now = self.clock()
        overflowed = self._overflowed
        while self._dirty:
            topic = self._dirty.pop()
            pushed += dispatch(topic, now, -1, overflowed)
        if overflowed:
            self._cut_overflowed()
        return pushed

    def _cut_overflowed(self) -> None:
        overflowed, self._overflowed = self._overflowed, []
        for session in overflowed:
            self._cut(session)

    def _dispatch_throttled(self, throttle: tuple[int, float]) -> int:
        count, period = throttle
        now = self.clock()
        if now >= self._budget_reset:
            self._budget = count
            self._budget_reset = now + period
        pushed = 0
        while self._dirty and self._budget > 0:
            topic = self._dirty.pop()
            n = dispatch(topic, now, self._budget, self._overflowed)
            self._budget -= n
            pushed += n
            if self._budget == 0:
                self._dirty.add(topic)  # may have more; retried when the budget resets
        if self._overflowed:
            self._cut_overflowed()
        return pushed

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        deadline = self.scheduler.next_deadline()
        if self.lifetimes:
            dies = self.lifetimes.next_deadline()
            if dies is not None and (deadline is None or dies < deadline):
                deadline = dies
        if (
            self.retry_after is not None
            and self._sessions
            and (deadline is None or self._next_sweep < deadline)
        ):
            deadline = self._next_sweep
        if self._subscribers and (deadline is None or self._next_stall_check < deadline):
            deadline = self._next_stall_check
        throttled = self.throttle is not None and self._dirty and self._budget <= 0
        if throttled and (deadline is None or self._budget_reset < deadline):
            deadline = self._budget_reset
        if self.clean_after is not None and (deadline is None or self._next_expiry < deadline):
            deadline = self._next_expiry
        return deadline

    def tick(self) -> None:
        """Fire every timer that is due: delays, TTLs, redeliveries, expiry."""
        now = self.clock()
        lifetimes = self.lifetimes
        for msg in self.scheduler.due_delays(now):
            if msg.status is _DELAYED and msg.flight.owner is not GONE:  # always, as kept
                self._become_due(msg, msg.arrival + msg.delay_time)  # TTL from when due
        if lifetimes:
            for msg in lifetimes.due(now):
                self._die(msg, EXPIRED, now)
        if self.retry_after is not None and now >= self._next_sweep:
            self._next_sweep = now + self.sweep_every
            self._sweep(now, now - self.retry_after)
        if self.clean_after is not None and now >= self._next_expiry:
            self._next_expiry = now + self.check_every
            self.expire(now)
        if self._subscribers and now >= self._next_stall_check:
            self._next_stall_check = now + STALLED_AFTER
            self._cut_stalled_subscribers(now)

    def _cut_stalled_subscribers(self, now: float) -> None:
        """Pub/sub: a subscriber with more than mq.maxPendingBytes queued that has acked
        nothing for ``STALLED_AFTER`` s is cut even when no new message comes to find it at
        dispatch, e.g. after a short burst (docs/protocol.md "Slow consumers")."""
        stalled = [
            session
            for topic in self.topics.values()
            if topic.pubsub
            for session in topic.consumers
            if session.pending_bytes > session.max_bytes
            and now - session.acked_at > STALLED_AFTER
            and session.overflow is not None
        ]
        for session in stalled:
            self._cut(session)

    def _sweep(self, now: float, pushed_before: float) -> None:
        """Redeliver what was pushed at or before ``pushed_before`` and is still unacked.

        In-flight tables are in push order (a re-push re-inserts at the end), so only
        each table's oldest entries are looked at: O(sessions + due), not O(messages).
        """
        for topic in list(self.topics.values()):
            for session in list(topic.consumers):
                in_flight = session.in_flight
                while in_flight:
                    msg = next(iter(in_flight.values()))
                    flight = msg.flight
                    if flight.at > pushed_before:
                        break
                    if flight.owner is not GONE and msg.status is Status.WAITING:
                        self._redeliver(msg, now)
                    in_flight.pop(msg.code, None)

    def _meta_changed(self, msg: Message) -> None:
        for journal in self.journals:
            journal.meta_changed(msg)

    def restore_extras(
        self,
        meta: dict[Code, tuple[int, float | None, list[tuple[int, str]]]],
        dedup: dict[str, tuple[Code, float]],
    ) -> None:
        """TTLs, dead-letter histories and dedup ids read back by storage (after
        ``restore_many``); ids whose window ended are dropped."""
        store = self.store
        for code, (ttl, deadline, history) in meta.items():
            msg = store.get(code)
            if msg is None:
                continue
            if ttl:
                self.lifetimes.restore(msg, ttl, deadline)
            if history:
                self.dead_letters.restore(code, history)
        now = self.clock()
        for key, (code, until) in sorted(dedup.items(), key=lambda item: item[1][1]):
            if until > now:
                self.dedup.restore(key, code, until)

    def replicate_extras(self, code: Code, extras: ReplicaExtras) -> None:
        """Another broker's TTL, dead-letter history and dedup id for a message it just
        sent us (docs/protocol.md "Master-slave sync"; the message may be gone already,
        its dedup id still counts). Applied only where they differ from ours, and
        journaled, so the copy survives our restart too."""
        code = code_key(code)
        msg = self.store.get(code)
        if msg is not None:
            lifetimes = self.lifetimes
            ttl, deadline, history = extras.ttl, extras.deadline, extras.history
            changed = False
            if ttl and (lifetimes.ttl(code) != ttl or lifetimes.deadline(code) != deadline):
                lifetimes.restore(msg, ttl, deadline)
                changed = True
            if history is not None and history != self.dead_letters.history(code):
                self.dead_letters.restore(code, history)
                changed = True
            if changed:
                self._meta_changed(msg)
        if extras.dedup is not None:
            key, until = extras.dedup
            now = self.clock()
            if until > now and self.dedup.first(key, now) != code:
                self.dedup.restore(key, code, until)
                for journal in self.journals:
                    journal.dedup_remembered(key, code, until)

    def _die(self, msg: Message, reason: str, now: float) -> None:
        """Dead-letter a waiting message (Status 2): never delivered again unless re-queued."""
        self._release(msg)
        was_full = self.full
        self.store.set_status(msg, Status.DEAD)
        self.dead_letters.died(msg.code, now, reason)
        if self.trace is not None:
            self.trace.happened((msg,), DEAD, now, reason)
        self._meta_changed(msg)
        self.topic(msg.topic).stats.dead += 1
        for listener in self.listeners:
            listener.message_updated(msg)
        if was_full:
            self._room()

    def _redeliver(self, msg: Message, now: float) -> None:
        topic = self.topic(msg.topic)
        if self.max_deliveries and msg.attempts >= self.max_deliveries:
            self._die(msg, MAX_DELIVERIES, now)
        else:
            self._release(msg)
            if self.trace is not None:
                self.trace.happened((msg,), REDELIVERED, now, TIMEOUT)
            # the original rewrites DelayTime so the next resend is one pushRetryTime later
            msg.delay_time = int(now) - msg.create_time
            topic.stats.redelivered += 1
            topic.ready.append(msg)
            for listener in self.listeners:
                listener.message_updated(msg)
            self._mark(topic)

    def expire(self, now: float) -> int:
        """Delete messages older than cleanTime, whatever their status (a delayed one
        counts from its due time: ``Message.stale_before``). One call looks at no more
        than ``clean_slice`` messages (``MessageStore.take_stale``); if there may be
        more, the next tick goes on (the loop serves what waits in between)."""
        if self.clean_after is None:
            return 0
        old, more = self.store.take_stale(now - self.clean_after, self.clean_slice)
        if more:
            self._next_expiry = now
        if old:
            was_full = self.full
            for msg in old:
                self._remove(msg)
            if was_full:
                self._room()
        return len(old)

    def _room(self) -> None:
        if self.on_room is not None and not self.full:
            self.on_room()

    # ------------------------------------------------------------------ queries
    def clients(self) -> tuple[list[ClientInfo], list[ClientInfo]]:
        """(consumers, producers) in join order."""
        consumers = sorted(self.consumers(), key=lambda s: s.session_id)
        producers = sorted(self.producers.values(), key=lambda s: s.session_id)
        return [c.info for c in consumers], [p.info for p in producers]

    def add_listener(self, listener: MessageListener) -> None:
        self.listeners.append(listener)

    def add_journal(self, journal: Journal) -> None:
        self.journals.append(journal)

    def remove_journal(self, journal: Journal) -> None:
        """Stop telling ``journal``; nothing if it was not told."""
        with contextlib.suppress(ValueError):
            self.journals.remove(journal)

    def remove_listener(self, listener: MessageListener) -> None:
        """Stop telling ``listener``; nothing if it was not listening."""
        with contextlib.suppress(ValueError):
            self.listeners.remove(listener)

    def messages(self) -> Iterable[Message]:
        return iter(self.store)

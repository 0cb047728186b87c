"""Master-slave sync (docs/protocol.md "Master-slave sync"): the master streams every
message change to its slaves.

Wire format, as the original: a slave opens ``GET /Sync/Conn`` on the master, does the
usual secret-key handshake, then receives one message JSON (the push layout, real Status and
ConsumedTime) per change and sends ``hi`` every second. Ours adds: a new slave first
receives every stored message (the original only streamed later changes), a deletion is
sent as ``{"MessageCode":"…","Deleted":true}``, and a record carries the message's TTL,
dead-letter history and dedup id under keys an original broker ignores (``record_of``).

While connected to a live master a slave stores but neither pushes nor accepts writes
(producers are told to send to the master, through the runtime's write gate); when the
master is unreachable it takes over: it pushes and accepts writes. A slave that stops
reading is cut by the master (``ReplicationHub._why_cut``); a slave whose connection the
master ended, while the master's port still answers, follows it again instead. When the
master is back, the slave first hands back what changed during the takeover (messages
stored, consumed or deleted) and every message it holds that is not consumed yet (a master
that restarted without storage has none of them), sent up the same connection as
newline-separated records followed by ``{"HandBack": n}``. The master applies them
monotonically (an unknown message is added, a consumed or dead one marked so, never the
reverse) and answers ``{"HandBackAck": n}``; only then does the slave forget its takeover
changes.
``/Sync/Conn`` is served only by a master (``sync.isSync: 1``, not a slave).
See docs/protocol.md, Master-slave sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import WSCloseCode, WSMsgType

from kapokmq.client.connection import handshake as login
from kapokmq.client.errors import AuthenticationError, ConnectionLostError, ProtocolError
from kapokmq.config import Config
from kapokmq.core.broker import Broker, ReplicaExtras
from kapokmq.core.dedup import dedup_key, split_dedup_key
from kapokmq.frames import ReplyWriter, text_frame
from kapokmq.login import HEARTBEAT, SYNC_EXTENSIONS
from kapokmq.model import Code, Message, Status, code_key, code_text, dumps, new_message

log = logging.getLogger(__name__)

# The initial dump is streamed (docs/protocol.md "Master-slave sync"): records are
# encoded in chunks of about DUMP_CHUNK_BYTES, handed to the slave's connection while less
# than DUMP_AHEAD is unread there, else looked at again after DUMP_POLL s, doubling up to
# DUMP_POLL_MAX while the slave reads nothing (its transport is the back-pressure, as for a
# consumer: server/session.py PAUSE_ABOVE). A large store is never encoded whole.
DUMP_CHUNK_BYTES = 256 * 1024
DUMP_AHEAD = 1 << 20
DUMP_POLL = 0.005
DUMP_POLL_MAX = 0.1
_DELAYED = Status.DELAYED
SLAVE_SOURCE = "slave"  # the write gate's source while a master is followed
ACK_SOURCE = "sync.ack"  # the write gate's source while sync.ack 1 has no slave
# bytes of records per hand-back frame (a bigger record goes alone): under what a master
# reads from a slave (server/session.py sync_frame_limit)
HAND_BACK_BYTES = 48 * 1024
MASTER_PROBE_TIMEOUT = 2.0  # a master that ended our connection must take a new one by then
REFOLLOW_FIRST = 0.1  # s before following again a master that ended our connection,
REFOLLOW_RESET_AFTER = 30.0  # doubling while each connection lasted less than this
RECONNECT_MAX = 2.0  # s between a slave's attempts to reach a lost master (before jitter)
# A master that restarts with stored messages holds its pushes until its slaves have handed
# back their takeovers (or said they have nothing: a first heartbeat), at most this long: its
# own copies are older than a slave's, which may have consumed them meanwhile.
HAND_BACK_WAIT = 5.0
# ... and at least this long: by then every slave still trying to reach it has connected
# (its longest pause between attempts, RECONNECT_MAX jittered by +50 %, and a login), so
# the first slave back does not release the pushes before another has handed back.
SLAVES_BACK_WITHIN = RECONNECT_MAX * 1.5 + 0.5


def record_of(
    broker: Broker, msg: Message, dedup: tuple[str, float] | None = None
) -> dict[str, Any]:
    """A message as sync sends it: the original's message JSON (all an original broker
    reads), plus, only where they apply, keys it ignores: ``TTL`` and ``Deadline`` (unix
    s, while the TTL runs), ``History`` (dead-letter events), ``Arrival`` (exact, while
    delayed), ``MessageId`` and ``DedupUntil`` (``dedup`` = (key, until), sent with the
    message's first record). docs/protocol.md, Master-slave sync."""
    record = msg.to_dict()
    code = msg.code
    lifetimes = broker.lifetimes
    if lifetimes:
        ttl = lifetimes.ttl(code)
        if ttl:
            record["TTL"] = ttl
            deadline = lifetimes.deadline(code)
            if deadline is not None:
                record["Deadline"] = deadline
    letters = broker.dead_letters
    if letters:
        history = letters.history_view(code)
        if history:
            record["History"] = history
    if msg.status is _DELAYED:
        record["Arrival"] = msg.arrival
    if dedup is not None:
        record["MessageId"] = split_dedup_key(dedup[0])[1]
        record["DedupUntil"] = dedup[1]
    return record


def removal_of(code: Code, dedup: tuple[str, float] | None = None) -> dict[str, Any]:
    """A deletion; with ``dedup`` (key, until), the id it was sent with still counts."""
    record: dict[str, Any] = {"MessageCode": code_text(code), "Deleted": True}
    if dedup is not None:
        topic, message_id = split_dedup_key(dedup[0])
        record.update(Topic=topic, MessageId=message_id, DedupUntil=dedup[1])
    return record


def frame(record: dict[str, Any]) -> bytes:
    return text_frame(dumps(record) + b"\n")


def dedup_by_code(broker: Broker) -> dict[Code, tuple[str, float]]:
    """code -> (dedup key, until) of every remembered id (a snapshot or hand-back)."""
    return {code: (key, until) for key, code, until in broker.dedup.items()}


class ReplicaLost(ConnectionError):
    """A slave went away before confirming a message (sync.ack 1): its ``ok`` is withheld."""


# sync.ack 1: a connected slave that confirms nothing for this long (its own storage is
# failing, say) turns the waiting `ok`s into errors instead of leaving producers unanswered
CONFIRM_TIMEOUT = 5.0

# A slave that does not read (docs/protocol.md "Master-slave sync", Slow slaves): with more
# than mq.maxPendingBytes unread at the master and nothing of it read for SLAVE_STALLED_AFTER
# seconds, or more than LAG_FACTOR times that unread beyond what is left of its initial
# dump (it reads, but slower than the changes come), it is cut; looked at every
# SLAVE_WATCH_EVERY seconds while a slave is connected.
SLAVE_STALLED_AFTER = 5.0
SLAVE_LAG_FACTOR = 8
SLAVE_WATCH_EVERY = 1.0


class Replica(Protocol):
    """What sync needs of the broker it runs in (server/runtime.py BrokerRuntime): the
    broker and its loop, the replicate entry that arms timers, the write gate, and where
    an ``ok`` finds what it waits for under sync.ack 1."""

    config: Config
    broker: Broker
    loop: asyncio.AbstractEventLoop

    @property
    def durable_ticket(self) -> Callable[[], asyncio.Future[None] | None] | None:
        """What a slave's confirmation waits for: its own disk under fsync ``always``."""

    def replicate(self, record: Message, extras: ReplicaExtras | None = None) -> None: ...

    def replication_opened(self, ticket: Callable[[], asyncio.Future[None] | None]) -> None:
        """sync.ack 1: every ``ok`` also waits for ``ticket()``."""

    def refuse_writes(
        self, source: str, ws_text: str, http_text: str | None = None, *, degraded: bool = True
    ) -> None: ...

    def accept_writes(self, source: str) -> None: ...

    def sync_served(self, figures: Callable[[], tuple[int, int, int]]) -> None:
        """/metrics reports ``figures()``: slaves connected, bytes unread, slaves cut."""


class _Slave:
    """One connected slave: frames sent to it, and how many it confirmed (``{"Acked":n}``);
    bytes queued for it, and when it last read any (the slow-slave rule above)."""

    __slots__ = (
        "acked",
        "back",
        "cut",
        "drained",
        "dump_bytes",
        "extended",
        "handed_back",
        "queued",
        "read_at",
        "sent",
        "writer",
    )

    def __init__(self, writer: ReplyWriter, extended: bool, cut: Callable[[str], None]) -> None:
        self.writer = writer
        self.extended = extended  # a slave of ours (login.SYNC_EXTENSIONS)
        self.cut = cut  # closes its connection, logging why
        self.sent = 0
        self.acked = 0
        self.handed_back = 0  # records of a hand-back in progress
        self.back = not extended  # handed back or has nothing to (an original never hands back)
        self.queued = 0  # bytes handed to its connection so far
        self.dump_bytes = 0  # of which the initial dump
        self.drained = 0  # bytes it had read at the last look
        self.read_at = 0.0  # loop time of the last look that found it reading (or caught up)

    def send(self, frames: bytes, count: int) -> None:
        self.writer.send(frames)
        self.sent += count
        self.queued += len(frames)


def _overdue(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(
            ReplicaLost(
                f"the slave did not confirm this message within {CONFIRM_TIMEOUT:g} s (its "
                "storage may be failing); it may be stored on the master only: send it again"
            )
        )


class _Dump:
    """One slave's initial dump, streamed in chunks as its connection drains (DUMP_AHEAD).

    Changes made meanwhile are sent at once, between chunks, so a record of the dump is
    encoded when it is sent, from the message as it is then (never older than a change
    already sent; a message deleted meanwhile is skipped): the slave ends up with the
    store as it is, as when the dump was sent whole at attach."""

    __slots__ = ("codes", "hub", "ids", "next", "slave")

    def __init__(
        self,
        hub: ReplicationHub,
        slave: _Slave,
        codes: list[Code],
        ids: dict[Code, tuple[str, float]],
    ) -> None:
        self.hub = hub
        self.slave = slave
        self.codes = codes  # the store's order; each record is encoded when its chunk is sent
        self.ids = ids
        self.next = 0

    def step(self, waited: float) -> None:
        """Send chunks while the slave's connection has room; come back later if not."""
        slave = self.slave
        hub = self.hub
        if slave not in hub.slaves:
            return  # detached: what is not sent is not held either
        sent = False
        while self.next < len(self.codes) and slave.writer.buffered() < DUMP_AHEAD:
            self._send_chunk()
            sent = True
        if self.next < len(self.codes):
            poll = DUMP_POLL if sent else min(2 * waited, DUMP_POLL_MAX)
            hub.runtime.loop.call_later(poll, self.step, poll)
            return
        if slave.extended and self.ids:
            gone = [frame(removal_of(code, dedup)) for code, dedup in self.ids.items()]
            slave.send(b"".join(gone), len(gone))
            slave.dump_bytes += sum(map(len, gone))
        self.codes = []
        self.ids = {}

    def _send_chunk(self) -> None:
        broker = self.hub.runtime.broker
        get = broker.store.get
        ids = self.ids
        codes = self.codes
        frames: list[bytes] = []
        size = 0
        end = len(codes)
        i = self.next
        while i < end and size < DUMP_CHUNK_BYTES:
            msg = get(codes[i])
            i += 1
            if msg is not None:
                record = frame(record_of(broker, msg, ids.pop(msg.code, None)))
                frames.append(record)
                size += len(record)
        self.next = i
        if frames:
            self.slave.send(b"".join(frames), len(frames))
            self.slave.dump_bytes += size


class ReplicationHub:
    """Master side: a message listener that fans changes out to the connected slaves.

    It is registered with the broker (as a listener and a journal, which hands it the
    dedup ids of new messages) only while at least one slave is connected, so a broker
    without slaves pays nothing per message. With ``sync.ack: 1`` it also gives the
    runtime a replica ticket, so an ``ok`` waits until every connected slave confirmed the
    frames sent so far, and it refuses writes while no slave is connected.
    """

    def __init__(self, runtime: Replica) -> None:
        self.runtime = runtime
        self.slaves: list[_Slave] = []
        self.sync_ack = runtime.config.sync.ack == 1
        self._waiting: deque[tuple[asyncio.Future[None], list[tuple[_Slave, int]]]] = deque()
        # code -> (dedup key, until) of messages being added: sent with their first record
        self._new_ids: dict[Code, tuple[str, float]] = {}
        self.bound = runtime.config.mq.maxPendingBytes
        self.cut_slaves = 0  # /metrics kapokmq_sync_slaves_cut_total
        self._watch: asyncio.TimerHandle | None = None
        self._hold: asyncio.TimerHandle | None = None
        self._held_since = runtime.loop.time()
        runtime.sync_served(self.figures)
        if self.sync_ack:
            runtime.replication_opened(self.ticket)
            self._refuse_writes()
        self._hold_recovered()

    def _hold_recovered(self) -> None:
        """At start: hold the pushes of recovered messages until the slaves hand back (see
        HAND_BACK_WAIT); a master that starts empty has nothing stale to push."""
        broker = self.runtime.broker
        waiting = sum(1 for m in broker.messages() if m.status not in _SETTLED)
        if not waiting:
            return
        broker.set_paused(True)
        self._hold = self.runtime.loop.call_later(
            HAND_BACK_WAIT, self._release, f"no slave handed back within {HAND_BACK_WAIT:g} s"
        )
        log.info(
            "master: holding the pushes of %d recovered messages until its slaves hand back "
            "what they did while they had taken over (%g to %g s)",
            waiting,
            SLAVES_BACK_WITHIN,
            HAND_BACK_WAIT,
        )

    def _release(self, why: str) -> None:
        if self._hold is None:
            return
        self._hold.cancel()
        self._hold = None
        self.runtime.broker.set_paused(False)
        log.info("master: pushing (%s)", why)

    def _refuse_writes(self) -> None:
        self.runtime.refuse_writes(
            ACK_SOURCE,
            "sync.ack is 1 and no slave is connected; writes need both brokers",
            "no slave connected (sync.ack: 1)",
        )

    def attach(self, writer: ReplyWriter, extended: bool, cut: Callable[[str], None]) -> _Slave:
        """Stream the whole store, and every change from now on; to a slave of ours
        (``extended``) also the dedup ids whose message is gone. ``cut(reason)`` closes
        the slave's connection when it stops reading."""
        slave = _Slave(writer, extended, cut)
        broker = self.runtime.broker
        slave.read_at = self.runtime.loop.time()
        if not self.slaves:
            broker.add_listener(self)
            broker.add_journal(self)
            self._watch_in(SLAVE_WATCH_EVERY)
        self.slaves.append(slave)
        if slave.back:  # an original slave never hands anything back
            self._release_if_back("an original slave is following")
        if self.sync_ack:
            self.runtime.accept_writes(ACK_SOURCE)
        codes = [m.code for m in broker.messages()]
        _Dump(self, slave, codes, dedup_by_code(broker)).step(DUMP_POLL)
        return slave

    def received(self, slave: _Slave, payload: bytes) -> None:
        """A frame from the slave: its heartbeat, ``{"Acked":n}`` (sync.ack 1) or its
        hand-back (see above). A slave hands back before its first heartbeat."""
        if payload == HEARTBEAT:
            if self._hold is not None and not slave.back:
                self._slave_back(slave, "the slaves follow with nothing more to hand back")
            return
        if payload.startswith(b'{"Acked"'):
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                self.acked(slave, int(orjson.loads(payload).get("Acked")))
            return
        slave.handed_back = apply_hand_back(self.runtime, payload, slave.handed_back, slave)
        if self._hold is not None and not slave.back and payload.startswith(b'{"HandBack"'):
            self._slave_back(slave, "the slaves handed back their takeovers")

    def _slave_back(self, slave: _Slave, why: str) -> None:
        """A slave handed back or showed it has nothing to hand back."""
        slave.back = True
        self._release_if_back(why)

    def _release_if_back(self, why: str) -> None:
        """End the hold once every connected slave is back, but not before
        SLAVES_BACK_WITHIN: another slave may still be on its way."""
        if self._hold is None or not all(s.back for s in self.slaves):
            return
        wait = self._held_since + SLAVES_BACK_WITHIN - self.runtime.loop.time()
        if wait > 0:
            self.runtime.loop.call_later(wait, self._release_if_back, why)
        else:
            self._release(why)

    def detach(self, slave: _Slave) -> None:
        with contextlib.suppress(ValueError):
            self.slaves.remove(slave)
        if not self.slaves:
            self.runtime.broker.remove_listener(self)
            self.runtime.broker.remove_journal(self)
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            if self.sync_ack:
                self._refuse_writes()
        lost = ReplicaLost("the slave disconnected before it confirmed this message")
        for future, targets in self._waiting:
            if not future.done() and any(s is slave for s, _ in targets):
                future.set_exception(lost)
        self._settle()

    # ------------------------------------------------------------ slow slaves
    def figures(self) -> tuple[int, int, int]:
        """For /metrics: slaves connected, bytes queued for them and unread, slaves cut."""
        unread = sum(slave.writer.buffered() for slave in self.slaves)
        return len(self.slaves), unread, self.cut_slaves

    def _watch_in(self, seconds: float) -> None:
        self._watch = self.runtime.loop.call_later(seconds, self._look_at_slaves)

    def _look_at_slaves(self) -> None:
        self._watch_in(SLAVE_WATCH_EVERY)
        now = self.runtime.loop.time()
        for slave in list(self.slaves):
            reason = self._why_cut(slave, now)
            if reason is not None:
                self.cut_slaves += 1
                slave.cut(reason)  # its connection's end detaches it

    def _why_cut(self, slave: _Slave, now: float) -> str | None:
        """Why this slave must be cut (the rule above), or None."""
        unread = slave.writer.buffered()
        drained = slave.queued - unread
        if drained > slave.drained or unread <= self.bound:
            slave.drained = drained
            slave.read_at = now
            lagging = unread - max(0, slave.dump_bytes - drained)
            if lagging > SLAVE_LAG_FACTOR * self.bound:
                return (
                    f"slow slave: {lagging} bytes of changes unread, over {SLAVE_LAG_FACTOR} x "
                    f"mq.maxPendingBytes ({self.bound})"
                )
            return None
        if now - slave.read_at >= SLAVE_STALLED_AFTER:
            return (
                f"slow slave: {unread} bytes unread, over mq.maxPendingBytes ({self.bound}), "
                f"and nothing read for {now - slave.read_at:.1f} s"
            )
        return None

    # ------------------------------------------------------------ sync.ack
    def ticket(self) -> asyncio.Future[None] | None:
        """Done once every connected slave confirmed all frames sent so far."""
        targets = [(s, s.sent) for s in self.slaves if s.acked < s.sent]
        if not targets:
            return None
        future: asyncio.Future[None] = self.runtime.loop.create_future()
        self._waiting.append((future, targets))
        self.runtime.loop.call_later(CONFIRM_TIMEOUT, _overdue, future)
        return future

    def acked(self, slave: _Slave, count: int) -> None:
        slave.acked = max(slave.acked, count)
        self._settle()

    def _settle(self) -> None:
        waiting = self._waiting
        while waiting:
            future, targets = waiting[0]
            if not future.done():
                if any(s.acked < n for s, n in targets):
                    return
                future.set_result(None)
            waiting.popleft()

    # ------------------------------------------------------------ listener
    def _send(self, frames: bytes, count: int) -> None:
        for slave in self.slaves:
            slave.send(frames, count)

    def message_added(self, msg: Message) -> None:
        self._send(frame(record_of(self.runtime.broker, msg, self._new_ids.pop(msg.code, None))), 1)

    def message_updated(self, msg: Message) -> None:
        self._send(frame(record_of(self.runtime.broker, msg)), 1)

    def message_removed(self, msg: Message) -> None:
        self._send(frame(removal_of(msg.code)), 1)

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        broker = self.runtime.broker
        ids = self._new_ids
        if ids:
            frames = [frame(record_of(broker, m, ids.pop(m.code, None))) for m in msgs]
        else:
            frames = [frame(record_of(broker, m)) for m in msgs]
        self._send(b"".join(frames), len(msgs))

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        broker = self.runtime.broker
        self._send(b"".join([frame(record_of(broker, m)) for m in msgs]), len(msgs))

    # ------------------------------------------------------------ journal
    def meta_changed(self, msg: Message) -> None:
        """Nothing to send yet: the message's next record carries its TTL and history."""

    def dedup_remembered(self, key: str, code: Code, until: float) -> None:
        self._new_ids[code] = (key, until)


def serves_sync(config: Config) -> bool:
    """Only a master streams its store: ``sync.isSync: 1`` and not a slave."""
    return config.sync.isSync == 1 and config.sync.isSlave == 0


def apply_hand_back(runtime: Replica, raw: bytes, count: int, slave: _Slave) -> int:
    """Master side: apply one record a slave hands back; acknowledge its end marker."""
    data = raw if isinstance(raw, bytes) else raw.encode()
    if data.startswith(b'{"HandBack"'):
        with contextlib.suppress(orjson.JSONDecodeError):
            total: Any = orjson.loads(data).get("HandBack")
            log.info("slave handed back %d records (of %s) from its takeover", count, total)
            slave.send(text_frame(dumps({"HandBackAck": total}) + b"\n"), 1)
        return 0
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            record, extras = decode_record(line)
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.warning("ignoring malformed hand-back record: %s", exc)
            continue
        merge_handed_back(runtime, record, extras)
        count += 1
    return count


_SETTLED = (Status.CONSUMED, Status.DEAD)


def merge_handed_back(
    runtime: Replica, record: Message | Code, extras: ReplicaExtras | None = None
) -> None:
    """Apply a slave's record only where it is news: an unknown message, a consumption,
    a death (with its history) or a deletion; a message the master already consumed (or
    saw die) never comes back."""
    broker = runtime.broker
    if not isinstance(record, Message):
        broker.delete(record, by_console=False)
        if extras is not None:
            broker.replicate_extras(record, extras)
        return
    known = broker.store.get(record.code)
    if (
        known is None
        or (record.status is Status.CONSUMED and known.status is not Status.CONSUMED)
        or (record.status is Status.DEAD and known.status not in _SETTLED)
    ):
        runtime.replicate(record, extras)


def apply_record(runtime: Replica, raw: str | bytes) -> None:
    """Apply another broker's view of one message (or its deletion); ValueError if bad."""
    record, extras = decode_record(raw)
    if not isinstance(record, Message):
        runtime.broker.delete(record, by_console=False)
        if extras is not None:
            runtime.broker.replicate_extras(record, extras)
    else:
        runtime.replicate(record, extras)


class TakeoverChanges:
    """A broker listener kept during a takeover: the codes whose state changed, in order."""

    def __init__(self) -> None:
        self.codes: dict[Code, None] = {}

    def _note(self, msg: Message) -> None:
        self.codes.pop(msg.code, None)
        self.codes[msg.code] = None

    def message_added(self, msg: Message) -> None:
        self._note(msg)

    def message_updated(self, msg: Message) -> None:
        self._note(msg)

    def message_removed(self, msg: Message) -> None:
        self._note(msg)

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        for msg in msgs:
            self._note(msg)

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        for msg in msgs:
            self._note(msg)


def decode_record(raw: str | bytes) -> tuple[Message | Code, ReplicaExtras | None]:
    """A replicated message (or the code of a deleted one) and what it carries beyond
    the original's JSON (None: nothing; see ``record_of``). ValueError if malformed."""
    obj: Any = orjson.loads(raw)
    if not isinstance(obj, dict) or not isinstance(obj.get("MessageCode"), str):
        raise ValueError("not a message record")
    code = code_key(obj["MessageCode"])
    data = obj.get("MessageData", "")
    topic = obj.get("Topic", "")
    if not isinstance(data, str) or not isinstance(topic, str):
        raise ValueError("MessageData and Topic must be strings")
    extras = _extras_of(obj, topic)
    if obj.get("Deleted") is True:
        return code, extras
    numbers = [obj.get(k, 0) for k in ("CreateTime", "ConsumedTime", "DelayTime", "Status")]
    if any(type(n) is not int for n in numbers):
        raise ValueError("CreateTime, ConsumedTime, DelayTime and Status must be integers")
    create, consumed, delay, status = numbers
    arrival = obj.get("Arrival", create)
    if not _is_time(arrival):
        raise ValueError("Arrival must be a number")
    message = new_message(
        code, topic, data, create, consumed, delay, Status(status), float(arrival)
    )
    return message, extras


def _extras_of(obj: dict[str, Any], topic: str) -> ReplicaExtras | None:
    """The keys of ``record_of`` beyond the original's, checked; None if there are none."""
    ttl = obj.get("TTL", 0)
    deadline = obj.get("Deadline")
    events = obj.get("History")
    message_id = obj.get("MessageId")
    if not ttl and deadline is None and events is None and message_id is None:
        return None  # an original broker's record, or a message without extras
    if type(ttl) is not int or ttl < 0:
        raise ValueError("TTL must be a whole number")
    if deadline is not None and not _is_time(deadline):
        raise ValueError("Deadline must be a number")
    history: list[tuple[int, str]] | None = None
    if events is not None:
        if not isinstance(events, list):
            raise ValueError("History must be a list")
        history = []
        for event in events:
            if not (
                isinstance(event, dict)
                and type(event.get("Time")) is int
                and isinstance(event.get("Event"), str)
            ):
                raise ValueError("History entries must be {Event, Time}")
            history.append((event["Time"], event["Event"]))
    dedup: tuple[str, float] | None = None
    if message_id is not None:
        until: Any = obj.get("DedupUntil")
        if not isinstance(message_id, str) or not _is_time(until):
            raise ValueError("MessageId must be a string with a DedupUntil number")
        dedup = (dedup_key(topic, message_id), float(until))
    return ReplicaExtras(ttl, None if deadline is None else float(deadline), history, dedup)


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def hand_back_frames(records: list[bytes]) -> list[bytes]:
    """Records joined by newlines into frames of at most HAND_BACK_BYTES (a record that
    is bigger on its own is a frame of its own)."""
    frames: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for record in records:
        if batch and size + len(record) + 1 > HAND_BACK_BYTES:
            frames.append(b"\n".join(batch))
            batch, size = [], 0
        batch.append(record)
        size += len(record) + 1
    if batch:
        frames.append(b"\n".join(batch))
    return frames


class Confirmations:
    """Slave side: tell the master how many frames we applied, ``{"Acked": n}``, after they
    are on our disk when our storage says so (fsync ``always``); coalesced per loop step,
    so a burst costs one small frame. The master's sync.ack 1 waits for these."""

    def __init__(self, runtime: Replica, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.runtime = runtime
        self.ws = ws
        self.count = 0
        self.confirmed = 0
        self._task: asyncio.Task[None] | None = None

    def received(self) -> None:
        self.count += 1
        if self._task is None or self._task.done():
            self._task = self.runtime.loop.create_task(self._confirm())

    async def _confirm(self) -> None:
        await asyncio.sleep(0)  # the rest of this read is applied first
        while self.confirmed < self.count and not self.ws.closed:
            count = self.count
            ticket = self.runtime.durable_ticket
            durable = ticket() if ticket is not None else None
            if durable is not None:
                await asyncio.wait([durable])
                if durable.cancelled() or durable.exception() is not None:
                    return  # not on our disk: no confirmation (the master withholds its ok)
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(f'{{"Acked":{count}}}')
            self.confirmed = count

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class SlaveLink:
    """Slave side: keep a sync connection to the master; while it lives, neither push nor
    accept writes; take over when it is gone; hand the takeover's changes back."""

    def __init__(self, runtime: Replica, config: Config) -> None:
        self.runtime = runtime
        sync = config.sync
        self.master = f"{sync.masterAddr}:{sync.masterPort}"
        self.url = f"{sync.masterProtocol}://{self.master}/Sync/Conn"
        self.secret = config.mq.secretKey
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._changes: TakeoverChanges | None = None  # listening while taken over
        self._to_hand_back: dict[Code, None] = {}  # changed codes the master has not acked
        self._taken_over = False  # since the master last acknowledged a hand-back
        # kept on disk by a persistent slave, so a restart does not forget a takeover and
        # strand what it accepted meanwhile (docs/protocol.md, Master-slave sync)
        mq = config.mq
        self._marker = (
            Path(mq.dataDir) / f"{mq.persistentFile}.takeover" if mq.isPersistent else None
        )

    def start(self) -> None:
        """Follow the master; until we know whether it lives, act as a following slave."""
        self._step_down()
        try:
            since = int(self._marker.stat().st_mtime) - 1 if self._marker is not None else None
        except OSError:  # no marker: no takeover to remember
            since = None
        if since is not None:
            self._taken_over = True
            # which messages the takeover changed was known in memory only: those consumed
            # since it began (the marker's time) are handed back with every one not
            # consumed (the master's copies may still be waiting; a message deleted
            # meanwhile cannot be named)
            self._to_hand_back.update(
                (m.code, None) for m in self.runtime.broker.messages() if m.consumed_time >= since
            )
            log.info(
                "this slave had taken over when it stopped: it hands back what it holds "
                "once it follows the master again"
            )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sync-slave")

    def _step_down(self) -> None:
        self.runtime.broker.set_paused(True)
        self.runtime.refuse_writes(
            SLAVE_SOURCE,
            f"this broker is a slave of {self.master}; send to the master",
            f"slave of {self.master}",
            degraded=False,  # read-only by design while it follows: healthy
        )
        changes, self._changes = self._changes, None
        if changes is not None:
            self.runtime.broker.remove_listener(changes)
            self._to_hand_back.update(changes.codes)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.5
        refollow = REFOLLOW_FIRST  # before following again a master that ended us
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    started = loop.time()
                    ended_by_master = await self._follow(session)
                    backoff = 0.5
                    if ended_by_master and await self._master_listening():
                        log.warning(
                            "master %s closed our sync connection but is up: following it "
                            "again (no takeover)",
                            self.master,
                        )
                        # a master that keeps ending us at once is not hammered
                        if loop.time() - started > REFOLLOW_RESET_AFTER:
                            refollow = REFOLLOW_FIRST
                        await asyncio.sleep(refollow * (0.5 + random.random()))
                        refollow = min(refollow * 2, 5.0)
                        continue
                except PermissionError as exc:
                    log.error("master at %s refused our key (%s); not retrying", self.url, exc)
                    self._takeover()
                    return
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("master at %s unreachable: %s", self.url, exc)
                self._takeover()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, RECONNECT_MAX)

    async def _master_listening(self) -> bool:
        """Whether the master's port takes a connection right now: after it closed or
        dropped our connection (it cuts a slave that stops reading), a master that is up
        is followed again instead of being taken over from; a dead one refuses at once."""
        sync = self.runtime.config.sync
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(sync.masterAddr, int(sync.masterPort)),
                MASTER_PROBE_TIMEOUT,
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _takeover(self) -> None:
        ack = self.runtime.config.sync.ack == 1  # an ok needs both brokers: refuse writes
        if self._changes is None:  # not taken over yet: lost, or down since we started
            lost = "master lost" if self.connected.is_set() else "master unreachable"
            does = "pushes, refuses writes: sync.ack is 1" if ack else "pushes and accepts writes"
            log.warning("%s: this slave takes over (%s)", lost, does)
            self._changes = TakeoverChanges()
            self.runtime.broker.add_listener(self._changes)
        self.connected.clear()
        if not self._taken_over:
            self._taken_over = True
            self._mark(True)
        self.runtime.broker.set_paused(False)
        if ack:
            self.runtime.refuse_writes(
                SLAVE_SOURCE,
                f"master {self.master} unreachable and sync.ack is 1; writes need both brokers",
                f"master {self.master} unreachable (sync.ack: 1)",
            )
        else:
            self.runtime.accept_writes(SLAVE_SOURCE)

    def _mark(self, taken_over: bool) -> None:
        if self._marker is None:
            return
        try:
            if taken_over:
                self._marker.touch()
            else:
                self._marker.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot %s %s: %s", "write" if taken_over else "remove", self._marker, exc)

    def _hand_back_records(self) -> list[bytes]:
        """Takeover changes the master has not acknowledged, and every unconsumed message."""
        broker = self.runtime.broker
        if not self._taken_over:
            return []
        codes = dict(self._to_hand_back)
        codes.update((m.code, None) for m in broker.messages() if m.status is not Status.CONSUMED)
        ids = dedup_by_code(broker)
        records: list[bytes] = []
        for code in codes:
            msg = broker.store.get(code)
            dedup = ids.get(code)
            if msg is None:
                records.append(dumps(removal_of(code, dedup)))
            else:
                records.append(dumps(record_of(broker, msg, dedup)))
        return records

    async def _follow(self, session: aiohttp.ClientSession) -> bool:
        """Follow the master until the connection ends; True if the master ended it (a
        close or a dropped connection), False if it is shutting down (1001) or its
        heartbeat went unanswered."""
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)
        headers = dict([SYNC_EXTENSIONS])
        async with session.ws_connect(
            self.url, heartbeat=3.0, timeout=timeout, headers=headers
        ) as ws:
            try:
                await asyncio.wait_for(login(ws, self.secret), 10)
            except AuthenticationError as exc:
                raise PermissionError(str(exc)) from None
            except (ProtocolError, ConnectionLostError) as exc:
                raise aiohttp.ClientError(str(exc)) from None
            self._step_down()
            self.connected.set()
            log.info("following master %s; pushing paused, writes refused", self.url)
            # Hand back before reading anything: the master's snapshot is older than us.
            records = self._hand_back_records()
            count = len(records)
            if count:
                log.info("handing %d records back to the master", count)
                for batch in hand_back_frames(records):
                    await ws.send_str(batch.decode())
                await ws.send_str(dumps({"HandBack": count}).decode())
            elif self._taken_over:  # it changed nothing and holds nothing: no ack will come
                self._forget_takeover()
            loop = asyncio.get_running_loop()
            beats = loop.create_task(self._heartbeat(ws))
            confirm = Confirmations(self.runtime, ws)
            try:
                async for frame in ws:
                    if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        break
                    self._apply(frame.data, count)
                    confirm.received()
            finally:
                beats.cancel()
                confirm.cancel()
            if ws.close_code == WSCloseCode.GOING_AWAY:
                return False  # the master is shutting down
            return not isinstance(ws.exception(), aiohttp.ServerTimeoutError)

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await ws.send_str(HEARTBEAT.decode())
            await asyncio.sleep(1.0)

    def _forget_takeover(self) -> None:
        """The master has all the takeover changed (or there was nothing to hand back)."""
        self._to_hand_back.clear()
        self._taken_over = False
        self._mark(False)

    def _apply(self, raw: str | bytes, handed_back: int) -> None:
        if (raw if isinstance(raw, bytes) else raw.encode()).startswith(b'{"HandBackAck"'):
            log.info("master acknowledged the hand-back of %d changes", handed_back)
            self._forget_takeover()
            return
        try:
            apply_record(self.runtime, raw)
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.warning("ignoring malformed sync record: %s", exc)

"""Message trace (docs/protocol.md "Message trace"): what happened to each message, in order.

Kept by message code beside the message table, never on ``Message``: with ``mq.trace`` 0
there is no ``Trace`` at all, and a traced message costs a dict entry and a short tuple.
An event is a tuple ``(time, kind, details...)``; one event tuple is shared by every
message of a batch it applies to (a producer's read, a push batch, a consumer's acks),
so a burst costs one tuple slot per message and event. A trace is a tuple, replaced on
each event, not a list: the cyclic GC stops tracking a tuple of atoms at its first
collection, while a list per traced message is scanned again and again (measured
in-process with lists: most of the trace's cost was the GC's).

Bounds: a trace keeps its first event (the publish) and the latest ``PER_MESSAGE - 1``;
all traces together hold at most ``mq.traceMaxEvents`` events, beyond which the oldest
traces are forgotten whole (counted in ``evicted``). A trace outlives its message (a
deleted or cleaned message can still be looked up) until the budget evicts it.

For storage (WAL mode) every new event is also appended to ``unsaved`` as ``code,
event`` pairs; the storage manager takes them once per loop iteration and writes them
as TRACE_EVENTS records (docs/durability.md "Message trace").
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import attrgetter
from typing import Any

from kapokmq.model import Code, Message

Deliver = Callable[[list[Message]], None]
Event = tuple[Any, ...]  # (time, kind, details...)
Source = tuple[str, str, str]  # producer id, ip, engine ("ws:picows", "ws:aiohttp", "http")

PER_MESSAGE = 16

PUBLISHED = 0  # (time, 0, (producer id, ip, engine))
PUSHED = 1  # (time, 1, consumer id, attempt)
ACKED = 2  # (time, 2, consumer id)
REDELIVERED = 3  # (time, 3, reason)
DEAD = 4  # (time, 4, reason)
REQUEUED = 5  # (time, 5): from the console
DELETED = 6  # (time, 6): from the console
DELIVERED_NOW = 7  # (time, 7): from the console

KIND_NAMES = (
    "published",
    "pushed",
    "acked",
    "redelivered",
    "dead",
    "requeued",
    "deleted",
    "delivered now",
)

# why a message was redelivered
TIMEOUT = "timeout"
CONSUMER_GONE = "consumer gone"
SLOW_CONSUMER = "slow consumer"

UNKNOWN_SOURCE: Source = ("", "", "")
# a message that reached this broker from another (master-slave sync, or a slave's hand-back)
REPLICATED: Source = ("", "", "sync")

_code = attrgetter("code")


class Trace:
    __slots__ = (
        "_log_miss",
        "_names",
        "_order",
        "_random",
        "_skip",
        "_traces",
        "budget",
        "clock",
        "events",
        "evicted",
        "lookup",
        "on_unsaved",
        "rate",
        "unsaved",
    )

    def __init__(
        self,
        rate: float,
        budget: int,
        clock: Callable[[], float],
        lookup: Callable[[Code], Message | None],
    ) -> None:
        """``rate``: the share of messages traced (1 = all); ``budget``: events held at
        most, all traces together; ``lookup``: the stored message of a code."""
        self.rate = rate
        self.lookup = lookup
        self.budget = budget
        self.clock = clock
        self._traces: dict[Code, tuple[Event, ...]] = {}
        self._order: deque[Code] = deque()  # codes, oldest trace first
        self._random = random.random
        self._log_miss = math.log1p(-rate) if rate < 1.0 else 0.0
        self._skip = self._gap() if rate < 1.0 else 0  # messages to pass over first
        self._names: dict[str, str] = {}  # client ids as stored (see ``name``)
        self.events = 0  # events held
        self.evicted = 0  # traces forgotten because of the budget
        # storage: new events as code, event, code, event...; None when nothing persists
        self.unsaved: list[Any] | None = None
        self.on_unsaved: Callable[[], None] | None = None  # ``unsaved`` became non-empty

    def __len__(self) -> int:
        return len(self._traces)

    def __contains__(self, code: Code) -> bool:
        return code in self._traces

    def events_of(self, code: Code) -> list[Event] | None:
        """The message's events, oldest first; None if it has no trace."""
        events = self._traces.get(code)
        return None if events is None else list(events)

    def items(self) -> list[tuple[Code, tuple[Event, ...]]]:
        """(code, events) of every trace, oldest trace first (for a snapshot)."""
        return list(self._traces.items())

    def name(self, client_id: str) -> str:
        """A client id as events hold it: one shared string per id, a lone surrogate
        (which cannot be stored as UTF-8) replaced by U+FFFD."""
        names = self._names
        name = names.get(client_id)
        if name is None:
            if len(names) > 10_000:
                names.clear()
            name = names[client_id] = client_id.encode("utf-8", "surrogatepass").decode(
                "utf-8", "replace"
            )
        return name

    # ------------------------------------------------------------------ recording
    def published(self, msgs: list[Message], now: float, source: Source | None) -> None:
        """New messages; each is traced with probability ``rate`` (independently)."""
        if self.rate < 1.0:
            if self._skip >= len(msgs):  # the common case: none of these is sampled
                self._skip -= len(msgs)
                return
            msgs = self._sample(msgs)
        if source is None:
            source = UNKNOWN_SOURCE
        elif not source[0].isascii():
            source = (self.name(source[0]), source[1], source[2])
        event: Event = (now, PUBLISHED, source)
        traces = self._traces
        codes = [m.code for m in msgs]
        traces.update(zip(codes, repeat((event,))))  # one shared tuple: loops in C
        self._order.extend(codes)
        unsaved = self.unsaved
        was_saved = not unsaved
        if unsaved is not None:
            for code in codes:
                unsaved.append(code)
                unsaved.append(event)
        self._settle(len(codes), was_saved)

    def _sample(self, msgs: list[Message]) -> list[Message]:
        """Each message with probability ``rate``: the gaps between sampled messages are
        drawn (geometric), so a batch costs one draw per sampled message, not one each."""
        picked: list[Message] = []
        at = self._skip
        while at < len(msgs):
            picked.append(msgs[at])
            at += 1 + self._gap()
        self._skip = at - len(msgs)
        return picked

    def _gap(self) -> int:
        """Messages passed over before the next traced one."""
        return int(math.log1p(-self._random()) / self._log_miss)

    def tracing_deliver(self, deliver: Deliver, consumer_id: str) -> Deliver:
        """``deliver`` that first records a push to ``consumer_id`` for each traced message
        of the batch (the broker wraps a consumer's callback with it: dispatch itself does
        not change)."""

        consumer_id = self.name(consumer_id)
        if self.rate < 1.0:
            keys = self._traces.keys()  # a live view

            def sampled(batch: list[Message]) -> None:
                # most batches hold no traced message: one C-level test, no set built
                if not keys.isdisjoint(map(_code, batch)):
                    self.pushed(batch, consumer_id)
                deliver(batch)

            return sampled

        def traced(batch: list[Message]) -> None:
            self.pushed(batch, consumer_id)
            deliver(batch)

        return traced

    def pushed(self, batch: list[Message], consumer_id: str) -> None:
        traces = self._traces
        if self.rate < 1.0:  # sampled: the few traced ones are found in C
            hits = traces.keys() & map(_code, batch)
            if not hits:
                return
            lookup = self.lookup
            batch = [m for code in hits if (m := lookup(code)) is not None]
        get = traces.get
        unsaved = self.unsaved
        was_saved = not unsaved
        now = self.clock()
        event: Event = ()
        attempts = -1
        added = 0
        for msg in batch:  # the hottest hook: _record inlined, the event built per attempt
            code = msg.code
            events = get(code)
            if events is None:
                continue
            if msg.attempts != attempts:
                attempts = msg.attempts
                event = (now, PUSHED, consumer_id, attempts)
            if len(events) < PER_MESSAGE:
                traces[code] = events + (event,)  # noqa: RUF005 (unpacking builds a list)
                added += 1
            else:
                traces[code] = (events[0], *events[2:], event)  # the publish and the latest
            if unsaved is not None:
                unsaved.append(code)
                unsaved.append(event)
        if added or (unsaved and was_saved):
            self._settle(added, was_saved)

    def acked(self, codes: Iterable[Code], topic: str, consumer_id: str, now: float) -> None:
        """A consumer of ``topic`` acked these codes (whatever the broker made of each
        ack); not a code of another topic's message, which the broker ignores
        (docs/protocol.md "Consumer session"): no event of that message."""
        if self.rate < 1.0 and self._traces.keys().isdisjoint(codes):
            return  # sampled: most reads ack no traced message
        lookup = self.lookup
        own = [code for code in codes if (msg := lookup(code)) is None or msg.topic == topic]
        self._record(own, (now, ACKED, self.name(consumer_id)))

    def happened(self, msgs: Iterable[Message], kind: int, now: float, detail: str = "") -> None:
        """An event without a consumer: redelivered or dead (``detail`` is the reason), or
        one of the console's actions (no detail)."""
        event: Event = (now, kind, detail) if detail else (now, kind)
        self._record([m.code for m in msgs], event)

    def _record(self, codes: Iterable[Code], event: Event) -> None:
        """``event`` for each of ``codes`` that has a trace."""
        traces = self._traces
        if self.rate < 1.0:  # sampled: the few traced ones are found in C
            codes = traces.keys() & codes
        get = traces.get
        unsaved = self.unsaved
        was_saved = not unsaved
        added = 0
        for code in codes:
            events = get(code)
            if events is None:
                continue
            if len(events) < PER_MESSAGE:
                traces[code] = events + (event,)  # noqa: RUF005 (unpacking builds a list)
                added += 1
            else:
                traces[code] = (events[0], *events[2:], event)
            if unsaved is not None:
                unsaved.append(code)
                unsaved.append(event)
        if added or (unsaved and was_saved):
            self._settle(added, was_saved)

    def _settle(self, added: int, was_saved: bool) -> None:
        """After a batch of events: the budget, and storage told of new unsaved ones."""
        self.events += added
        if self.events > self.budget:
            self._evict()
        if was_saved and self.unsaved and self.on_unsaved is not None:
            self.on_unsaved()

    def _evict(self) -> None:
        traces = self._traces
        order = self._order
        while self.events > self.budget and order:
            events = traces.pop(order.popleft(), None)
            if events is not None:
                self.events -= len(events)
                self.evicted += 1

    # ------------------------------------------------------------------ storage
    def take_unsaved(self) -> list[Any]:
        """The events recorded since the last call, as ``code, event`` pairs."""
        unsaved = self.unsaved
        if not unsaved:
            return []
        self.unsaved = []
        return unsaved

    def restore(self, code: Code, events: Iterable[Event]) -> None:
        """Events read back by storage (a snapshot's, then the WAL's after it). Replay is
        idempotent: an event the trace already holds is not added again."""
        held = self._traces.get(code)
        if held is None:
            held = ()
            self._order.append(code)
        for event in events:
            if event not in held:
                if len(held) < PER_MESSAGE:
                    held = (*held, event)
                    self.events += 1
                else:
                    held = (held[0], *held[2:], event)
        self._traces[code] = held
        if self.events > self.budget:
            self._evict()


def event_view(event: Event) -> dict[str, Any]:
    """One event as GetMessageTrace answers it (docs/protocol.md "Message trace")."""
    kind = event[1]
    view: dict[str, Any] = {"Time": event[0], "Event": KIND_NAMES[kind]}
    if kind == PUBLISHED:
        producer, ip, engine = event[2]
        view["ProducerId"] = producer
        view["ProducerIp"] = ip
        view["Engine"] = engine
    elif kind == PUSHED:
        view["ConsumerId"] = event[2]
        view["Attempt"] = event[3]
    elif kind == ACKED:
        view["ConsumerId"] = event[2]
    elif len(event) > 2:
        view["Reason"] = event[2]
    return view

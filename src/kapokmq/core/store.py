"""The message table: every stored message by code, with the indexes the console needs.

Counts by status and by creation hour are kept up to date on every change, so the
console's counters and 7-day chart never scan the table. Insertion order is creation
order, which makes the ``mq.isClean`` check (``take_stale``) a scan from the front that
stops at the first young message.

A message the scan passes that is not stale yet (a delay that ends after its cleanTime,
or a redelivery that rewrote its DelayTime; ``Message.stale_at``) moves out of the main
table into the *late* table, kept by stale time, so no check walks it again: a check
costs what it deletes, plus a heap step per late message it finds due, never a walk over
what waits. Ordinary messages never enter it and pay nothing for it (one empty-dict test
on a lookup miss, an add and a remove).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from itertools import chain, count, islice, repeat
from operator import attrgetter, floordiv

from kapokmq.model import Code, Message, Status, code_text

_status_of = attrgetter("status")
_arrival_of = attrgetter("arrival")
# where _counts keeps these (status + 1), as module globals: an Enum member read costs
# ~200 ns on Python 3.11
_WAITING_AT = Status.WAITING + 1
_DELAYED_AT = Status.DELAYED + 1
_CONSUMED_AT = Status.CONSUMED + 1


class MessageStore:
    __slots__ = ("_by_hour", "_counts", "_late", "_late_entry", "_late_heap", "_messages", "_seq")

    def __init__(self) -> None:
        self._messages: dict[Code, Message] = {}
        # indexed by status + 1: list indexing avoids Enum.__hash__ on the hot path
        self._counts = [0] * len(Status)
        self._by_hour: dict[int, int] = {}
        # the late table (module docstring): its messages are older than every one in
        # _messages, in creation order too; each has one live heap entry (stale time,
        # sequence number, message), the sequence number in _late_entry; an entry whose
        # number is not there any more is left over (the message was re-timed or removed)
        self._late: dict[Code, Message] = {}
        self._late_entry: dict[Code, int] = {}
        self._late_heap: list[tuple[int, int, Message]] = []
        self._seq = count()

    def __len__(self) -> int:
        return len(self._messages) + len(self._late)

    def __iter__(self) -> Iterator[Message]:
        """Every message, in creation order."""
        if self._late:
            return chain(self._late.values(), self._messages.values())
        return iter(self._messages.values())

    def get(self, code: Code) -> Message | None:
        msg = self._messages.get(code)
        if msg is None and self._late:
            return self._late.get(code)
        return msg

    def add(self, msg: Message) -> None:
        late = self._late
        if (late and msg.code in late) or self._messages.setdefault(msg.code, msg) is not msg:
            raise KeyError(
                f"duplicate message code {code_text(msg.code)}"
            )  # setdefault: one lookup
        self._counts[msg.status + 1] += 1
        hour = int(msg.arrival) // 3600  # msg.create_time, without a property call
        by_hour = self._by_hour
        by_hour[hour] = by_hour.get(hour, 0) + 1

    def add_many(self, msgs: list[Message]) -> None:
        """``add`` for a recovery's worth of messages, without a call per message."""
        self._insert(msgs)
        counts = self._counts
        by_hour = self._by_hour
        for msg in msgs:
            counts[msg.status + 1] += 1
            hour = int(msg.arrival) // 3600  # msg.create_time, without a property call
            by_hour[hour] = by_hour.get(hour, 0) + 1

    def add_new(self, msgs: list[Message], delayed: int) -> None:
        """``add_many`` for one publish's new messages (``Broker._add``): one creation time,
        ``delayed`` of them DELAYED and the rest WAITING, so the counters move once per
        batch: the loop is the table insert alone (~60 against ~240 ns per message in a
        loop that counts each one; docs/performance.md "Session 7: e2e")."""
        if not msgs:
            return
        self._insert(msgs)
        counts = self._counts
        counts[_DELAYED_AT] += delayed
        counts[_WAITING_AT] += len(msgs) - delayed
        hour = msgs[0].create_time // 3600
        by_hour = self._by_hour
        by_hour[hour] = by_hour.get(hour, 0) + len(msgs)

    def _insert(self, msgs: list[Message]) -> None:
        """Put ``msgs`` in the table, refusing a code the store already holds (the counts
        are the caller's: per message or per batch)."""
        messages = self._messages
        if self._late and not self._late.keys().isdisjoint([msg.code for msg in msgs]):
            raise KeyError("duplicate message code in the late table")
        for msg in msgs:
            code = msg.code
            if code in messages:
                raise KeyError(f"duplicate message code {code_text(code)}")
            messages[code] = msg

    def add_table(self, table: dict[Code, Message]) -> None:
        """``add_many`` for a recovery's table (code -> message, in creation order). An
        empty store takes the dict itself rather than building a second one: inserting a
        million fresh codes costs ~0.7 s on this machine, most of a recovery's time."""
        if self._messages or self._late:
            self.add_many(list(table.values()))
            return
        self._messages = table
        # counted in C (map/attrgetter/Counter): ~30% faster than a loop over a million
        for status, n in Counter(map(_status_of, table.values())).items():
            self._counts[status + 1] += n
        hours = map(floordiv, map(int, map(_arrival_of, table.values())), repeat(3600))
        self._by_hour.update(Counter(hours))

    def remove(self, code: Code) -> Message | None:
        msg = self._messages.pop(code, None)
        if msg is None:
            if not self._late:
                return None
            msg = self._late.pop(code, None)
            if msg is None:
                return None
            del self._late_entry[code]
        msg.flight = msg.flight.gone()  # Message.removed
        self._counts[msg.status + 1] -= 1
        hour = msg.create_time // 3600
        left = self._by_hour[hour] - 1
        if left:
            self._by_hour[hour] = left
        else:
            del self._by_hour[hour]
        return msg

    def take_stale(self, cutoff: float, limit: int) -> tuple[list[Message], bool]:
        """The messages ``mq.isClean`` deletes now (``Message.stale_before(cutoff)``); the
        caller removes every one. Passed messages that are not stale yet go to the late
        table (module docstring). At most ``limit`` messages are looked at; True with
        them when there may be more to look at (the caller asks again soon)."""
        messages = self._messages
        stale: list[Message] = []
        passed: list[Message] = []
        for msg in islice(messages.values(), limit):
            if msg.create_time >= cutoff:
                more = False
                break  # creation order: the rest is younger still
            (stale if msg.stale_before(cutoff) else passed).append(msg)
        else:
            more = len(stale) + len(passed) == limit
        budget = limit - len(stale) - len(passed)
        heap = self._late_heap
        live = self._late_entry
        if passed:
            late = self._late
            numbers = self._seq
            entries = []
            for msg in passed:
                code = msg.code
                del messages[code]
                late[code] = msg
                live[code] = n = next(numbers)
                entries.append((msg.stale_at(), n, msg))
            if len(entries) > len(heap) // 4:
                heap += entries
                heapq.heapify(heap)  # O(heap): cheaper than a push each for this many
            else:
                for entry in entries:
                    heapq.heappush(heap, entry)
        while heap and heap[0][0] < cutoff:
            if not budget:
                more = True
                break
            budget -= 1
            _, seq, msg = heapq.heappop(heap)
            if live.get(msg.code) != seq:
                continue  # left over
            if msg.stale_before(cutoff):
                stale.append(msg)
            else:
                self._enter_late(msg)  # a redelivery rewrote its DelayTime since
        self._drop_leftovers()
        return stale, more

    def retimed(self, msg: Message) -> None:
        """``msg``'s DelayTime was rewritten (deliver now, a replicated update): a late
        message is filed again by its new stale time, which may be earlier. Not needed
        when it can only be later (a redelivery): ``take_stale`` re-files those itself."""
        if msg.code in self._late_entry:
            self._enter_late(msg)

    def _enter_late(self, msg: Message) -> None:
        seq = next(self._seq)
        live = self._late_entry
        live[msg.code] = seq
        heapq.heappush(self._late_heap, (msg.stale_at(), seq, msg))
        self._drop_leftovers()

    def _drop_leftovers(self) -> None:
        """Keep the heap's left-over entries (removed or re-timed messages) fewer than
        its live ones, so they cost O(1) memory and time per late message."""
        heap = self._late_heap
        live = self._late_entry
        if len(heap) > 2 * len(live) + 1024:
            heap[:] = [entry for entry in heap if live.get(entry[2].code) == entry[1]]
            heapq.heapify(heap)

    def set_status(self, msg: Message, status: Status) -> None:
        counts = self._counts
        counts[msg.status + 1] -= 1
        counts[status + 1] += 1
        msg.status = status

    def consumed_waiting(self, n: int) -> None:
        """``n`` waiting messages were set consumed by their caller (``Broker.ack_keys``,
        which marks each in its pass over the acks: one loop per message instead of
        three; docs/performance.md "Session 7: e2e")."""
        counts = self._counts
        counts[_WAITING_AT] -= n
        counts[_CONSUMED_AT] += n

    def count(self, status: Status) -> int:
        return self._counts[status + 1]

    def unconsumed(self) -> int:
        """Waiting plus delayed messages."""
        counts = self._counts
        return counts[0] + counts[1]

    def counts(self) -> dict[Status, int]:
        return {status: self._counts[status + 1] for status in Status}

    def hourly(self) -> dict[int, int]:
        """Messages per creation hour (unix time // 3600), for per-day charts in any zone."""
        return dict(self._by_hour)

    def search(
        self,
        start: int,
        end: int,
        status: Status | None = None,
        topic: str | None = None,
    ) -> list[Message]:
        """Messages created in [start, end] (unix seconds), newest first."""
        found = [
            m
            for m in self
            if start <= m.create_time <= end
            and (status is None or m.status == status)
            and (topic is None or m.topic == topic)
        ]
        found.reverse()  # insertion order is creation order; a stable sort keeps ties newest-first
        found.sort(key=lambda m: m.create_time, reverse=True)
        return found

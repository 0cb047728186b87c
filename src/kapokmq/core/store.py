"""The message table: every stored message by code, with the indexes the console needs.

Counts by status and by creation hour are kept up to date on every change, so the
console's counters and 7-day chart never scan the table. Insertion order is creation
order, which makes expiry a scan from the front that stops at the first young message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import repeat
from operator import attrgetter, floordiv

from kapokmq.model import Message, Status

_status_of = attrgetter("status")
_created_of = attrgetter("create_time")


class MessageStore:
    __slots__ = ("_by_hour", "_counts", "_messages")

    def __init__(self) -> None:
        self._messages: dict[str, Message] = {}
        # indexed by status + 1: list indexing avoids Enum.__hash__ on the hot path
        self._counts = [0] * len(Status)
        self._by_hour: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self._messages.values())

    def get(self, code: str) -> Message | None:
        return self._messages.get(code)

    def add(self, msg: Message) -> None:
        if self._messages.setdefault(msg.code, msg) is not msg:  # one hash lookup, not two
            raise KeyError(f"duplicate message code {msg.code}")
        self._counts[msg.status + 1] += 1
        hour = msg.create_time // 3600
        by_hour = self._by_hour
        by_hour[hour] = by_hour.get(hour, 0) + 1

    def add_many(self, msgs: list[Message]) -> None:
        """``add`` for a recovery's worth of messages, without a call per message."""
        messages = self._messages
        counts = self._counts
        by_hour = self._by_hour
        for msg in msgs:
            code = msg.code
            if code in messages:
                raise KeyError(f"duplicate message code {code}")
            messages[code] = msg
            counts[msg.status + 1] += 1
            hour = msg.create_time // 3600
            by_hour[hour] = by_hour.get(hour, 0) + 1

    def add_table(self, table: dict[str, Message]) -> None:
        """``add_many`` for a recovery's table (code -> message, in creation order). An
        empty store takes the dict itself rather than building a second one: inserting a
        million fresh codes costs ~0.7 s on this machine, most of a recovery's time."""
        if self._messages:
            self.add_many(list(table.values()))
            return
        self._messages = table
        # counted in C (map/attrgetter/Counter): ~30% faster than a loop over a million
        for status, n in Counter(map(_status_of, table.values())).items():
            self._counts[status + 1] += n
        hours = map(floordiv, map(_created_of, table.values()), repeat(3600))
        self._by_hour.update(Counter(hours))

    def remove(self, code: str) -> Message | None:
        msg = self._messages.pop(code, None)
        if msg is None:
            return None
        msg.removed = True
        self._counts[msg.status + 1] -= 1
        hour = msg.create_time // 3600
        left = self._by_hour[hour] - 1
        if left:
            self._by_hour[hour] = left
        else:
            del self._by_hour[hour]
        return msg

    def set_status(self, msg: Message, status: Status) -> None:
        counts = self._counts
        counts[msg.status + 1] -= 1
        counts[status + 1] += 1
        msg.status = status

    def set_status_many(self, msgs: list[Message], status: Status) -> None:
        counts = self._counts
        for msg in msgs:
            counts[msg.status + 1] -= 1
            msg.status = status
        counts[status + 1] += len(msgs)

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
            for m in self._messages.values()
            if start <= m.create_time <= end
            and (status is None or m.status == status)
            and (topic is None or m.topic == topic)
        ]
        found.reverse()  # insertion order is creation order; a stable sort keeps ties newest-first
        found.sort(key=lambda m: m.create_time, reverse=True)
        return found

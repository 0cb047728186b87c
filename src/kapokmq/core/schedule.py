"""Timers for delayed messages, driven by the caller's clock.

Delays can be any length, so they live in a heap. Entries are never cancelled; the broker
checks when one comes due whether it still applies. (Redelivery needs no timers of its
own: each consumer's in-flight table is already ordered by push time.)
"""

from __future__ import annotations

import heapq
import itertools

from kapokmq.model import Message, Status


class Scheduler:
    __slots__ = ("_delays", "_seq")

    def __init__(self) -> None:
        self._delays: list[tuple[float, int, Message]] = []
        self._seq = itertools.count()

    def add_delay(self, msg: Message, due: float) -> None:
        heapq.heappush(self._delays, (due, next(self._seq), msg))

    def due_delays(self, now: float) -> list[Message]:
        delays = self._delays
        due: list[Message] = []
        while delays and delays[0][0] <= now:
            due.append(heapq.heappop(delays)[2])
        return due

    def next_deadline(self) -> float | None:
        return self._delays[0][0] if self._delays else None

    def upcoming(
        self, topic: str | None, offset: int, limit: int
    ) -> tuple[int, list[tuple[float, Message]]]:
        """Delayed messages by due time (the console's schedule): how many match, and the
        (due, message) pairs from ``offset``, at most ``limit``. Entries whose message is
        no longer delayed (delivered early, deleted) are skipped; O(delays) per call."""
        seen: set[str] = set()
        live: list[tuple[float, int, Message]] = []
        delayed = Status.DELAYED
        for entry in self._delays:
            msg = entry[2]
            if (
                msg.status is delayed
                and not msg.removed
                and (topic is None or msg.topic == topic)
                and msg.code not in seen
            ):
                seen.add(msg.code)
                live.append(entry)
        first = heapq.nsmallest(offset + limit, live)[offset:]
        return len(live), [(due, msg) for due, _, msg in first]

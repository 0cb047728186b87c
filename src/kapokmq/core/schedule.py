"""Timers for delayed messages and redelivery, driven by the caller's clock.

Delays can be any length, so they live in a heap. Every redelivery deadline is
"push time + pushRetryTime" with one pushRetryTime for the whole broker, so deadlines
arrive in order and a FIFO queue is enough: O(1) per push instead of a heap operation.
Entries are never cancelled; the broker checks on expiry whether they still apply.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

from kapokmq.model import Message


class Scheduler:
    __slots__ = ("_delays", "_retries", "_seq")

    def __init__(self) -> None:
        self._delays: list[tuple[float, int, Message]] = []
        self._retries: deque[tuple[float, Message, int]] = deque()
        self._seq = itertools.count()

    def add_delay(self, msg: Message, due: float) -> None:
        heapq.heappush(self._delays, (due, next(self._seq), msg))

    def add_retries(self, msgs: list[Message], due: float) -> None:
        """Remember that ``msgs`` must be re-pushed at ``due`` unless acked by then.

        The attempt number is recorded so that a later push makes an entry stale.
        """
        self._retries.extend([(due, msg, msg.attempts) for msg in msgs])

    def due_delays(self, now: float) -> list[Message]:
        delays = self._delays
        due: list[Message] = []
        while delays and delays[0][0] <= now:
            due.append(heapq.heappop(delays)[2])
        return due

    def due_retries(self, now: float) -> list[tuple[Message, int]]:
        retries = self._retries
        due: list[tuple[Message, int]] = []
        while retries and retries[0][0] <= now:
            _, msg, attempt = retries.popleft()
            due.append((msg, attempt))
        return due

    def next_deadline(self) -> float | None:
        candidates = []
        if self._delays:
            candidates.append(self._delays[0][0])
        if self._retries:
            candidates.append(self._retries[0][0])
        return min(candidates) if candidates else None

    def pending(self) -> tuple[int, int]:
        """(delay entries, retry entries), stale ones included; for metrics and tests."""
        return len(self._delays), len(self._retries)

"""Per-message TTL and the dead-letter record (docs/protocol.md, "TTL and dead letters").

Both are kept by message code beside the message table, not on ``Message``: only the
messages that have a TTL, or that died or were re-queued, pay for them.
"""

from __future__ import annotations

import heapq
import itertools

from kapokmq.model import GONE, Code, Message, Status

# why a message is dead; the console filters by these texts
MAX_DELIVERIES = "max deliveries"
EXPIRED = "expired"
REQUEUED = "requeued by console"


class Lifetimes:
    """TTLs: a message not consumed within its TTL after it became due dies as expired.

    The clock of a message starts when it becomes due (at once, or when its delay ends,
    or when the console delivers it now or re-queues it). Timer entries are never
    cancelled; one that no longer matches the message's current deadline is skipped.
    """

    __slots__ = ("_deadline", "_heap", "_seq", "_ttl")

    def __init__(self) -> None:
        self._ttl: dict[Code, int] = {}
        self._deadline: dict[Code, float] = {}
        self._heap: list[tuple[float, int, Message]] = []
        self._seq = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._ttl)

    def codes(self) -> list[Code]:
        """The messages that have a TTL."""
        return list(self._ttl)

    def ttl(self, code: Code) -> int:
        """The message's TTL in seconds, 0 if it has none."""
        return self._ttl.get(code, 0)

    def deadline(self, code: Code) -> float | None:
        """When the message dies unless consumed; None without a TTL or while delayed."""
        return self._deadline.get(code)

    def track(self, msg: Message, ttl: int, due: float | None) -> None:
        """Give ``msg`` a TTL; its clock starts at ``due`` (None: when it becomes due)."""
        self._ttl[msg.code] = ttl
        if due is not None:
            self._arm(msg, due + ttl)

    def restore(self, msg: Message, ttl: int, deadline: float | None) -> None:
        """A recovered message's TTL with the deadline it had (None while delayed)."""
        self._ttl[msg.code] = ttl
        if deadline is not None and msg.status is Status.WAITING:
            self._arm(msg, deadline)

    def start(self, msg: Message, now: float) -> None:
        """``msg`` became due at ``now``: its TTL runs from here (if it has one)."""
        ttl = self._ttl.get(msg.code)
        if ttl is not None:
            self._arm(msg, now + ttl)

    def _arm(self, msg: Message, deadline: float) -> None:
        self._deadline[msg.code] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), msg))

    def forget(self, code: Code) -> None:
        if self._ttl.pop(code, None) is not None:
            self._deadline.pop(code, None)

    def due(self, now: float) -> list[Message]:
        """Waiting messages whose TTL ran out by ``now``; their deadline is cleared."""
        heap = self._heap
        dead: list[Message] = []
        while heap and heap[0][0] <= now:
            deadline, _, msg = heapq.heappop(heap)
            if self._deadline.get(msg.code) != deadline:
                continue  # re-armed or forgotten since
            del self._deadline[msg.code]
            if msg.status is Status.WAITING and msg.flight.owner is not GONE:
                dead.append(msg)
        return dead

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and self._deadline.get(heap[0][2].code) != heap[0][0]:
            heapq.heappop(heap)  # stale: drop it so the timer does not wake for nothing
        return heap[0][0] if heap else None


class DeadLetters:
    """Why each dead message died, and its dead/re-queued history (oldest first)."""

    __slots__ = ("_history",)

    def __init__(self) -> None:
        self._history: dict[Code, list[tuple[int, str]]] = {}

    def __bool__(self) -> bool:
        return bool(self._history)

    def died(self, code: Code, now: float, reason: str) -> None:
        self._history.setdefault(code, []).append((int(now), f"dead: {reason}"))

    def requeued(self, code: Code, now: float) -> None:
        self._history.setdefault(code, []).append((int(now), REQUEUED))

    def reason(self, code: Code) -> str | None:
        """The reason of the latest death (a dead message's current reason)."""
        for _, event in reversed(self._history.get(code, ())):
            if event.startswith("dead: "):
                return event[6:]
        return None

    def codes(self) -> list[Code]:
        """The messages that have a history."""
        return list(self._history)

    def history(self, code: Code) -> list[tuple[int, str]]:
        return list(self._history.get(code, ()))

    def history_view(self, code: Code) -> list[dict[str, object]]:
        """The history as GetMessage and sync send it: ``[{"Event": e, "Time": t}]``."""
        return [{"Event": event, "Time": at} for at, event in self._history.get(code, ())]

    def restore(self, code: Code, history: list[tuple[int, str]]) -> None:
        self._history[code] = list(history)

    def forget(self, code: Code) -> None:
        self._history.pop(code, None)

"""Producer dedup ids (docs/protocol.md, "Dedup"): the first message per (topic, id).

A message published with a ``MessageId`` that the topic saw within its window is not
stored again; the producer is answered as for the first. Ids are remembered for the
window (``mq.dedupWindow``, per topic in ``mq.topics``) and at most ``mq.dedupMaxIds`` of
them: beyond that the oldest are forgotten first and counted in ``evicted``.
"""

from __future__ import annotations

from collections import deque

from kapokmq.model import Code


def dedup_key(topic: str, message_id: str) -> str:
    """One string per (topic, id), unambiguous whatever either holds."""
    return f"{len(topic)}:{topic}{message_id}"


def split_dedup_key(key: str) -> tuple[str, str]:
    """(topic, id) of a ``dedup_key``."""
    length, rest = key.split(":", 1)
    return rest[: int(length)], rest[int(length) :]


class DedupWindow:
    __slots__ = ("_first", "_order", "duplicates", "evicted", "expired", "max_ids")

    def __init__(self, max_ids: int) -> None:
        self.max_ids = max_ids
        # key -> (the first message's code, when the id is forgotten)
        self._first: dict[str, tuple[Code, float]] = {}
        self._order: deque[str] = deque()  # keys, oldest first (may repeat a re-used key)
        self.evicted = 0  # forgotten early because of max_ids
        self.expired = 0  # forgotten at the end of their window
        self.duplicates = 0  # messages not stored again

    def __len__(self) -> int:
        return len(self._first)

    def first(self, key: str, now: float) -> Code | None:
        """The code of the first message with this key, if still within its window."""
        entry = self._first.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._first[key]
            self.expired += 1
            return None
        return entry[0]

    def remember(self, key: str, code: Code, until: float, now: float) -> None:
        """The first message with ``key`` is ``code``; forget it at ``until``."""
        first = self._first
        order = self._order
        # forget what has run out at the front: ids are mostly added in time order
        while order:
            head = first.get(order[0])
            if head is not None and head[1] > now:
                break
            if head is not None:
                del first[order[0]]
                self.expired += 1
            order.popleft()
        while len(first) >= self.max_ids and order:
            if first.pop(order.popleft(), None) is not None:
                self.evicted += 1
        first[key] = (code, until)
        order.append(key)

    def restore(self, key: str, code: Code, until: float) -> None:
        """A remembered id read back from storage (oldest first)."""
        if key not in self._first:
            self._order.append(key)
        self._first[key] = (code, until)

    def items(self) -> list[tuple[str, Code, float]]:
        """(key, code, until) of every remembered id, oldest first (for a snapshot)."""
        seen: set[str] = set()
        out: list[tuple[str, Code, float]] = []
        for key in self._order:
            entry = self._first.get(key)
            if entry is not None and key not in seen:
                seen.add(key)
                out.append((key, entry[0], entry[1]))
        return out

"""Transmit-limited broadcast queue, like memberlist's TransmitLimitedQueue.

Every state change is piggy-backed on outgoing packets a limited number of
times (RetransmitMult × ceil(log10(n+1))). Fresh items go first and, among
equally fresh ones, the largest that fits, then the newest. A new broadcast
about a node replaces the queued one about the same node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kapokmq.gossip.suspicion import retransmit_limit


@dataclass(slots=True)
class _Item:
    name: str | None
    message: bytes
    id: int
    on_done: Callable[[], None] | None
    transmits: int = 0

    def sort_key(self) -> tuple[int, int, int]:
        return (self.transmits, -len(self.message), -self.id)


class BroadcastQueue:
    def __init__(self, retransmit_mult: int, num_nodes: Callable[[], int]) -> None:
        self.retransmit_mult = retransmit_mult
        self._num_nodes = num_nodes
        self._items: list[_Item] = []
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(
        self, name: str | None, message: bytes, on_done: Callable[[], None] | None = None
    ) -> None:
        """Queue ``message``; ``on_done`` runs when it is fully sent or superseded."""
        if name is not None:
            for old in [i for i in self._items if i.name == name]:
                self._remove(old)
        self._next_id += 1
        self._items.append(_Item(name, message, self._next_id, on_done))

    def get(self, overhead: int, limit: int) -> list[bytes]:
        """Pull messages that fit in ``limit`` bytes, ``overhead`` counted per message."""
        if not self._items:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, self._num_nodes())
        candidates = sorted(self._items, key=_Item.sort_key)
        used = 0
        out: list[bytes] = []
        for item in candidates:
            free = limit - used - overhead
            if free <= 0:
                break
            if len(item.message) > free:
                continue
            used += overhead + len(item.message)
            out.append(item.message)
            item.transmits += 1
            if item.transmits >= transmit_limit:
                self._remove(item)
        return out

    def reset(self) -> None:
        for item in list(self._items):
            self._remove(item)

    def _remove(self, item: _Item) -> None:
        self._items.remove(item)
        if not self._items:
            self._next_id = 0
        if item.on_done is not None:
            item.on_done()

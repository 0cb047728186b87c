"""Lifeguard local health: a score that stretches our own probe timeouts.

When this node misses acks or has to refute accusations, it is probably the
slow one, so it waits longer before accusing others.
"""

from __future__ import annotations


class Awareness:
    def __init__(self, max_multiplier: int) -> None:
        self._max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self._max - 1)

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)

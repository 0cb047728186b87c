"""Lifeguard suspicion timer, as a deadline computed from a clock (sans-I/O).

The timer starts long and shrinks as independent nodes confirm the
suspicion, so a node that only one peer cannot reach is not killed quickly.
"""

from __future__ import annotations

import math


def suspicion_timeout(mult: int, n: int, interval: float) -> float:
    """``min`` timeout: mult × max(1, log10(n)) × probe interval (Go rounds to ms)."""
    scale = max(1.0, math.log10(max(1.0, float(n))))
    return mult * math.floor(scale * 1000) * interval / 1000


def retransmit_limit(mult: int, n: int) -> int:
    return mult * math.ceil(math.log10(n + 1))


class Suspicion:
    def __init__(self, from_: str, k: int, min_: float, max_: float, start: float) -> None:
        self.k = k
        self.min = min_
        self.max = max_
        self.start = start
        self.n = 0
        self._confirmations = {from_}
        self.deadline = start + (max_ if k >= 1 else min_)

    def confirm(self, from_: str) -> bool:
        """Count a new accuser; returns True if it was new (and so worth re-gossiping)."""
        if self.n >= self.k or from_ in self._confirmations:
            return False
        self._confirmations.add(from_)
        self.n += 1
        frac = math.log(self.n + 1.0) / math.log(self.k + 1.0)
        raw = self.max - frac * (self.max - self.min)
        timeout = max(math.floor(1000.0 * raw) / 1000.0, self.min)
        self.deadline = self.start + timeout
        return True

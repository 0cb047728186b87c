"""Reconnect delays: exponential growth with jitter so many clients do not retry in lockstep."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay schedule for reconnect attempts.

    Attempt n (0-based) waits a random time in [d/2, d] where d = min(maximum, initial * factor**n).
    ``max_attempts`` bounds the number of consecutive failed attempts (None = retry forever).
    """

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before reconnect attempt number ``attempt`` (0-based)."""
        ceiling = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        uniform = (rng or random).uniform
        return uniform(ceiling / 2, ceiling)

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` failed attempts are as many as allowed."""
        return self.max_attempts is not None and attempt >= self.max_attempts

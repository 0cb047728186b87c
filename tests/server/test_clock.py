"""The broker's clock does not step with the system clock (docs/protocol.md "Delayed
messages"): a time sync or a resumed VM that sets the clock forward made delayed messages
due early (seen in CI: one due in 1 s delivered 8 ms early by the test's monotonic clock)."""

from __future__ import annotations

import time

import pytest

from kapokmq.config import Config
from kapokmq.model import Status
from kapokmq.server.runtime import BrokerRuntime


def stepped_system_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``time.time`` plus the list's one item: set it to step the system clock."""
    step = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + step[0])
    return step


async def test_a_step_of_the_system_clock_makes_no_delayed_message_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step = stepped_system_clock(monkeypatch)
    runtime = BrokerRuntime(Config())
    try:
        assert abs(runtime.broker.clock() - time.time()) < 0.01  # unix seconds
        runtime.publish("t", "in a minute", 60)
        step[0] = 3600  # an hour forward
        runtime.broker.tick()
        assert [m.status for m in runtime.broker.messages()] == [Status.DELAYED]
        assert runtime.broker.clock() < time.time() - 3599
    finally:
        runtime.close()

"""A controllable clock and a recording consumer for sans-I/O broker tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from kapokmq.config import Config
from kapokmq.core.broker import Broker
from kapokmq.core.topics import ConsumerSession
from kapokmq.model import ClientInfo, Code, Message


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.25) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A consumer's deliver callback that keeps every pushed message."""

    def __init__(self) -> None:
        self.pushed: list[Message] = []

    def __call__(self, batch: list[Message]) -> None:
        self.pushed.extend(batch)

    @property
    def codes(self) -> list[Code]:
        return [m.code for m in self.pushed]

    def take(self) -> list[Message]:
        taken, self.pushed = self.pushed, []
        return taken


def make_broker(**mq: object) -> tuple[Broker, FakeClock]:
    config = Config()
    for key, value in mq.items():
        setattr(config.mq, key, value)
    clock = FakeClock()
    return Broker(config, clock, new_code=sequential_codes()), clock


def sequential_codes() -> Callable[[], Code]:
    """Codes that are the same on every run (hypothesis replays need it; real codes are
    random), as the broker keeps them: ``code_key`` of ``f"{n:032x}"`` is ``n``."""
    return itertools.count(1).__next__


def attach(broker: Broker, topic: str = "t", name: str = "c") -> tuple[ConsumerSession, Recorder]:
    recorder = Recorder()
    session = broker.attach_consumer(ClientInfo(name, topic, "127.0.0.1", 0), recorder)
    return session, recorder

"""Topics and the consumer sessions attached to them.

A consumer session is one WebSocket connection: two connections with the same consumer id
are two sessions (the original collapsed them into one map entry). The transport gives
each session a ``deliver`` callback that must not block: it queues frames for writing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from kapokmq.config import PushType
from kapokmq.model import ClientInfo, Message

Deliver = Callable[[list[Message]], None]


class ConsumerSession:
    __slots__ = ("deliver", "in_flight", "info", "pending", "session_id", "topic", "window")

    def __init__(
        self, session_id: int, info: ClientInfo, topic: Topic, window: int, deliver: Deliver
    ) -> None:
        self.session_id = session_id
        self.info = info
        self.topic = topic
        self.window = window
        self.deliver = deliver
        # code -> message pushed to this session and not yet acked by it
        self.in_flight: dict[str, Message] = {}
        # pub/sub only: messages fanned out to this session, waiting for window room
        self.pending: deque[Message] = deque()

    def __repr__(self) -> str:
        return f"ConsumerSession({self.session_id}, {self.info.client_id!r}@{self.topic.name!r})"


class TopicStats:
    """Monotonic counters per topic, exported by /metrics."""

    __slots__ = ("acked", "dead", "published", "pushed", "redelivered")

    def __init__(self) -> None:
        self.published = 0
        self.pushed = 0
        self.acked = 0
        self.redelivered = 0
        self.dead = 0


class Topic:
    __slots__ = ("consumers", "name", "push_type", "ready", "rr", "stats")

    def __init__(self, name: str, push_type: PushType) -> None:
        self.name = name
        self.push_type = push_type
        # waiting messages not in flight to anyone, oldest first
        self.ready: deque[Message] = deque()
        self.consumers: list[ConsumerSession] = []
        self.rr = 0  # round-robin cursor for point-to-point
        self.stats = TopicStats()

    @property
    def pubsub(self) -> bool:
        return self.push_type is PushType.PUBLISH_SUBSCRIBE

    def in_flight(self) -> int:
        return sum(len(c.in_flight) for c in self.consumers)

"""Topics and the consumer sessions attached to them.

A consumer session is one WebSocket connection: two connections with the same consumer id
are two sessions (the original collapsed them into one map entry). The transport gives
each session a ``deliver`` callback that must not block: it queues frames for writing.
It must not change the list it is given: one pub/sub dispatch hands the same list to every
subscriber whose batch is equal (core/dispatch.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from kapokmq.config import PushType
from kapokmq.model import ClientInfo, Code, Message

Deliver = Callable[[list[Message]], None]

# What one queued or pushed copy costs beyond its MessageData, in the byte bounds of
# mq.maxPendingBytes: the push frame's JSON envelope and header, roughly.
COPY_OVERHEAD = 128
# A pub/sub subscriber with more than mq.maxPendingBytes queued is cut once it has acked
# nothing for this many seconds (it is not reading), or at once past HARD_LIMIT times the
# bound: one that reads and acks but lags behind a burst is given time to catch up.
STALLED_AFTER = 1.0
HARD_LIMIT = 8


def copy_bytes(msg: Message) -> int:
    """A message's weight in mq.maxPendingBytes (MessageData's encoded bytes + envelope)."""
    return len(msg.body) + COPY_OVERHEAD


class ConsumerSession:
    __slots__ = (
        "acked_at",
        "deliver",
        "held_bytes",
        "held_count",
        "in_flight",
        "info",
        "max_bytes",
        "overflow",
        "paused",
        "pending",
        "pending_bytes",
        "session_id",
        "topic",
        "window",
    )

    def __init__(
        self,
        session_id: int,
        info: ClientInfo,
        topic: Topic,
        window: int,
        deliver: Deliver,
        max_bytes: int = 8 << 20,
        overflow: Callable[[], None] | None = None,
        now: float = 0.0,
    ) -> None:
        self.session_id = session_id
        self.info = info
        self.topic = topic
        self.window = window
        self.deliver = deliver
        # code -> message pushed to this session and not yet acked by it (in pub/sub too:
        # another subscriber's ack does not take a copy out of this window)
        self.in_flight: dict[Code, Message] = {}
        # the weight (copy_bytes) of what was pushed into ``in_flight`` and how many: counted
        # up by every push, never down (acks cost nothing), so an upper bound, recounted by
        # dispatch when it reaches max_bytes and copies have left since (len(in_flight)
        # below held_count): what one connection holds stays within mq.maxPendingBytes
        self.held_bytes = 0
        self.held_count = 0
        # pub/sub only: messages fanned out to this session, waiting for window room,
        # and their weight (copy_bytes); over max_bytes the session is a slow consumer
        self.pending: deque[Message] = deque()
        self.pending_bytes = 0
        # mq.maxPendingBytes: the most its pushed and unacked copies may weigh (plus the
        # one that crossed it), so also the most one push batch may weigh
        self.max_bytes = max_bytes
        # the transport's buffer is full (pause_writing): nothing is pushed until resumed
        self.paused = False
        # called once when the broker cuts this session as a slow consumer (the transport
        # closes the connection); None: the session is never cut
        self.overflow = overflow
        self.acked_at = now  # the latest ack from it (its attach time before the first)

    def __repr__(self) -> str:
        return f"ConsumerSession({self.session_id}, {self.info.client_id!r}@{self.topic.name!r})"


class TopicStats:
    """Monotonic counters per topic, exported by /metrics."""

    __slots__ = (
        "acked",
        "dead",
        "late_acks",
        "published",
        "pushed",
        "redelivered",
        "slow_consumers",
        "unknown_acks",
    )

    def __init__(self) -> None:
        self.published = 0
        self.pushed = 0
        self.acked = 0
        self.redelivered = 0
        self.dead = 0
        # acks of codes no message of this topic has (unknown, or another topic's)
        self.unknown_acks = 0
        # acks of messages that were dead already (expired, max deliveries): ignored
        self.late_acks = 0
        # consumer sessions cut for holding more than mq.maxPendingBytes
        self.slow_consumers = 0


class Topic:
    __slots__ = ("consumers", "name", "pubsub", "push_type", "ready", "rr", "stats")

    def __init__(self, name: str, push_type: PushType) -> None:
        self.name = name
        self.push_type = push_type
        # read on every dispatch: an Enum member lookup costs ~200 ns on Python 3.11
        self.pubsub = push_type is PushType.PUBLISH_SUBSCRIBE
        # waiting messages not in flight to anyone, oldest first
        self.ready: deque[Message] = deque()
        self.consumers: list[ConsumerSession] = []
        self.rr = 0  # round-robin cursor for point-to-point
        self.stats = TopicStats()

    def in_flight(self) -> int:
        return sum(len(c.in_flight) for c in self.consumers)

"""Handing ready messages to consumer sessions, within each session's in-flight window.

Point-to-point: each message goes to one session, round-robin, skipping full sessions.
Publish/subscribe: each message is fanned out to every session present at that moment;
per-session ``pending`` queues hold copies until that session's window has room.
Every push is collected per session and delivered as one batch, so the transport can
write many frames with one system call.
"""

from __future__ import annotations

from kapokmq.core.topics import ConsumerSession, Topic
from kapokmq.model import Message, Status


class _Fanout:
    """Marker holder for a pub/sub message that is in flight to the topic's subscribers."""

    def __repr__(self) -> str:
        return "FANOUT"


FANOUT = _Fanout()

_WAITING = Status.WAITING
_DEAD = Status.DEAD


def _deliverable(msg: Message) -> bool:
    return not msg.removed and msg.status is _WAITING


def dispatch_p2p(topic: Topic, now: float, limit: int = -1) -> int:
    """Push ready messages round-robin (at most ``limit`` if >= 0); returns the count."""
    ready = topic.ready
    consumers = topic.consumers
    n = len(consumers)
    if not n or not ready:
        return 0
    if n == 1:
        return _dispatch_to_one(topic, consumers[0], now, limit)
    batches: dict[ConsumerSession, list[Message]] = {}
    idx = topic.rr
    skipped = 0
    pushed = 0
    while ready and skipped < n and pushed != limit:
        session = consumers[idx % n]
        idx += 1
        in_flight = session.in_flight
        if len(in_flight) >= session.window:
            skipped += 1
            continue
        skipped = 0
        msg = ready.popleft()
        if not _deliverable(msg):
            idx -= 1  # give this session the next message instead
            continue
        in_flight[msg.code] = msg
        msg.holder = session
        msg.attempts += 1
        msg.pushed_at = now
        batch = batches.get(session)
        if batch is None:
            batches[session] = [msg]
        else:
            batch.append(msg)
        pushed += 1
    topic.rr = idx % n
    for session, batch in batches.items():
        session.deliver(batch)
    topic.stats.pushed += pushed
    return pushed


def _dispatch_to_one(topic: Topic, session: ConsumerSession, now: float, limit: int) -> int:
    """``dispatch_p2p`` with a single consumer, the common case: no round-robin."""
    in_flight = session.in_flight
    room = session.window - len(in_flight)
    if 0 <= limit < room:
        room = limit
    ready = topic.ready
    batch: list[Message] = []
    append = batch.append
    while room > 0 and ready:
        msg = ready.popleft()
        if msg.removed or msg.status is not _WAITING:  # not _deliverable
            continue
        in_flight[msg.code] = msg
        msg.holder = session
        msg.attempts += 1
        msg.pushed_at = now
        append(msg)
        room -= 1
    if batch:
        session.deliver(batch)
        topic.stats.pushed += len(batch)
    return len(batch)


def dispatch_pubsub(topic: Topic, now: float, limit: int = -1) -> int:
    """Fan ready messages out to all sessions, then drain each session's pending copies
    (at most ``limit`` copies in all if >= 0)."""
    consumers = topic.consumers
    if not consumers:
        return 0
    ready = topic.ready
    fanned: list[Message] = []
    while ready:
        msg = ready.popleft()
        if not _deliverable(msg):
            continue
        msg.holder = FANOUT
        msg.attempts += 1
        msg.pushed_at = now
        fanned.append(msg)
    if fanned:
        for session in consumers:
            session.pending.extend(fanned)
    pushed = 0
    for session in consumers:
        pending = session.pending
        if not pending:
            continue
        in_flight = session.in_flight
        room = session.window - len(in_flight)
        batch: list[Message] = []
        while pending and room > 0 and pushed + len(batch) != limit:
            msg = pending.popleft()
            if msg.removed or msg.status is _DEAD:  # dead: never pushed again (TTL)
                continue
            in_flight[msg.code] = msg
            batch.append(msg)
            room -= 1
        if batch:
            pushed += len(batch)
            session.deliver(batch)
    topic.stats.pushed += pushed
    return pushed


def dispatch(topic: Topic, now: float, limit: int = -1) -> int:
    if topic.pubsub:
        return dispatch_pubsub(topic, now, limit)
    return dispatch_p2p(topic, now, limit)

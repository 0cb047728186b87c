"""Handing ready messages to consumer sessions, within each session's in-flight window.

Point-to-point: each message goes to one session, round-robin, skipping full sessions.
Publish/subscribe: each message is fanned out to every session present at that moment;
per-session ``pending`` queues hold copies until that session's window has room.
Every push is collected per session and delivered as one batch, so the transport can
write many frames with one system call. Pub/sub subscribers that get the same copies in
one dispatch (in step, the usual case) get the same list object, so the transport can
encode it once for all of them (``model.PushBatches``).

A session takes a push only while its window (``mq.maxInFlight`` unacked copies) has
room, the copies it holds pushed and unacked weigh less than ``mq.maxPendingBytes``
(``copy_bytes``; ``_held``), and its transport is not paused (its socket buffer is
full); so one batch weighs at most that too. A pub/sub session whose queued copies
weigh more than that and that has stopped acking is a slow consumer: it is reported in
``overflowed`` and the broker cuts it (docs/protocol.md, "Slow consumers").
"""

from __future__ import annotations

from kapokmq.core.topics import COPY_OVERHEAD, HARD_LIMIT, STALLED_AFTER, ConsumerSession, Topic
from kapokmq.model import GONE, Code, Flight, Message, Status


class _Fanout:
    """Marker holder for a pub/sub message that is in flight to the topic's subscribers."""

    def __repr__(self) -> str:
        return "FANOUT"


FANOUT = _Fanout()

_WAITING = Status.WAITING
_CONSUMED = Status.CONSUMED
_DEAD = Status.DEAD


def _deliverable(msg: Message) -> bool:
    """Waiting and held by nobody: a message can be in ``ready`` twice (one that died or
    was consumed there stays until popped, and a Requeue queues it again), and only its
    first pop may push it (owner None: queued; a session or FANOUT: in flight; GONE)."""
    return msg.flight.owner is None and msg.status is _WAITING


def _held(session: ConsumerSession) -> int:
    """The weight of the copies ``session`` holds pushed and unacked, recounted only when
    the running upper bound (``held_bytes``) reaches the bound and copies have left."""
    held = session.held_bytes
    if held >= session.max_bytes:
        in_flight = session.in_flight
        if len(in_flight) != session.held_count:
            held = COPY_OVERHEAD * len(in_flight)
            for msg in in_flight.values():
                held += len(msg.body)
            session.held_bytes = held
            session.held_count = len(in_flight)
    return held


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
    weights: dict[ConsumerSession, int] = {}
    flights: dict[ConsumerSession, Flight] = {}
    idx = topic.rr
    skipped = 0
    pushed = 0
    while ready and skipped < n and pushed != limit:
        session = consumers[idx % n]
        idx += 1
        in_flight = session.in_flight
        weight = weights.get(session)
        if weight is None:  # what it holds, then what this dispatch gives it
            weight = weights[session] = _held(session)
        if len(in_flight) >= session.window or session.paused or weight >= session.max_bytes:
            skipped += 1
            continue
        skipped = 0
        msg = ready.popleft()
        if not _deliverable(msg):
            idx -= 1  # give this session the next message instead
            continue
        in_flight[msg.code] = msg
        msg.attempts += 1
        batch = batches.get(session)
        if batch is None:
            msg.flight = flights[session] = Flight(session, now)
            batches[session] = [msg]
        else:
            msg.flight = flights[session]
            batch.append(msg)
        weights[session] = weight + len(msg.body) + COPY_OVERHEAD
        pushed += 1
    topic.rr = idx % n
    for session, batch in batches.items():
        session.held_bytes = weights[session]
        session.held_count += len(batch)
        session.deliver(batch)
    topic.stats.pushed += pushed
    return pushed


def _dispatch_to_one(topic: Topic, session: ConsumerSession, now: float, limit: int) -> int:
    """``dispatch_p2p`` with a single consumer, the common case: no round-robin."""
    if session.paused:
        return 0
    in_flight = session.in_flight
    room = session.window - len(in_flight)
    if 0 <= limit < room:
        room = limit
    held = _held(session)
    room_bytes = session.max_bytes - held
    if room_bytes <= 0:
        return 0
    ready = topic.ready
    batch: list[Message] = []
    append = batch.append
    flight = Flight(session, now)
    while room > 0 and ready:
        msg = ready.popleft()
        if msg.flight.owner is not None or msg.status is not _WAITING:  # not _deliverable
            continue
        in_flight[msg.code] = msg
        msg.flight = flight
        msg.attempts += 1
        append(msg)
        room -= 1
        room_bytes -= len(msg.body) + COPY_OVERHEAD
        if room_bytes <= 0:
            break
    if batch:
        session.held_bytes = session.max_bytes - room_bytes
        session.held_count += len(batch)
        session.deliver(batch)
        topic.stats.pushed += len(batch)
    return len(batch)


def dispatch_pubsub(
    topic: Topic, now: float, limit: int = -1, overflowed: list[ConsumerSession] | None = None
) -> int:
    """Fan ready messages out to all sessions, then drain each session's pending copies
    (at most ``limit`` copies in all if >= 0). Sessions whose queued copies now weigh
    more than their ``max_bytes`` and that have stopped acking (``STALLED_AFTER``), or
    that weigh ``HARD_LIMIT`` times that, are appended to ``overflowed`` (if they can be
    cut)."""
    consumers = topic.consumers
    if not consumers:
        return 0
    ready = topic.ready
    fanned: list[Message] = []
    weight = 0
    flight = Flight(FANOUT, now)
    while ready:
        msg = ready.popleft()
        if not _deliverable(msg):
            continue
        msg.flight = flight
        msg.attempts += 1
        fanned.append(msg)
        weight += len(msg.body)
    if fanned:
        weight += COPY_OVERHEAD * len(fanned)
        for session in consumers:
            session.pending.extend(fanned)
            session.pending_bytes += weight
    pushed = 0
    n_fanned = len(fanned)
    fanned_codes: dict[Code, Message] | None = None
    shared: list[Message] = fanned  # the latest batch delivered: equal batches are one list
    for session in consumers:
        pending = session.pending
        if not pending:
            continue
        if session.paused:
            pass
        elif (
            len(pending) == n_fanned
            and session.window - len(session.in_flight) >= n_fanned
            and weight + _held(session) <= session.max_bytes
            and (limit < 0 or pushed + n_fanned <= limit)
        ):
            # in step (the usual case): what was just fanned out is all it has queued and
            # all of it fits, so the copy-by-copy drain below would take exactly that
            if fanned_codes is None:
                fanned_codes = {msg.code: msg for msg in fanned}
            session.in_flight.update(fanned_codes)
            pending.clear()
            session.pending_bytes -= weight
            session.held_bytes += weight
            session.held_count += n_fanned
            pushed += n_fanned
            session.deliver(fanned)
        else:
            batch = _drain(session, limit - pushed if limit >= 0 else -1)
            if batch:
                pushed += len(batch)
                if batch == shared:  # identity of the items first: cheap when they agree
                    batch = shared
                else:
                    shared = batch
                session.deliver(batch)
        queued = session.pending_bytes
        if (
            queued > session.max_bytes
            and (now - session.acked_at > STALLED_AFTER or queued > HARD_LIMIT * session.max_bytes)
            and session.overflow is not None
            and overflowed is not None
        ):
            overflowed.append(session)
    topic.stats.pushed += pushed
    return pushed


def _drain(session: ConsumerSession, limit: int) -> list[Message]:
    """Take a pub/sub session's queued copies while its window and the batch byte bound
    have room (at most ``limit`` if >= 0)."""
    pending = session.pending
    in_flight = session.in_flight
    room = session.window - len(in_flight)
    held = _held(session)
    room_bytes = session.max_bytes - held
    drained = 0
    batch: list[Message] = []
    while pending and room > 0 and room_bytes > 0 and len(batch) != limit:
        msg = pending.popleft()
        size = len(msg.body) + COPY_OVERHEAD
        drained += size
        # a copy is owed to every subscriber even when another one's ack already
        # consumed (and, with isCleanConsumed, removed) the message; not when it
        # was deleted or expired, or is dead (TTL): never pushed again
        status = msg.status
        if (msg.flight.owner is GONE and status is not _CONSUMED) or status is _DEAD:
            continue
        in_flight[msg.code] = msg
        batch.append(msg)
        room -= 1
        room_bytes -= size
    session.pending_bytes -= drained
    session.held_bytes = session.max_bytes - room_bytes
    session.held_count += len(batch)
    return batch


def dispatch(
    topic: Topic, now: float, limit: int = -1, overflowed: list[ConsumerSession] | None = None
) -> int:
    if topic.pubsub:
        return dispatch_pubsub(topic, now, limit, overflowed)
    return dispatch_p2p(topic, now, limit)

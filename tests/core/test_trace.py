"""Message trace in the sans-I/O broker (fake clock): the events, their order, the bounds."""

from __future__ import annotations

import tracemalloc

import msgspec

from kapokmq.core.broker import Broker
from kapokmq.core.trace import (
    ACKED,
    CONSUMER_GONE,
    DEAD,
    DELETED,
    DELIVERED_NOW,
    PER_MESSAGE,
    PUBLISHED,
    PUSHED,
    REDELIVERED,
    REQUEUED,
    SLOW_CONSUMER,
    TIMEOUT,
    Event,
    Trace,
    event_view,
)
from kapokmq.model import IDLE, ClientInfo, Code, Status, new_message
from tests.core.fakes import Recorder, attach, make_broker

SOURCE = ("p1", "10.0.0.7", "ws:picows")


def traced(broker: Broker) -> Trace:
    assert broker.trace is not None
    return broker.trace


def events_of(broker: Broker, code: Code) -> list[Event]:
    events = traced(broker).events_of(code)
    assert events is not None
    return events


def kinds(broker: Broker, code: Code) -> list[int]:
    return [event[1] for event in events_of(broker, code)]


def run(broker, clock, seconds: float) -> None:
    clock.advance(seconds)
    broker.tick()
    broker.dispatch()


def test_trace_off_by_default_and_no_hook_records_anything() -> None:
    broker, _clock = make_broker()
    assert broker.trace is None
    session, rec = attach(broker)
    msg = broker.publish("t", "x")
    broker.dispatch()
    assert broker.ack(session, msg.code)
    assert rec.codes == [msg.code]


def test_publish_push_redelivery_ack_are_traced_in_order_with_who_and_when():
    broker, clock = make_broker(trace=1.0, pushRetryTime=10)
    first, _ = attach(broker, name="c1")
    broker.publish_many("t", [("x", 0)], SOURCE)
    msg = next(iter(broker.messages()))
    published_at = clock.now
    broker.dispatch()
    run(broker, clock, 10.5)  # unacked: redelivered (timeout) and pushed again
    pushed_again_at = clock.now
    clock.advance(1)
    broker.ack(first, msg.code)
    events = events_of(broker, msg.code)
    assert events == [
        (published_at, PUBLISHED, SOURCE),
        (published_at, PUSHED, "c1", 1),
        (pushed_again_at, REDELIVERED, TIMEOUT),
        (pushed_again_at, PUSHED, "c1", 2),
        (pushed_again_at + 1, ACKED, "c1"),
    ]
    assert [event_view(e)["Event"] for e in events] == [
        "published",
        "pushed",
        "redelivered",
        "pushed",
        "acked",
    ]
    assert event_view(events[0]) == {
        "Time": published_at,
        "Event": "published",
        "ProducerId": "p1",
        "ProducerIp": "10.0.0.7",
        "Engine": "ws:picows",
    }
    assert event_view(events[3]) == {
        "Time": pushed_again_at,
        "Event": "pushed",
        "ConsumerId": "c1",
        "Attempt": 2,
    }
    assert event_view(events[2])["Reason"] == "timeout"


def test_max_deliveries_makes_a_dead_event_with_its_reason():
    broker, clock = make_broker(trace=1, pushRetryTime=5, maxDeliveries=2)
    attach(broker)
    msg = broker.publish("t", "x")
    broker.dispatch()
    run(broker, clock, 6)
    run(broker, clock, 6)
    assert kinds(broker, msg.code) == [PUBLISHED, PUSHED, REDELIVERED, PUSHED, DEAD]
    assert events_of(broker, msg.code)[-1][2] == "max deliveries"


def test_an_expired_message_is_traced_dead_expired():
    broker, clock = make_broker(trace=1, isClean=0)
    msg = broker.publish("t", "x", 0, ttl=3)
    run(broker, clock, 3)
    assert events_of(broker, msg.code)[-1] == (clock.now, DEAD, "expired")


def test_a_consumer_that_leaves_or_is_cut_gives_its_messages_back_with_the_reason():
    broker, _clock = make_broker(trace=1)
    gone, _ = attach(broker, name="gone")
    msg = broker.publish("t", "x")
    broker.dispatch()
    broker.detach_consumer(gone)
    slow = broker.attach_consumer(ClientInfo("slow", "t", "127.0.0.1", 0), Recorder(), lambda: None)
    broker.dispatch()
    broker._cut(slow)
    events = events_of(broker, msg.code)
    assert [e[1:] for e in events[1:]] == [
        (PUSHED, "gone", 1),
        (REDELIVERED, CONSUMER_GONE),
        (PUSHED, "slow", 2),
        (REDELIVERED, SLOW_CONSUMER),
    ]


def test_console_actions_are_traced_and_the_trace_outlives_a_deleted_message():
    broker, clock = make_broker(trace=1, maxDeliveries=1, pushRetryTime=1)
    delayed = broker.publish("t", "later", 3600)
    assert broker.deliver_now(delayed.code)
    attach(broker)
    msg = broker.publish("t", "x")
    broker.dispatch()
    run(broker, clock, 2)  # one delivery allowed: dead
    assert broker.requeue(msg.code)
    assert broker.delete(msg.code)
    assert kinds(broker, delayed.code)[:2] == [PUBLISHED, DELIVERED_NOW]
    assert kinds(broker, msg.code) == [PUBLISHED, PUSHED, DEAD, REQUEUED, DELETED]
    assert broker.store.get(msg.code) is None and msg.code in traced(broker)


def test_pubsub_traces_a_push_and_an_ack_per_subscriber():
    broker, _clock = make_broker(trace=1, pushType=2)
    a, _ = attach(broker, name="a")
    b, _ = attach(broker, name="b")
    msg = broker.publish("t", "x")
    broker.dispatch()
    broker.ack_many(a, [msg.code])
    broker.ack(b, msg.code)
    events = events_of(broker, msg.code)
    assert sorted(e[2] for e in events if e[1] == PUSHED) == ["a", "b"]
    assert [e[2] for e in events if e[1] == ACKED] == ["a", "b"]


def test_a_trace_keeps_its_publish_and_the_latest_events():
    broker, clock = make_broker(trace=1, pushRetryTime=1)
    attach(broker)
    msg = broker.publish("t", "x")
    broker.dispatch()
    for _ in range(20):
        run(broker, clock, 1.5)
    events = events_of(broker, msg.code)
    assert len(events) == PER_MESSAGE
    assert events[0][1] == PUBLISHED
    assert events[-1] == (clock.now, PUSHED, "c", 21)
    assert traced(broker).events == PER_MESSAGE


def test_the_budget_evicts_the_oldest_traces_first_and_counts_them():
    broker, _clock = make_broker(trace=1, traceMaxEvents=100)
    session, _ = attach(broker)
    msgs = [broker.publish("t", str(i)) for i in range(80)]
    broker.dispatch()  # 80 pushes: 160 events, over the budget
    trace = traced(broker)
    assert trace.events <= 100
    assert trace.evicted > 0
    kept = [m.code for m in msgs if m.code in trace]
    assert kept == [m.code for m in msgs[-len(kept) :]]  # the newest survive
    assert trace.events == sum(len(events_of(broker, c)) for c in kept)
    broker.ack_many(session, [m.code for m in msgs])
    assert trace.events <= 100


def test_a_sample_rate_traces_about_that_share_of_messages():
    broker, _clock = make_broker(trace=0.1)
    for i in range(2000):
        broker.publish("t", str(i))
    assert 100 < len(traced(broker)) < 320  # 200 expected; p(outside) is negligible


def test_restore_is_idempotent_and_keeps_the_bound():
    broker, _clock = make_broker(trace=1)
    trace = traced(broker)
    events = [(1.0, PUBLISHED, SOURCE), (2.0, PUSHED, "c", 1)]
    trace.restore("a" * 32, events)
    trace.restore("a" * 32, [*events, (3.0, ACKED, "c")])
    assert trace.events_of("a" * 32) == [*events, (3.0, ACKED, "c")]
    assert trace.events == 3


def test_bytes_per_event_in_a_burst_are_small():
    """Not a speed goal (benchmarks hold those): a guard that events stay compact, shared
    tuples per batch rather than a dict per event."""
    broker, _clock = make_broker(trace=1)
    session, _ = attach(broker)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            msgs = broker._add("t", [("x", 0)] * 100, SOURCE)[0]
            broker.dispatch()
            broker.ack_many(session, [m.code for m in msgs])
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert traced(broker).events == 6000
    store_share = 2000 * 400  # generous: the messages themselves are measured too
    assert (used - store_share) / 6000 < 120


def test_sampled_messages_get_every_event_and_the_others_none() -> None:
    broker, _clock = make_broker(trace=0.3, pushRetryTime=5)
    session, _ = attach(broker)
    msgs = broker._add("t", [("x", 0)] * 300, SOURCE)[0]
    broker.dispatch()
    broker.ack_many(session, [m.code for m in msgs])
    sampled = [m for m in msgs if m.code in traced(broker)]
    assert 30 < len(sampled) < 180
    for msg in sampled:
        assert kinds(broker, msg.code) == [PUBLISHED, PUSHED, ACKED]
    assert traced(broker).events == 3 * len(sampled)


def test_a_replicated_message_is_traced_from_its_arrival() -> None:
    """A slave (or a master taking a hand-back) traces a new code it is sent as published
    by `sync`; a replicated update adds nothing, a replicated deletion is no `deleted`."""
    master, _ = make_broker()
    msgs = [master.publish("t", f"m{i}") for i in range(2)]
    replica, clock = make_broker(trace=1)
    for msg in msgs:
        replica.replicate(msgspec.structs.replace(msg, flight=IDLE))
    trace = replica.trace
    assert trace is not None
    kept, gone = (m.code for m in msgs)
    assert trace.events_of(kept) == [(clock.now, PUBLISHED, ("", "", "sync"))]
    update = replica.store.get(kept)
    assert update is not None
    replica.replicate(
        new_message(kept, "t", "m0", update.create_time, 5, 0, Status.CONSUMED, update.arrival)
    )
    assert len(trace.events_of(kept) or []) == 1
    assert replica.delete(gone, by_console=False) and trace.events_of(gone) == [
        (clock.now, PUBLISHED, ("", "", "sync"))
    ]
    assert event_view(trace.events_of(kept)[0])["Engine"] == "sync"  # type: ignore[index]

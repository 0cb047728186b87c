"""Per-message TTL and dead-letter reasons in the sans-I/O broker (fake clock)."""

from __future__ import annotations

from kapokmq.core.lifetimes import EXPIRED, MAX_DELIVERIES, REQUEUED
from kapokmq.model import Message, Status, new_message
from tests.core.fakes import attach, make_broker


def status(msg: Message) -> Status:
    return msg.status


def run(broker, clock, seconds: float) -> None:
    clock.advance(seconds)
    broker.tick()
    broker.dispatch()


def test_an_unconsumed_message_dies_as_expired_when_its_ttl_runs_out():
    broker, clock = make_broker(isClean=0)  # no periodic clean check: the TTL is the timer
    msg = broker.publish("t", "x", 0, ttl=10)
    assert broker.next_deadline() == msg.arrival + 10
    run(broker, clock, 9.99)
    assert status(msg) is Status.WAITING
    run(broker, clock, 0.01)
    assert status(msg) is Status.DEAD
    assert broker.dead_letters.reason(msg.code) == EXPIRED
    assert broker.dead_letters.history(msg.code) == [(int(clock.now), "dead: expired")]
    assert broker.topics["t"].stats.dead == 1
    _, rec = attach(broker)  # never delivered afterwards
    run(broker, clock, 1000)
    assert rec.pushed == []


def test_an_expired_message_in_flight_is_taken_back_and_never_redelivered():
    broker, clock = make_broker(pushRetryTime=5)
    session, rec = attach(broker)
    msg = broker.publish("t", "x", 0, ttl=3)
    broker.dispatch()
    assert rec.codes == [msg.code]
    run(broker, clock, 3)
    assert status(msg) is Status.DEAD and msg.code not in session.in_flight
    run(broker, clock, 60)
    assert rec.codes == [msg.code]  # no redelivery


def test_acked_in_time_is_consumed_and_the_deadline_does_nothing():
    broker, clock = make_broker()
    session, _ = attach(broker)
    msg = broker.publish("t", "x", 0, ttl=3)
    broker.dispatch()
    run(broker, clock, 2)
    assert broker.ack(session, msg.code)
    run(broker, clock, 5)
    assert status(msg) is Status.CONSUMED
    assert broker.dead_letters.history(msg.code) == []


def test_the_ttl_of_a_delayed_message_runs_from_when_it_became_due():
    broker, clock = make_broker()
    msg = broker.publish("t", "x", 100, ttl=10)
    run(broker, clock, 105)
    assert status(msg) is Status.WAITING
    assert broker.lifetimes.deadline(msg.code) == msg.arrival + 110
    run(broker, clock, 4.99)
    assert status(msg) is Status.WAITING
    run(broker, clock, 0.01)
    assert status(msg) is Status.DEAD


def test_requeue_gives_a_new_life_and_the_history_keeps_every_step():
    broker, clock = make_broker()
    msg = broker.publish("t", "x", 0, ttl=10)
    run(broker, clock, 10)
    died = int(clock.now)
    run(broker, clock, 5)
    assert broker.requeue(msg.code)
    assert status(msg) is Status.WAITING
    assert broker.dead_letters.reason(msg.code) == EXPIRED  # the latest death's reason
    run(broker, clock, 9.9)
    assert status(msg) is Status.WAITING  # TTL runs again from the requeue
    run(broker, clock, 0.1)
    assert status(msg) is Status.DEAD
    assert broker.dead_letters.history(msg.code) == [
        (died, "dead: expired"),
        (died + 5, REQUEUED),
        (int(clock.now), "dead: expired"),
    ]
    assert broker.delete(msg.code)
    assert broker.dead_letters.history(msg.code) == []  # forgotten with the message


def test_an_ack_after_the_message_died_is_ignored_and_counted():
    """Expired or dead by max deliveries: a late ack leaves it dead (docs/protocol.md,
    "TTL and dead letters"), in its consumer's read batch too."""
    broker, clock = make_broker(maxDeliveries=1, pushRetryTime=5)
    session, _ = attach(broker)
    expired = broker.publish("t", "x", 0, ttl=3)
    given_up = broker.publish("t", "y", 0)
    broker.dispatch()
    run(broker, clock, 6)
    assert status(expired) is Status.DEAD and status(given_up) is Status.DEAD
    assert not broker.ack(session, expired.code)
    broker.ack_many(session, [given_up.code])
    assert status(expired) is Status.DEAD and status(given_up) is Status.DEAD
    stats = broker.topics["t"].stats
    assert (stats.late_acks, stats.acked, stats.unknown_acks) == (2, 0, 0)
    assert broker.dead_letters.reason(expired.code) == EXPIRED
    assert broker.requeue(given_up.code)  # the console can still give it another life
    broker.dispatch()
    assert broker.ack(session, given_up.code) and status(given_up) is Status.CONSUMED


def test_max_deliveries_is_recorded_as_the_reason():
    broker, clock = make_broker(maxDeliveries=1, pushRetryTime=5)
    attach(broker)
    msg = broker.publish("t", "x", 0)
    broker.dispatch()
    run(broker, clock, 6)
    assert status(msg) is Status.DEAD
    assert broker.dead_letters.reason(msg.code) == MAX_DELIVERIES


def test_a_topic_default_ttl_applies_unless_the_message_has_its_own():
    broker, clock = make_broker(topics={"short": {"ttl": 5}})
    default = broker.publish("short", "d", 0)
    own = broker.publish("short", "o", 0, ttl=50)
    other = broker.publish("t", "none", 0)
    run(broker, clock, 5)
    assert status(default) is Status.DEAD
    assert status(own) is Status.WAITING
    run(broker, clock, 1000)
    assert status(own) is Status.DEAD
    assert status(other) is Status.WAITING  # no TTL: waits for ever


def test_pubsub_copies_of_an_expired_message_are_not_pushed():
    broker, clock = make_broker(pushType=2, maxInFlight=1)
    session, rec = attach(broker)
    first = broker.publish("t", "a", 0)
    doomed = broker.publish("t", "b", 0, ttl=2)
    broker.dispatch()
    assert rec.codes == [first.code]  # the window holds one: "b" is a pending copy
    run(broker, clock, 2)
    assert status(doomed) is Status.DEAD
    broker.ack(session, first.code)
    broker.dispatch()
    assert rec.codes == [first.code]


def test_a_ttl_that_ran_out_while_the_broker_was_down_ends_at_the_first_tick():
    broker, clock = make_broker(isClean=0)
    msg = new_message(
        "a" * 32, "t", "x", int(clock.now) - 100, 0, 0, Status.WAITING, clock.now - 100
    )
    delayed = new_message("b" * 32, "t", "y", int(clock.now), 0, 50, Status.DELAYED, clock.now)
    broker.restore_many([msg, delayed])
    broker.restore_extras({msg.code: (60, clock.now - 40, []), delayed.code: (5, None, [])}, {})
    assert broker.next_deadline() == clock.now - 40
    run(broker, clock, 0)
    assert status(msg) is Status.DEAD and broker.dead_letters.reason(msg.code) == EXPIRED
    run(broker, clock, 50)  # the delayed one's TTL starts when it comes due
    assert status(delayed) is Status.WAITING
    run(broker, clock, 5)
    assert status(delayed) is Status.DEAD

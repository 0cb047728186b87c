"""The schedule you can see: delayed messages by due time, deliver-now, cancel (fake clock)."""

from __future__ import annotations

from kapokmq.model import Code, Message, Status, new_message
from tests.core.fakes import attach, make_broker

DAY = 86_400


def status(msg: Message) -> Status:
    return msg.status


def test_a_thirty_day_delay_is_due_at_arrival_plus_delay_not_before():
    broker, clock = make_broker()
    _, rec = attach(broker)
    msg = broker.publish("t", "in a month", 30 * DAY)  # longer than cleanTime (2 days)
    assert broker.scheduler.next_deadline() == msg.arrival + 30 * DAY
    clock.advance(30 * DAY - 0.001)
    broker.tick()
    broker.dispatch()
    assert rec.pushed == [] and status(msg) is Status.DELAYED
    clock.advance(0.001)
    broker.tick()
    broker.dispatch()
    assert rec.codes == [msg.code] and status(msg) is Status.WAITING
    assert msg.delay_time == 30 * DAY  # pushed with the delay it was given


def test_upcoming_lists_delayed_messages_soonest_first_paged_and_by_topic():
    broker, clock = make_broker()
    late = broker.publish("a", "late", 3 * DAY)
    clock.advance(1)
    soon = broker.publish("b", "soon", 10)
    broker.publish("a", "now", 0)  # not delayed: not listed
    mid = broker.publish("a", "mid", DAY)
    total, page = broker.scheduler.upcoming(None, 0, 10)
    assert total == 3
    assert [(m.code, due) for due, m in page] == [
        (soon.code, soon.arrival + 10),
        (mid.code, mid.arrival + DAY),
        (late.code, late.arrival + 3 * DAY),
    ]
    assert [m.code for _, m in broker.scheduler.upcoming(None, 1, 1)[1]] == [mid.code]
    total, page = broker.scheduler.upcoming("a", 0, 10)
    assert total == 2 and [m.code for _, m in page] == [mid.code, late.code]
    assert broker.scheduler.upcoming("nope", 0, 10) == (0, [])


def test_deliver_now_pushes_at_once_and_leaves_the_schedule():
    broker, clock = make_broker(isRePush=0)
    _, rec = attach(broker)
    events: list[tuple[Code, Status]] = []

    class Listener:
        def message_added(self, m: Message) -> None: ...
        def messages_added(self, ms: list[Message], codes: bytes | None = None) -> None: ...
        def message_removed(self, m: Message) -> None: ...
        def messages_updated(self, ms: list[Message], codes: bytes | None = None) -> None: ...

        def message_updated(self, m: Message) -> None:
            events.append((m.code, m.status))

    broker.add_listener(Listener())
    msg = broker.publish("t", "x", 30 * DAY)
    clock.advance(7)
    assert broker.deliver_now(msg.code)
    assert events == [(msg.code, Status.WAITING)]  # storage and replication are told
    broker.dispatch()
    assert rec.codes == [msg.code]
    assert msg.delay_time == 7  # the seconds it actually waited
    assert broker.scheduler.upcoming(None, 0, 10) == (0, [])
    assert broker.store.count(Status.DELAYED) == 0
    assert len(broker.scheduler) == 0 and broker.scheduler.next_deadline() is None
    clock.advance(30 * DAY)
    broker.tick()
    broker.dispatch()
    assert rec.codes == [msg.code]
    assert not broker.deliver_now(msg.code)  # no longer delayed
    assert not broker.deliver_now("0" * 32)


def test_cancel_is_delete_and_the_message_never_comes():
    broker, clock = make_broker()
    _, rec = attach(broker)
    msg = broker.publish("t", "x", 60)
    assert broker.delete(msg.code)
    assert broker.scheduler.upcoming(None, 0, 10) == (0, [])
    assert len(broker.scheduler) == 0 and broker.scheduler.next_deadline() is None
    clock.advance(61)
    broker.tick()
    broker.dispatch()
    assert rec.pushed == []


def test_a_restored_delay_keeps_its_due_time():
    broker, clock = make_broker()
    msg = broker.publish("t", "x", 30 * DAY)
    clock.advance(DAY)  # "restart" a day later: a new broker restores the stored message
    fresh, fresh_clock = make_broker()
    fresh_clock.now = clock.now
    copy = new_message(
        msg.code,
        msg.topic,
        msg.data,
        msg.create_time,
        msg.consumed_time,
        msg.delay_time,
        msg.status,
        msg.arrival,
    )
    fresh.restore_many([copy])
    assert fresh.scheduler.upcoming(None, 0, 1)[1] == [(msg.arrival + 30 * DAY, copy)]
    assert fresh.scheduler.next_deadline() == msg.arrival + 30 * DAY


def test_expiry_counts_a_delay_from_its_due_time():
    broker, clock = make_broker(cleanTime=100, checkSpeed=5)
    session, _ = attach(broker)
    delayed = broker.publish("t", "d", 1000)
    plain = broker.publish("t", "p", 0)
    clock.advance(500)
    broker.tick()  # plain is 500 s old: cleaned; delayed is not even due
    assert broker.store.get(plain.code) is None
    assert broker.store.get(delayed.code) is delayed
    clock.advance(500)
    broker.tick()
    broker.dispatch()
    assert delayed.code in session.in_flight  # due and pushed, not cleaned on arrival
    broker.ack(session, delayed.code)
    clock.advance(99)
    broker.tick()
    assert broker.store.get(delayed.code) is delayed
    clock.advance(10)
    broker.tick()
    assert broker.store.get(delayed.code) is None  # cleanTime after it came due


def test_the_schedule_holds_exactly_the_delayed_messages():
    """No stale entry after deliver-now, delete, expiry to due, a replicated change or a
    requeue: the timer never wakes for a message that is no longer delayed."""
    broker, clock = make_broker(isRePush=0)
    msgs = [broker.publish(f"t{i % 3}", f"m{i}", 100 + i) for i in range(9)]
    assert len(broker.scheduler) == 9
    broker.deliver_now(msgs[0].code)
    broker.delete(msgs[1].code)
    copy = new_message(
        msgs[2].code, msgs[2].topic, "", msgs[2].create_time, 0, 0, Status.WAITING, msgs[2].arrival
    )
    broker.replicate(copy)  # the master says it is due now
    assert len(broker.scheduler) == 6
    assert broker.scheduler.next_deadline() == msgs[3].arrival + 103
    clock.advance(104)
    broker.tick()  # msgs[3] and msgs[4] come due
    assert len(broker.scheduler) == 4
    assert [m.code for _, m in broker.scheduler.upcoming(None, 0, 10)[1]] == [
        m.code for m in msgs[5:]
    ]
    assert broker.scheduler.upcoming("t0", 0, 10)[0] == 1  # msgs[6]; 0 and 3 are gone
    for msg in msgs[5:]:
        broker.delete(msg.code)
    assert len(broker.scheduler) == 0 and broker.scheduler.upcoming("t2", 0, 10) == (0, [])
    assert broker.scheduler.next_deadline() is None


def test_a_page_deep_into_100k_delayed_messages():
    """The console's schedule lists by due time from any offset and per topic without a
    walk (benchmarks: ``python -m benchmarks.schedule`` times it)."""
    broker, clock = make_broker()
    count = 100_000
    for i in range(count):
        # due times out of publish order: every 7th published is due first
        broker.publish("odd" if i % 2 else "even", f"m{i}", 10 + (i * 7919) % count)
    total, page = broker.scheduler.upcoming(None, 60_000, 50)
    assert total == count and len(page) == 50
    dues = [due for due, _ in page]
    assert dues == sorted(dues) and dues[0] == clock.now + 10 + 60_000
    total, page = broker.scheduler.upcoming("odd", 49_990, 50)
    assert total == count // 2 and len(page) == 10
    assert all(m.topic == "odd" for _, m in page)

"""Unit tests of the sans-I/O broker, driven by a fake clock."""

from __future__ import annotations

from kapokmq.model import ClientInfo, Code, Message, Status
from tests.core.fakes import Recorder, attach, make_broker


def status(msg: Message) -> Status:
    """Read the status afresh (keeps mypy from narrowing across broker calls)."""
    return msg.status


def test_publish_dispatch_ack_marks_consumed():
    broker, clock = make_broker()
    session, rec = attach(broker)
    msg = broker.publish("t", "hello", 0)
    assert rec.pushed == []  # nothing is written until dispatch runs
    broker.dispatch()
    assert rec.codes == [msg.code]
    clock.advance(2)
    assert broker.ack(session, msg.code)
    assert msg.status is Status.CONSUMED
    assert msg.consumed_time == int(clock.now)
    assert not session.in_flight


def test_unknown_and_repeated_acks_are_ignored():
    broker, _ = make_broker()
    session, _ = attach(broker)
    msg = broker.publish("t", "x", 0)
    broker.dispatch()
    assert not broker.ack(session, "0" * 32)
    assert not broker.ack(session, "")
    assert broker.ack(session, msg.code)
    assert not broker.ack(session, msg.code)


def test_point_to_point_round_robin():
    broker, _ = make_broker()
    _, a = attach(broker, name="a")
    _, b = attach(broker, name="b")
    codes = [broker.publish("t", str(i), 0).code for i in range(6)]
    broker.dispatch()
    assert sorted(a.codes + b.codes) == sorted(codes)
    assert len(a.codes) == len(b.codes) == 3


def test_window_limits_in_flight_and_ack_opens_it():
    broker, _ = make_broker(maxInFlight=2)
    session, rec = attach(broker)
    msgs = [broker.publish("t", str(i), 0) for i in range(5)]
    broker.dispatch()
    assert rec.codes == [m.code for m in msgs[:2]]
    broker.ack(session, msgs[0].code)
    broker.dispatch()
    assert rec.codes == [m.code for m in msgs[:3]]


def test_message_without_consumer_waits_for_one():
    broker, _ = make_broker()
    msg = broker.publish("t", "early", 0)
    broker.dispatch()
    _, rec = attach(broker)
    broker.dispatch()
    assert rec.codes == [msg.code]


def test_delayed_message_is_due_at_arrival_plus_delay():
    broker, clock = make_broker()
    _, rec = attach(broker)
    msg = broker.publish("t", "later", 3)
    assert msg.status is Status.DELAYED
    assert broker.scheduler.next_deadline() == clock.now + 3
    clock.advance(2.999)
    broker.tick()
    broker.dispatch()
    assert rec.pushed == []
    clock.advance(0.001)
    broker.tick()
    broker.dispatch()
    assert rec.codes == [msg.code]
    assert status(msg) is Status.WAITING


def test_negative_delay_is_stored_and_delivered_at_once():
    broker, _ = make_broker()
    _, rec = attach(broker)
    msg = broker.publish("t", "past", -5)
    assert msg.status is Status.WAITING and msg.delay_time == -5
    broker.dispatch()
    assert rec.codes == [msg.code]


def test_redelivery_rewrites_delay_time_to_elapsed_seconds():
    broker, clock = make_broker(pushRetryTime=10)
    _, rec = attach(broker)
    msg = broker.publish("t", "x", 0)
    broker.dispatch()
    clock.advance(9.9)
    broker.tick()
    broker.dispatch()
    assert rec.codes == [msg.code]
    clock.advance(0.1)
    broker.tick()
    broker.dispatch()
    assert rec.codes == [msg.code, msg.code]
    assert msg.delay_time == int(clock.now) - msg.create_time == 10
    assert msg.attempts == 2


def test_no_redelivery_when_repush_is_off():
    broker, clock = make_broker(pushRetryTime=10, isRePush=0)
    _, rec = attach(broker)
    broker.publish("t", "x", 0)
    broker.dispatch()
    clock.advance(100)
    broker.tick()
    broker.dispatch()
    assert len(rec.pushed) == 1


def test_max_deliveries_dead_letters_and_requeue_revives():
    broker, clock = make_broker(pushRetryTime=1, maxDeliveries=2)
    session, rec = attach(broker)
    msg = broker.publish("t", "x", 0)
    for _ in range(3):
        broker.dispatch()
        clock.advance(1)
        broker.tick()
    broker.dispatch()
    assert msg.status is Status.DEAD
    assert len(rec.pushed) == 2
    assert broker.requeue(msg.code)
    broker.dispatch()
    assert status(msg) is Status.WAITING and len(rec.pushed) == 3
    assert broker.ack(session, msg.code)


def test_disconnect_returns_in_flight_to_front_of_queue():
    broker, _ = make_broker()
    first, _ = attach(broker, name="first")
    msgs = [broker.publish("t", str(i), 0) for i in range(3)]
    broker.dispatch()
    broker.detach_consumer(first)
    later = broker.publish("t", "later", 0)
    _, rec = attach(broker, name="second")
    broker.dispatch()
    assert rec.codes == [m.code for m in msgs] + [later.code]


def test_duplicate_consumer_ids_are_separate_sessions():
    broker, _ = make_broker()
    attach(broker, name="same")
    attach(broker, name="same")
    consumers, _ = broker.clients()
    assert [c.client_id for c in consumers] == ["same", "same"]


def test_pubsub_fans_out_and_one_ack_consumes():
    broker, _ = make_broker(pushType=2)
    a, ra = attach(broker, name="a")
    b, rb = attach(broker, name="b")
    msg = broker.publish("t", "all", 0)
    broker.dispatch()
    assert ra.codes == rb.codes == [msg.code]
    assert broker.ack(a, msg.code)
    assert msg.status is Status.CONSUMED
    assert msg.code in b.in_flight  # b's copy counts against b's window until b acks it
    assert not broker.ack(b, msg.code)
    assert not b.in_flight


def test_pubsub_other_subscribers_acks_do_not_open_a_window():
    broker, _ = make_broker(pushType=2, maxInFlight=2)
    fast, rf = attach(broker, name="fast")
    slow, rs = attach(broker, name="slow")
    for i in range(5):
        broker.publish("t", f"m{i}", 0)
        broker.dispatch()
        for msg in rf.take():
            broker.ack(fast, msg.code)
    assert len(rs.pushed) == 2  # its window, though all five were consumed by the fast one
    assert [m.data for m in slow.pending] == ["m2", "m3", "m4"]
    broker.ack_many(slow, rs.codes)
    broker.dispatch()
    assert [m.data for m in rs.pushed] == ["m0", "m1", "m2", "m3"]


def test_pubsub_copies_of_cleaned_messages_still_reach_every_subscriber():
    broker, _ = make_broker(pushType=2, maxInFlight=1, isCleanConsumed=1)
    fast, rf = attach(broker, name="fast")
    slow, rs = attach(broker, name="slow")
    for i in range(3):
        broker.publish("t", f"m{i}", 0)
        broker.dispatch()
        for msg in rf.take():
            broker.ack(fast, msg.code)
    assert len(broker.store) == 0
    for _ in range(3):
        broker.ack_many(slow, [m.code for m in rs.pushed[-1:]])
        broker.dispatch()
    assert [m.data for m in rs.pushed] == ["m0", "m1", "m2"]


def test_a_batch_of_pubsub_acks_releases_exactly_the_acking_subscribers_window():
    broker, _ = make_broker(pushType=2, maxInFlight=2)
    log = EventLog()
    broker.add_listener(log)
    a, ra = attach(broker, name="a")
    b, rb = attach(broker, name="b")
    c, rc = attach(broker, name="c")
    other, _ = attach(broker, "elsewhere", "o")
    foreign = broker.publish("elsewhere", "not t's", 0)
    m = [broker.publish("t", f"m{i}", 0) for i in range(4)]
    broker.dispatch()
    assert ra.codes == rb.codes == rc.codes == [m[0].code, m[1].code]
    log.events.clear()
    # its own two copies, one of them twice, another topic's code and an unknown one
    broker.ack_many(a, [m[0].code, m[1].code, m[0].code, foreign.code, "f" * 32])
    stats = broker.topic("t").stats
    assert stats.acked == 2 and stats.unknown_acks == 2
    assert status(m[0]) is status(m[1]) is Status.CONSUMED
    assert foreign.status is Status.WAITING and foreign.code in other.in_flight
    assert log.events == [
        ("updated", m[0].code, Status.CONSUMED),
        ("updated", m[1].code, Status.CONSUMED),
    ]
    assert not a.in_flight
    assert sorted(b.in_flight) == sorted(c.in_flight) == [m[0].code, m[1].code]
    broker.dispatch()
    assert ra.codes[2:] == [m[2].code, m[3].code] and len(rb.pushed) == len(rc.pushed) == 2
    # b acks copies a consumed: only b's window opens, nothing is consumed again
    broker.ack_many(b, [m[0].code, m[1].code])
    assert stats.acked == 2 and len(log.events) == 2
    assert not b.in_flight and len(c.in_flight) == 2
    broker.dispatch()
    assert rb.codes[2:] == [m[2].code, m[3].code] and len(rc.pushed) == 2
    # c's first ack of m2 consumes it; its ack of m0 only opens its window
    broker.ack_many(c, [m[0].code, m[2].code])
    assert stats.acked == 3 and status(m[2]) is Status.CONSUMED and status(m[3]) is Status.WAITING
    assert m[2].code in a.in_flight and m[2].code in b.in_flight


def test_a_repeated_code_in_one_batch_of_acks_is_consumed_once():
    broker, _ = make_broker()
    log = EventLog()
    broker.add_listener(log)
    session, _ = attach(broker)
    msg = broker.publish("t", "once", 0)
    broker.dispatch()
    log.events.clear()
    broker.ack_many(session, [msg.code, msg.code])
    assert broker.topic("t").stats.acked == 1
    assert log.events == [("updated", msg.code, Status.CONSUMED)]


def test_pubsub_subscribers_in_step_get_one_batch_list():
    broker, _ = make_broker(pushType=2, maxInFlight=3)
    attach(broker, name="a")
    attach(broker, name="b")
    behind, _ = attach(broker, name="behind")
    batches: list[list[Message]] = []
    for session in broker.topic("t").consumers:
        session.deliver = batches.append
    broker.publish("t", "first", 0)
    broker.dispatch()
    assert batches[0] is batches[1] is batches[2]  # encoded once by the transport
    for session in broker.topic("t").consumers:
        if session is not behind:
            broker.ack_many(session, list(session.in_flight))
    batches.clear()
    for i in range(3):
        broker.publish("t", f"m{i}", 0)
    broker.dispatch()
    a_batch, b_batch, behind_batch = batches
    assert a_batch is b_batch and a_batch is not behind_batch
    assert [m.data for m in a_batch] == ["m0", "m1", "m2"]
    assert [m.data for m in behind_batch] == ["m0", "m1"]  # one slot of its window is used


def test_slow_subscriber_is_cut_over_max_pending_bytes():
    broker, clock = make_broker(pushType=2, maxInFlight=10, maxPendingBytes=65536)
    fast, rf = attach(broker, name="fast")
    cut: list[str] = []
    lagging: list[str] = []
    slow = broker.attach_consumer(
        ClientInfo("slow", "t", "", 0), Recorder(), lambda: cut.append("x")
    )
    behind, rb = attach(broker, name="behind")  # acks, but one message every 0.4 s
    behind.overflow = lambda: lagging.append("x")
    never = broker.attach_consumer(ClientInfo("never", "t", "", 0), Recorder())  # no overflow
    data = "x" * 1000
    for i in range(100):  # 100 x 1,128 weighed bytes > 64 KiB queued for the slow one
        clock.advance(0.1)
        broker.publish("t", data, 0)
        broker.dispatch()
        broker.ack_many(fast, [m.code for m in rf.take()])
        if i % 4 == 0:
            broker.ack(behind, rb.take()[0].code)
        if i == 60:  # over the bound, but it acked less than STALLED_AFTER (1 s) ago
            assert not cut
    assert cut == ["x"]  # once it had acked nothing for a second
    assert slow not in broker.topic("t").consumers and not slow.pending
    assert broker.topic("t").stats.slow_consumers == 1
    assert not lagging and behind.pending_bytes > 65536  # behind, but it keeps acking
    assert never in broker.topic("t").consumers  # a session without a transport hook stays
    for _ in range(500):  # lagging past HARD_LIMIT (8x) is cut whatever it acks
        broker.publish("t", data, 0)
        broker.dispatch()
    assert lagging == ["x"]


def test_a_subscriber_stalled_after_a_short_burst_is_cut_by_the_clock():
    """A burst over mq.maxPendingBytes that ends within a second: no later dispatch comes
    to find the silent subscriber, so the broker's timer cuts it once it has acked
    nothing for STALLED_AFTER (1 s); an acking subscriber over the bound is kept."""
    broker, clock = make_broker(pushType=2, maxInFlight=10, maxPendingBytes=65536)
    cut: list[str] = []
    kept: list[str] = []
    silent = broker.attach_consumer(
        ClientInfo("silent", "t", "", 0), Recorder(), lambda: cut.append("x")
    )
    acking, ra = attach(broker, name="acking")
    acking.overflow = lambda: kept.append("x")
    for _ in range(100):  # 100 x 1,128 weighed bytes > 64 KiB, all at one instant
        broker.publish("t", "x" * 1000, 0)
    broker.dispatch()
    broker.tick()
    assert not cut  # over the bound, but attached less than a second ago
    deadline = broker.next_deadline()
    assert deadline is not None and deadline <= clock() + 1.0  # a timer is set to look
    clock.advance(1.1)
    broker.ack_many(acking, [m.code for m in ra.take()])
    broker.tick()
    assert cut == ["x"] and silent not in broker.topic("t").consumers
    assert not kept and acking in broker.topic("t").consumers
    assert broker.topic("t").stats.slow_consumers == 1


def test_only_an_ack_that_applies_is_a_sign_of_life():
    """``acked_at`` (a stalled consumer has "acked nothing", docs/protocol.md "Slow
    consumers") moves for an ack that consumed a message or took a copy out of the
    session's window, not for unknown, repeated or other topics' codes."""
    broker, clock = make_broker(pushType=2)
    a, ra = attach(broker, name="a")
    b, rb = attach(broker, name="b")
    _, rx = attach(broker, topic="x", name="x")
    broker.publish("t", "m", 0)
    broker.publish("x", "elsewhere", 0)
    broker.dispatch()
    (msg,), _, (foreign,) = ra.take(), rb.take(), rx.take()
    start = a.acked_at
    clock.advance(2)
    broker.ack(a, 12345)
    broker.ack_many(a, [f"{12345:032x}", "junk", ""])
    broker.ack_keys(a, [foreign.code])
    assert a.acked_at == start and not foreign.consumed_time
    broker.ack_keys(a, [12345, msg.code])  # an unknown one first: the read still applied
    assert a.acked_at == clock() and msg.status is Status.CONSUMED
    clock.advance(2)
    broker.ack(a, msg.code)  # repeated
    broker.ack_keys(a, [msg.code])
    assert a.acked_at == clock() - 2
    broker.ack(b, msg.code)  # b's copy of a message a consumed: it leaves b's window
    assert b.acked_at == clock() and not b.in_flight


def test_a_subscriber_sending_only_unknown_acks_is_cut_as_stalled():
    broker, clock = make_broker(pushType=2, maxInFlight=10, maxPendingBytes=65536)
    cut: list[str] = []
    noisy = broker.attach_consumer(
        ClientInfo("noisy", "t", "", 0), Recorder(), lambda: cut.append("x")
    )
    for _ in range(100):  # 100 x 1,128 weighed bytes > 64 KiB
        broker.publish("t", "x" * 1000, 0)
    broker.dispatch()
    clock.advance(0.6)
    broker.ack_many(noisy, [f"{n:032x}" for n in range(10**6, 10**6 + 50)])
    clock.advance(0.6)
    broker.ack(noisy, 10**9)
    broker.tick()
    assert cut == ["x"] and noisy not in broker.topic("t").consumers


def test_a_paused_session_is_skipped_until_resumed():
    broker, _ = make_broker(maxInFlight=100)
    a, ra = attach(broker, name="a")
    b, rb = attach(broker, name="b")
    broker.pause_pushes(a)
    for i in range(4):
        broker.publish("t", f"m{i}", 0)
    broker.dispatch()
    assert not ra.pushed and len(rb.pushed) == 4
    broker.pause_pushes(b)
    broker.publish("t", "later", 0)
    broker.dispatch()
    assert not ra.pushed
    broker.resume_pushes(a)
    broker.dispatch()
    assert [m.data for m in ra.pushed] == ["later"]


def test_one_push_batch_weighs_at_most_max_pending_bytes():
    broker, _ = make_broker(maxInFlight=1000, maxPendingBytes=65536)
    session, rec = attach(broker)
    for _ in range(100):
        broker.publish("t", "y" * 4000, 0)
    broker.dispatch()
    assert len(rec.pushed) == 16  # 16 x (4,000 + 128) >= 64 KiB: the batch stops there
    broker.ack_many(session, rec.codes)
    broker.dispatch()
    assert len(rec.pushed) == 32


def test_pubsub_batches_keep_the_byte_bound_and_the_accounting():
    broker, _ = make_broker(pushType=2, maxInFlight=1000, maxPendingBytes=65536)
    a, ra = attach(broker, name="a")
    b, rb = attach(broker, name="b")
    for _ in range(100):
        broker.publish("t", "y" * 4000, 0)
    broker.dispatch()
    assert len(ra.pushed) == len(rb.pushed) == 16  # as point-to-point: the bound stops it
    assert a.pending_bytes == b.pending_bytes == 84 * 4128
    broker.ack_many(a, ra.codes)
    for _ in range(3):
        broker.publish("t", "z", 0)
    broker.dispatch()  # the next 16 of the queue, not the three new ones
    # b acked nothing: its 16 unacked copies weigh the bound, another subscriber's acks
    # consumed them but do not make room (issue 12: what the broker holds for it)
    assert len(ra.pushed) == 32 and len(rb.pushed) == 16
    assert ra.pushed[16].data[0] == "y"
    assert a.pending_bytes == 68 * 4128 + 3 * 129
    assert b.pending_bytes == 84 * 4128 + 3 * 129
    broker.ack_many(b, rb.codes)
    broker.dispatch()
    assert len(ra.pushed) == len(rb.pushed) == 32
    assert ra.pushed[16:] == rb.pushed[16:]
    assert a.pending_bytes == b.pending_bytes == 68 * 4128 + 3 * 129


def test_what_a_consumer_holds_unacked_weighs_at_most_max_pending_bytes():
    """Point-to-point: a consumer that reads but does not ack stops getting pushes once
    its unacked copies weigh mq.maxPendingBytes (as at mq.maxInFlight copies); the rest go
    to the others, and an ack (or a redelivery taking copies back) makes room again."""
    broker, clock = make_broker(maxInFlight=1000, maxPendingBytes=65536, pushRetryTime=30)
    silent, rs = attach(broker, name="silent")
    for _ in range(40):
        broker.publish("t", "y" * 4000, 0)
    broker.dispatch()
    assert len(rs.pushed) == 16  # 16 x 4,128 >= 64 KiB
    broker.publish("t", "y" * 4000, 0)
    broker.dispatch()
    assert len(rs.pushed) == 16  # holding the bound: nothing more, not even one
    other, ro = attach(broker, name="other")
    broker.dispatch()
    assert len(ro.pushed) == 16 and len(rs.pushed) == 16
    broker.ack_many(other, ro.codes)
    broker.publish("t", "small", 0)
    broker.dispatch()
    assert len(rs.pushed) == 16 and len(ro.pushed) == 26  # 9 left + "small", all to it
    broker.ack(silent, rs.codes[0])
    broker.publish("t", "y" * 4000, 0)
    broker.dispatch()
    assert len(rs.pushed) == 17  # one acked: room for one
    clock.advance(31)  # its copies time out and go back to the queue: room again
    broker.tick()
    broker.dispatch()
    assert len(rs.pushed) > 17


def test_acks_apply_only_to_the_consumers_own_topic():
    broker, _ = make_broker()
    a, ra = attach(broker, "a", "ca")
    b, _ = attach(broker, "b", "cb")
    msg = broker.publish("a", "for a", 0)
    broker.dispatch()
    assert ra.codes == [msg.code]
    assert not broker.ack(b, msg.code)
    broker.ack_many(b, [msg.code, "f" * 32])
    assert msg.status is Status.WAITING and msg.code in a.in_flight
    assert broker.topic("b").stats.unknown_acks == 3
    assert broker.ack(a, msg.code)


def test_per_topic_push_type_override():
    broker, _ = make_broker(pushType=1, topics={"news": {"pushType": 2}})
    _, a = attach(broker, "news", "a")
    _, b = attach(broker, "news", "b")
    broker.publish("news", "n", 0)
    broker.dispatch()
    assert len(a.pushed) == len(b.pushed) == 1


def test_expiry_deletes_old_messages_of_any_status():
    broker, clock = make_broker(cleanTime=100, checkSpeed=5)
    session, _ = attach(broker)
    old = broker.publish("t", "old", 0)
    broker.dispatch()
    clock.advance(50)
    young = broker.publish("t", "young", 0)
    clock.advance(55)
    broker.tick()
    assert broker.store.get(old.code) is None
    assert broker.store.get(young.code) is young
    assert old.code not in session.in_flight


def test_clean_consumed_deletes_on_ack():
    broker, _ = make_broker(isCleanConsumed=1)
    session, _ = attach(broker)
    msg = broker.publish("t", "x", 0)
    broker.dispatch()
    broker.ack(session, msg.code)
    assert broker.store.get(msg.code) is None


def test_delete_in_flight_message_releases_window():
    broker, _ = make_broker(maxInFlight=1)
    session, rec = attach(broker)
    a = broker.publish("t", "a", 0)
    b = broker.publish("t", "b", 0)
    broker.dispatch()
    assert broker.delete(a.code)
    assert not session.in_flight
    broker.dispatch()
    assert rec.codes == [a.code, b.code]
    assert not broker.ack(session, a.code)


def test_backlog_limit_and_room_callback():
    broker, _ = make_broker(messageChanBuffer=2)
    woken: list[bool] = []
    broker.on_room = lambda: woken.append(True)  # what the constructor's on_room sets
    session, _ = attach(broker)
    m1 = broker.publish("t", "1", 0)
    broker.publish("t", "2", 0)
    assert broker.full
    broker.dispatch()
    broker.ack(session, m1.code)
    assert not broker.full and woken == [True]


class EventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, Code, Status]] = []

    def message_added(self, msg: Message) -> None:
        self.events.append(("added", msg.code, msg.status))

    def message_updated(self, msg: Message) -> None:
        self.events.append(("updated", msg.code, msg.status))

    def message_removed(self, msg: Message) -> None:
        self.events.append(("removed", msg.code, msg.status))

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        for msg in msgs:
            self.message_added(msg)

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        for msg in msgs:
            self.message_updated(msg)


def test_listeners_see_every_change_in_order():
    broker, clock = make_broker(pushRetryTime=5)
    log = EventLog()
    broker.add_listener(log)
    session, _ = attach(broker)
    delayed = broker.publish("t", "d", 1)
    msg = broker.publish("t", "m", 0)
    broker.dispatch()
    clock.advance(5)
    broker.tick()  # delayed becomes due; msg is redelivered (DelayTime rewritten)
    broker.dispatch()
    broker.ack(session, msg.code)
    broker.delete(delayed.code)
    assert log.events == [
        ("added", delayed.code, Status.DELAYED),
        ("added", msg.code, Status.WAITING),
        ("updated", delayed.code, Status.WAITING),
        ("updated", msg.code, Status.WAITING),
        ("updated", msg.code, Status.CONSUMED),
        ("removed", delayed.code, Status.WAITING),
    ]


def test_search_filters_and_orders_newest_first():
    broker, clock = make_broker()
    a = broker.publish("t", "a", 0)
    clock.advance(10)
    b = broker.publish("u", "b", 0)
    clock.advance(10)
    c = broker.publish("t", "c", 5)
    store = broker.store
    assert store.search(0, 1 << 40) == [c, b, a]
    assert store.search(0, 1 << 40, topic="t") == [c, a]
    assert store.search(0, 1 << 40, status=Status.DELAYED) == [c]
    assert store.search(a.create_time + 1, b.create_time) == [b]


def test_optional_push_throttle():
    broker, clock = make_broker(pushThrottle=1, pushCount=2, pushMessagesSpeed=1)
    _, rec = attach(broker)
    for i in range(5):
        broker.publish("t", str(i), 0)
    broker.dispatch()
    assert len(rec.pushed) == 2
    deadline = broker.next_deadline()
    assert deadline is not None and deadline <= clock.now + 1
    clock.advance(1)
    broker.tick()
    broker.dispatch()
    assert len(rec.pushed) == 4

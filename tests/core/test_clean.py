"""``mq.isClean``: a check deletes exactly the messages ``Message.stale_before`` calls old,
and a message created long ago that is not stale yet (a delay longer than cleanTime, a
redelivery) is not walked again at every check (``MessageStore.take_stale``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kapokmq.core.topics import ConsumerSession
from kapokmq.model import Code, Message, Status, new_message
from tests.core.fakes import attach, make_broker

CLEAN = 100
CHECK = 5


@pytest.fixture
def stale_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Message]]:
    """Every message ``Message.stale_before`` is asked about."""
    asked: list[Message] = []
    real = Message.stale_before

    def counting(self: Message, cutoff: float) -> bool:
        asked.append(self)
        return real(self, cutoff)

    monkeypatch.setattr(Message, "stale_before", counting)
    yield asked


def test_a_long_delay_is_walked_once_not_at_every_check(stale_checks: list[Message]) -> None:
    broker, clock = make_broker(cleanTime=CLEAN, checkSpeed=CHECK)
    delayed = [broker.publish("t", f"d{i}", 10_000 + i) for i in range(500)]
    plain = broker.publish("t", "p", 0)
    clock.advance(CLEAN + 1)
    broker.tick()
    assert broker.store.get(plain.code) is None
    assert set(stale_checks) == {plain, *delayed}  # the first check passes each one once
    for _ in range(20):
        stale_checks.clear()
        clock.advance(CHECK)
        broker.tick()
        assert stale_checks == []  # before: all 500 at every check
    assert all(broker.store.get(m.code) is m for m in delayed)
    assert [m.code for m in broker.store] == [m.code for m in delayed]  # creation order
    assert broker.store.search(0, 2**40) == delayed[::-1]


def test_a_late_message_is_deleted_clean_time_after_it_came_due() -> None:
    broker, clock = make_broker(cleanTime=CLEAN, checkSpeed=CHECK)
    session, _ = attach(broker)
    msg = broker.publish("t", "d", 1000)
    clock.advance(50)
    young = broker.publish("t", "young", 0)
    clock.advance(60)
    broker.tick()  # passes msg (not stale) and keeps young (not old enough)
    assert broker.store.get(msg.code) is msg and broker.store.get(young.code) is young
    assert list(broker.store) == [msg, young]
    clock.advance(1000 - 110)
    broker.tick()
    broker.dispatch()
    assert msg.code in session.in_flight  # due and pushed, not cleaned on arrival
    assert broker.ack(session, msg.code)
    clock.advance(CLEAN - 1)
    broker.tick()
    assert broker.store.get(msg.code) is msg
    clock.advance(CHECK + 1)
    broker.tick()
    assert broker.store.get(msg.code) is None
    assert len(broker.store) == 0 and list(broker.store) == []


def test_deliver_now_of_a_late_message_counts_from_the_delivery() -> None:
    broker, clock = make_broker(cleanTime=CLEAN, checkSpeed=CHECK)
    msg = broker.publish("t", "d", 100_000)
    clock.advance(CLEAN + 100)
    broker.tick()  # passed and filed by its due time, a day away
    assert broker.deliver_now(msg.code)
    assert msg.delay_time == CLEAN + 100
    clock.advance(CLEAN - 1)
    broker.tick()
    assert broker.store.get(msg.code) is msg
    clock.advance(CHECK + 1)
    broker.tick()  # cleanTime after the delivery, not after the planned due time
    assert broker.store.get(msg.code) is None


def test_a_replicated_earlier_delay_time_refiles_a_late_message() -> None:
    broker, clock = make_broker(cleanTime=CLEAN, checkSpeed=CHECK)
    msg = broker.publish("t", "d", 100_000)
    clock.advance(CLEAN + 100)
    broker.tick()
    record = new_message(msg.code, "t", "d", msg.create_time, 0, 50, Status.CONSUMED, msg.arrival)
    broker.replicate(record)
    clock.advance(CHECK)
    broker.tick()  # created 205 s ago, due 50 s after that: stale
    assert broker.store.get(msg.code) is None


def test_a_redelivery_moves_a_late_message_later() -> None:
    broker, clock = make_broker(cleanTime=CLEAN, checkSpeed=CHECK, pushRetryTime=60)
    session, pushed = attach(broker)
    msg = broker.publish("t", "d", 200)
    clock.advance(150)
    broker.tick()  # passed: stale only at 200
    clock.advance(50)
    broker.tick()
    broker.dispatch()
    assert pushed.codes == [msg.code]
    clock.advance(60)
    broker.tick()  # unacked: redelivered at 260, DelayTime rewritten to 260
    broker.dispatch()
    assert msg.delay_time == 260 and pushed.codes == [msg.code] * 2
    assert broker.ack(session, msg.code)
    clock.advance(45)
    broker.tick()  # 305: filed at 200 + 100, but now stale only at 360
    assert broker.store.get(msg.code) is msg
    clock.advance(60)
    broker.tick()
    assert broker.store.get(msg.code) is None


def test_deleting_late_messages_leaves_no_growing_heap() -> None:
    broker, clock = make_broker(cleanTime=CLEAN, checkSpeed=CHECK)
    for round_ in range(3):
        msgs = [broker.publish("t", "d", 100_000) for _ in range(3000)]
        clock.advance(CLEAN + 1)
        broker.tick()
        for msg in msgs:
            assert broker.delete(msg.code)
        broker.tick()
        assert len(broker.store) == 0, round_
    # what is left over of deleted messages stays below the live entries plus a constant
    assert len(broker.store._late_heap) <= 1024 + 3000


def test_a_big_check_is_spread_over_ticks() -> None:
    broker, clock = make_broker(cleanTime=CLEAN, checkSpeed=CHECK)
    broker.clean_slice = 10
    plain = [broker.publish("t", "p", 0) for _ in range(15)]
    delayed = [broker.publish("t", "d", 10_000) for _ in range(12)]
    clock.advance(CLEAN + 1)
    broker.tick()
    assert len(broker.store) == 27 - 10  # one slice deleted
    assert broker.next_deadline() == clock.now  # the rest at the next tick, not in 5 s
    broker.tick()
    broker.tick()
    assert list(broker.store) == delayed and broker.next_deadline() == clock.now + CHECK
    clock.advance(10_000)  # cleanTime + 1 s after they came due: the late table's turn
    broker.tick()
    assert broker.next_deadline() == clock.now and len(broker.store) == 2
    broker.tick()
    assert len(broker.store) == 0 and not any(broker.store.get(m.code) for m in plain)


class CleaningMachine(RuleBasedStateMachine):
    """Against the rule itself: after every check, the messages it deleted are exactly
    the ones ``stale_before(now - cleanTime)`` calls old at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.broker, self.clock = make_broker(
            cleanTime=CLEAN, checkSpeed=CHECK, pushRetryTime=30, maxDeliveries=0
        )
        self.broker.clean_slice = 3  # a check of more messages takes several ticks
        self.live: dict[Code, Message] = {}
        self.sessions: list[ConsumerSession] = []

    def _settle(self) -> None:
        broker = self.broker
        checks = broker.clean_after is not None and self.clock.now >= broker._next_expiry
        broker.tick()
        while (deadline := broker.next_deadline()) is not None and deadline <= self.clock.now:
            broker.tick()  # the rest of the check, as the runtime's timer does at once
        broker.dispatch()
        cutoff = self.clock.now - CLEAN
        for code, msg in list(self.live.items()):
            kept = broker.store.get(code) is msg
            if checks:
                assert kept != msg.stale_before(cutoff), msg
            else:
                assert kept, msg
            if not kept:
                del self.live[code]

    @rule(delay=st.sampled_from([-1, 0, 0, 30, 150, 400]))
    def publish(self, delay: int) -> None:
        msg = self.broker.publish("t", "x", delay)
        self.live[msg.code] = msg
        self._settle()

    @precondition(lambda self: len(self.sessions) < 2)
    @rule()
    def join(self) -> None:
        session, _ = attach(self.broker, "t", f"c{len(self.sessions)}")
        self.sessions.append(session)
        self._settle()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from(self.sessions))
        if session.in_flight:
            self.broker.ack(session, data.draw(st.sampled_from(sorted(session.in_flight))))
        self._settle()

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def deliver_now(self, data: st.DataObject) -> None:
        self.broker.deliver_now(data.draw(st.sampled_from(sorted(self.live))))
        self._settle()

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        code = data.draw(st.sampled_from(sorted(self.live)))
        assert self.broker.delete(code)
        del self.live[code]
        self._settle()

    @rule(seconds=st.sampled_from([1, 5, 20, 60, 120]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self._settle()

    @invariant()
    def table_is_whole(self) -> None:
        store = self.broker.store
        assert len(store) == len(self.live) == len(list(store))
        assert {m.code for m in store} == set(self.live)
        created = [m.create_time for m in store]
        assert created == sorted(created)  # still creation order


TestCleaning = CleaningMachine.TestCase
TestCleaning.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)

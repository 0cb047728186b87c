"""Hypothesis state machine: under any interleaving of publish, ack, consumer join/leave and
clock advance, every message is exactly one of pending, in flight, delayed, consumed or
dead (never lost), windows hold, and in point-to-point no message is pushed a second time
before its retry time while its first consumer is still connected."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kapokmq.core.dispatch import FANOUT
from kapokmq.core.topics import ConsumerSession
from kapokmq.model import ClientInfo, Code, Message, Status
from tests.core.fakes import make_broker

RETRY = 30
WINDOW = 3
TOPICS = ("a", "b")


class BrokerMachine(RuleBasedStateMachine):
    push_type = 1
    max_deliveries = 0

    def __init__(self) -> None:
        super().__init__()
        self.broker, self.clock = make_broker(
            pushRetryTime=RETRY,
            maxInFlight=WINDOW,
            pushType=self.push_type,
            maxDeliveries=self.max_deliveries,
            isClean=0,
        )
        self.published: dict[Code, Message] = {}
        self.consumed: set[Code] = set()
        self.sessions: list[ConsumerSession] = []
        self.last_push: dict[Code, tuple[ConsumerSession, float]] = {}
        self.violations: list[str] = []

    def _deliver_to(self, holder: list[ConsumerSession]):
        def deliver(batch: list[Message]) -> None:
            session = holder[0]
            now = self.clock.now
            for msg in batch:
                assert len(session.in_flight) <= WINDOW
                if self.push_type != 1:
                    continue
                previous = self.last_push.get(msg.code)
                if previous is not None:
                    first, at = previous
                    if first in self.sessions and now < at + RETRY:
                        self.violations.append(f"{msg.code} pushed again after {now - at:.2f}s")
                self.last_push[msg.code] = (session, now)

        return deliver

    def _settle(self) -> None:
        self.broker.tick()
        self.broker.dispatch()

    @rule(topic=st.sampled_from(TOPICS), delay=st.sampled_from([-2, 0, 0, 0, 5, 40]))
    def publish(self, topic: str, delay: int) -> None:
        msg = self.broker.publish(topic, "x", delay)
        self.published[msg.code] = msg
        self._settle()

    @rule(
        topic=st.sampled_from(TOPICS),
        delays=st.lists(st.sampled_from([-2, 0, 0, 5, 40]), min_size=1, max_size=6),
    )
    def publish_many(self, topic: str, delays: list[int]) -> None:
        before = set(self.broker.store._messages)
        taken, delayed = self.broker.publish_many(topic, [("x", d) for d in delays])
        new = [m for code, m in self.broker.store._messages.items() if code not in before]
        assert taken == len(delays) == len(new)  # the backlog limit is never reached here
        assert delayed == any(d > 0 for d in delays)
        assert [m.delay_time for m in new] == delays  # in order
        self.published.update((m.code, m) for m in new)
        self._settle()

    @rule(topic=st.sampled_from(TOPICS))
    def join(self, topic: str) -> None:
        holder: list[ConsumerSession] = []
        info = ClientInfo(f"c{len(self.sessions)}", topic, "127.0.0.1", 0)
        session = self.broker.attach_consumer(info, self._deliver_to(holder))
        holder.append(session)
        self.sessions.append(session)
        self._settle()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from(self.sessions))
        self.sessions.remove(session)
        self.broker.detach_consumer(session)
        self._settle()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def ack_in_flight(self, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from(self.sessions))
        if not session.in_flight:
            return
        code = data.draw(st.sampled_from(sorted(session.in_flight)))
        self._ack(session, code)

    @precondition(lambda self: self.sessions and self.published)
    @rule(data=st.data())
    def ack_any(self, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from(self.sessions))
        code = data.draw(st.sampled_from(sorted(self.published)) | st.just("f" * 32))
        self._ack(session, code)

    @precondition(lambda self: self.sessions and self.published)
    @rule(data=st.data())
    def ack_many(self, data: st.DataObject) -> None:
        """A batch mixing the session's own in-flight codes, other codes and repeats."""
        session = data.draw(st.sampled_from(self.sessions))
        pool = sorted(session.in_flight) + sorted(self.published) + ["f" * 32]
        codes = data.draw(st.lists(st.sampled_from(pool), max_size=6))
        candidates = {
            c for c in codes if (m := self.published.get(c)) is not None and not m.removed
        }
        consumable = {
            c
            for c in candidates
            if self.published[c].status is Status.WAITING  # a dead one's ack is too late
            and self.published[c].topic == session.topic.name  # acks are topic-scoped
        }
        acked = session.topic.stats.acked
        self.broker.ack_many(session, codes)
        assert session.topic.stats.acked - acked == len(consumable)  # a repeat counts once
        for code in consumable:
            assert self.published[code].status is Status.CONSUMED, code
            assert code not in self.consumed
            self.consumed.add(code)
        self._settle()

    def _ack(self, session: ConsumerSession, code: Code) -> None:
        msg = self.published.get(code)
        if self.broker.ack(session, code):
            assert msg is not None and msg.topic == session.topic.name, "cross-topic ack"
            assert code not in self.consumed
            self.consumed.add(code)
        self._settle()

    @rule(seconds=st.floats(min_value=0, max_value=70))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self._settle()

    @invariant()
    def nothing_lost(self) -> None:
        assert not self.violations, self.violations
        broker = self.broker
        in_ready: dict[Code, int] = {}
        for topic in broker.topics.values():
            for msg in topic.ready:
                if msg.status is Status.WAITING and msg.holder is None:
                    in_ready[msg.code] = in_ready.get(msg.code, 0) + 1
        for code, msg in self.published.items():
            assert broker.store.get(code) is msg
            assert (msg.status is Status.CONSUMED) == (code in self.consumed)
            if msg.status is Status.DELAYED:
                assert msg.arrival + msg.delay_time > self.clock.now
            if msg.status is not Status.WAITING:
                continue
            holder = msg.holder
            if holder is None:
                assert in_ready.get(code) == 1, f"{msg} is waiting but not queued"
            elif holder is FANOUT:
                sessions = broker.topic(msg.topic).consumers
                assert any(code in s.in_flight or msg in s.pending for s in sessions)
            else:
                assert isinstance(holder, ConsumerSession)
                assert holder in self.sessions and holder.in_flight.get(code) is msg

    @invariant()
    def windows_hold_and_nothing_idles(self) -> None:
        for topic in self.broker.topics.values():
            for session in topic.consumers:
                assert len(session.in_flight) <= WINDOW
            live = [m for m in topic.ready if m.status is Status.WAITING and not m.removed]
            if live and topic.consumers:
                assert all(len(s.in_flight) >= WINDOW for s in topic.consumers)


class PubSubMachine(BrokerMachine):
    push_type = 2


class DeadLetterMachine(BrokerMachine):
    max_deliveries = 2


common = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestPointToPoint = BrokerMachine.TestCase
TestPointToPoint.settings = common
TestPubSub = PubSubMachine.TestCase
TestPubSub.settings = common
TestDeadLetters = DeadLetterMachine.TestCase
TestDeadLetters.settings = common

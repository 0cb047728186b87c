"""A message in eight fields (model.Message): CreateTime derived from its arrival,
ConsumedTime kept by its flight, and every place that shows them shows what it did."""

from __future__ import annotations

import sys

import orjson

from kapokmq.cluster.replication import decode_record, record_of
from kapokmq.model import IDLE, Message, Status, dumps, new_message
from tests.core.fakes import attach, make_broker


def test_a_message_is_an_80_byte_block() -> None:
    msg = new_message(1, "t", "x", 1_700_000_000, 0, 0, Status.WAITING, 1.7e9)
    assert len(Message.__struct_fields__) == 8 and sys.getsizeof(msg) == 80


def test_create_time_is_the_whole_second_of_the_arrival() -> None:
    broker, clock = make_broker()
    msg = broker.publish("t", "x", 0)
    assert msg.arrival == clock.now and msg.create_time == int(clock.now) == 1_700_000_000
    assert msg.to_dict()["CreateTime"] == 1_700_000_000
    # a record whose CreateTime is not its arrival's second keeps its CreateTime
    odd = new_message(2, "t", "x", 1_600_000_000, 0, 0, Status.WAITING, 1.7e9 + 0.5)
    assert odd.create_time == 1_600_000_000 and odd.arrival == 1.6e9


def test_consumed_time_point_to_point_and_requeue() -> None:
    broker, clock = make_broker()
    session, recorder = attach(broker)
    msgs = [broker.publish("t", f"m{i}", 0) for i in range(3)]
    broker.dispatch()
    clock.advance(5)
    broker.ack_many(session, recorder.codes[:2])
    assert [m.consumed_time for m in msgs] == [int(clock.now)] * 2 + [0]
    assert [m.to_dict()["ConsumedTime"] for m in msgs] == [int(clock.now)] * 2 + [0]
    assert msgs[0].flight is msgs[1].flight  # one flight per ack, not one per message
    assert msgs[0].holder is None and msgs[0].create_time == 1_700_000_000
    assert broker.requeue(msgs[0].code)
    assert msgs[0].consumed_time == 0 and msgs[0].status is Status.WAITING
    assert msgs[1].consumed_time == int(clock.now)


def test_consumed_time_of_a_pubsub_message_keeps_its_fan_out() -> None:
    broker, clock = make_broker(pushType=2)
    a, _ = attach(broker, name="a")
    b, _ = attach(broker, name="b")
    msg = broker.publish("t", "all", 0)
    broker.dispatch()
    fanned = msg.flight
    clock.advance(3)
    assert broker.ack(a, msg.code)
    assert msg.consumed_time == int(clock.now) and msg.status is Status.CONSUMED
    assert msg.flight.owner is fanned.owner and msg.pushed_at == fanned.at  # b's copy
    clock.advance(3)
    assert not broker.ack(b, msg.code) and msg.consumed_time == int(clock.now) - 3


def test_consumed_time_survives_a_removal_with_is_clean_consumed() -> None:
    """The journal reads a consumed message after it was removed (isCleanConsumed)."""
    broker, clock = make_broker(isCleanConsumed=1)
    seen: list[tuple[int, bool]] = []

    class Journal:
        def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
            seen.extend((m.consumed_time, m.removed) for m in msgs)

        def __getattr__(self, name: str) -> object:
            return lambda *args: None

    broker.add_listener(Journal())  # type: ignore[arg-type]
    session, _ = attach(broker)
    msg = broker.publish("t", "x", 0)
    broker.dispatch()
    broker.ack(session, msg.code)
    assert msg.removed and msg.consumed_time == int(clock.now)
    assert [t for t, _ in seen] == [int(clock.now)]


def test_replicated_records_keep_both_times() -> None:
    master, clock = make_broker()
    session, _ = attach(master)
    msg = master.publish("t", "x", 0)
    master.dispatch()
    clock.advance(2)
    master.ack(session, msg.code)
    copy, _ = decode_record(dumps(record_of(master, msg)))
    assert isinstance(copy, Message)
    assert copy.to_dict() == msg.to_dict()
    replica, _ = make_broker()
    replica.replicate(copy)
    got = replica.store.get(msg.code)
    assert got is not None and got.to_dict() == msg.to_dict()
    # an update from the master: consumed at another time, then waiting again
    later = new_message(msg.code, "t", "x", msg.create_time, 99, 0, Status.CONSUMED, msg.arrival)
    replica.replicate(later)
    assert got.consumed_time == 99
    again = new_message(msg.code, "t", "x", msg.create_time, 0, 0, Status.WAITING, msg.arrival)
    replica.replicate(again)
    assert got.consumed_time == 0 and got.status is Status.WAITING


def test_a_go_masters_record_without_arrival() -> None:
    raw = orjson.dumps(
        {
            "MessageCode": "a" * 32,
            "MessageData": "hi",
            "Topic": "t",
            "CreateTime": 1_640_975_470,
            "ConsumedTime": 1_640_975_480,
            "DelayTime": 0,
            "Status": 1,
        }
    )
    msg, _ = decode_record(raw)
    assert isinstance(msg, Message)
    assert (msg.create_time, msg.consumed_time, msg.arrival) == (
        1_640_975_470,
        1_640_975_480,
        1.64097547e9,
    )
    assert msg.flight is not IDLE and msg.flight.owner is None

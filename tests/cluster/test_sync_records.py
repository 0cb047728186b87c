"""Sync records (docs/protocol.md, Master-slave sync): the original's message JSON first,
our extras only under keys an original broker ignores, and a slave that applies them."""

from __future__ import annotations

import orjson

from kapokmq.cluster.replication import decode_record, dedup_by_code, record_of, removal_of
from kapokmq.core.dedup import dedup_key
from kapokmq.model import Message, Status, code_key
from kapokmq.protocol import Extras
from tests.core.fakes import attach, make_broker

A1 = ["MessageCode", "MessageData", "Topic", "CreateTime", "ConsumedTime", "DelayTime", "Status"]


def records(broker, msgs: list[Message]) -> list[bytes]:
    ids = dedup_by_code(broker)
    return [orjson.dumps(record_of(broker, m, ids.get(m.code))) for m in msgs]


def test_extras_follow_the_original_keys_and_never_collide_with_them():
    broker, clock = make_broker(maxDeliveries=1, pushRetryTime=1)
    broker.publish_many("t", [("ttl", 0, Extras(60, "id-1")), ("later", 90, Extras(5))])
    attach(broker)
    broker.dispatch()
    clock.advance(1.5)
    broker.tick()  # re-pushed once: dies by max deliveries
    msgs = list(broker.messages())
    assert [m.status for m in msgs] == [Status.DEAD, Status.DELAYED]
    for raw in records(broker, msgs):
        keys = list(orjson.loads(raw))
        assert keys[:7] == A1  # what the original's slave decodes (json.Unmarshal)
        # Go matches keys case-insensitively: no extra may land in an A1 field
        assert not {k.lower() for k in keys[7:]} & {k.lower() for k in A1}
    dead, delayed = (orjson.loads(r) for r in records(broker, msgs))
    assert (dead["TTL"], dead["MessageId"]) == (60, "id-1")
    assert [e["Event"] for e in dead["History"]] == ["dead: max deliveries"]
    assert (delayed["TTL"], delayed["Arrival"]) == (5, msgs[1].arrival)
    assert "Deadline" not in delayed  # a TTL starts when the delay ends


def test_a_slave_applies_ttl_deadline_history_and_dedup_ids():
    master, clock = make_broker()
    master.publish_many("t", [("a", 0, Extras(30, "id-1")), ("b", 0)])
    gone = code_key(master.publish_once("t", ("c", 0, Extras(0, "id-2"))))
    master.delete(gone)
    slave, slave_clock = make_broker()
    slave_clock.now = clock.now
    ids = dedup_by_code(master)
    raws = records(master, list(master.messages()))
    raws.append(orjson.dumps(removal_of(gone, ids[gone])))
    for raw in raws:
        record, extras = decode_record(raw)
        if isinstance(record, Message):
            slave.replicate(record)
        if extras is not None:
            slave.replicate_extras(record.code if isinstance(record, Message) else record, extras)
    first = next(iter(master.messages()))
    assert slave.lifetimes.ttl(first.code) == 30
    assert slave.lifetimes.deadline(first.code) == master.lifetimes.deadline(first.code)
    assert slave.dedup.first(dedup_key("t", "id-1"), clock.now) == first.code
    assert slave.dedup.first(dedup_key("t", "id-2"), clock.now) == gone
    slave_clock.advance(30)
    slave.tick()  # the TTL runs on the slave too
    assert slave.store.get(first.code).status is Status.DEAD  # type: ignore[union-attr]
    assert slave.dead_letters.reason(first.code) == "expired"


def test_an_original_record_has_no_extras():
    broker, _ = make_broker()
    msg = broker.publish("t", "x")
    record, extras = decode_record(orjson.dumps(msg.to_dict()))
    assert isinstance(record, Message) and extras is None

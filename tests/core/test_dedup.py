"""Producer dedup ids in the sans-I/O broker (fake clock)."""

from __future__ import annotations

from kapokmq.core.dedup import DedupWindow, dedup_key
from kapokmq.protocol import Extras, SendItem
from tests.core.fakes import make_broker

DAY = 86_400


def with_id(data: str, message_id: str, delay: int = 0) -> tuple[str, int, Extras]:
    return (data, delay, Extras(0, message_id))


def test_a_repeated_id_within_the_window_is_answered_as_the_first_and_not_stored():
    broker, clock = make_broker()
    first = broker.publish_once("t", with_id("a", "order-1"))
    clock.advance(DAY - 1)
    assert broker.publish_once("t", with_id("again", "order-1")) == first
    assert len(broker.store) == 1
    assert broker.dedup.duplicates == 1
    clock.advance(1)  # the window (mq.dedupWindow, 1 day) is over
    later = broker.publish_once("t", with_id("new", "order-1"))
    assert later != first and len(broker.store) == 2


def test_ids_are_per_topic_and_plain_messages_are_never_deduplicated():
    broker, _ = make_broker()
    a = broker.publish_once("a", with_id("x", "same"))
    b = broker.publish_once("b", with_id("x", "same"))
    assert a != b
    assert broker.publish_once("t", ("x", 0)) != broker.publish_once("t", ("x", 0))
    assert dedup_key("ab", "c") != dedup_key("a", "bc")


def test_publish_many_counts_duplicates_as_taken_even_within_one_read():
    broker, _ = make_broker()
    items: list[SendItem] = [with_id("1", "k"), with_id("2", "k"), ("3", 0), with_id("4", "j", 5)]
    assert broker.publish_many("t", items) == (4, True)
    assert sorted(m.data for m in broker.store) == ["1", "3", "4"]
    assert broker.publish_many("t", [with_id("5", "j")]) == (1, False)
    assert len(broker.store) == 3


def test_window_zero_is_off_and_a_topic_may_override_it():
    broker, clock = make_broker(dedupWindow=0, topics={"d": {"dedupWindow": 10}})
    off = broker.publish_once("t", with_id("x", "k"))
    assert broker.publish_once("t", with_id("y", "k")) != off
    first = broker.publish_once("d", with_id("x", "k"))
    clock.advance(9.9)
    assert broker.publish_once("d", with_id("y", "k")) == first
    clock.advance(0.1)
    assert broker.publish_once("d", with_id("z", "k")) != first


def test_the_oldest_ids_are_evicted_at_the_cap_and_counted():
    broker, _ = make_broker(dedupMaxIds=3)
    codes = [broker.publish_once("t", with_id(str(i), f"id{i}")) for i in range(5)]
    assert len(broker.dedup) == 3 and broker.dedup.evicted == 2
    assert broker.publish_once("t", with_id("again", "id4")) == codes[4]  # kept
    assert broker.publish_once("t", with_id("again", "id0")) != codes[0]  # evicted: stored


def test_a_deleted_first_message_still_deduplicates_within_the_window():
    broker, _ = make_broker()
    first = broker.publish_once("t", with_id("x", "k"))
    broker.delete(first)
    assert broker.publish_once("t", with_id("x", "k")) == first
    assert len(broker.store) == 0


def test_expired_ids_are_forgotten_from_the_front():
    window = DedupWindow(max_ids=100)
    for i in range(10):
        window.remember(f"k{i}", f"c{i}", until=100.0 + i, now=float(i))
    window.remember("late", "c", until=500.0, now=105.5)
    assert len(window) == 5 and window.expired == 6  # k0..k5 ran out by 105.5
    assert window.first("k5", 105.5) is None and window.first("k6", 105.5) == "c6"
    assert [k for k, _, _ in window.items()] == ["k6", "k7", "k8", "k9", "late"]

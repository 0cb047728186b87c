"""``MessageStore.add_table`` (a recovery's table taken as the store's own) and ``add_new``
(one publish's batch, counted at once) keep the same counts by status and by creation
hour as inserting the messages one by one."""

from __future__ import annotations

import pytest

from kapokmq.core.store import MessageStore
from kapokmq.model import Message, Status, new_message


def messages(n: int) -> list[Message]:
    statuses = list(Status)
    return [
        new_message(f"{i:032x}", "t", "x", 1_700_000_000 + 1000 * i, 0, 0, statuses[i % 4], 1.7e9)
        for i in range(n)
    ]


def test_add_table_counts_like_add_many() -> None:
    one_by_one, taken = MessageStore(), MessageStore()
    msgs = messages(50)
    one_by_one.add_many(msgs)
    table = {m.code: m for m in msgs}
    taken.add_table(table)
    assert taken.counts() == one_by_one.counts()
    assert taken.hourly() == one_by_one.hourly()
    assert list(taken) == msgs and taken.get(msgs[7].code) is msgs[7]


def test_add_table_into_a_store_that_holds_messages() -> None:
    store = MessageStore()
    first, rest = messages(10)[:3], messages(10)[3:]
    store.add_many(first)
    store.add_table({m.code: m for m in rest})
    assert list(store) == first + rest
    assert sum(store.counts().values()) == 10


def test_add_new_counts_like_add_many() -> None:
    """A publish's messages (one creation time, waiting or delayed) counted per batch."""
    msgs = [
        new_message(
            i, "t", "x", 1_700_000_000, 0, i % 3, Status.DELAYED if i % 3 else Status.WAITING, 1.7e9
        )
        for i in range(30)
    ]
    one_by_one, batched = MessageStore(), MessageStore()
    one_by_one.add_many(msgs)
    batched.add_new(msgs, sum(1 for m in msgs if m.status is Status.DELAYED))
    assert batched.counts() == one_by_one.counts()
    assert batched.hourly() == one_by_one.hourly()
    assert list(batched) == msgs


def test_add_new_refuses_a_known_code() -> None:
    store = MessageStore()
    store.add_new(messages(3)[:1], 0)
    with pytest.raises(KeyError):
        store.add_new(messages(3)[:1], 0)

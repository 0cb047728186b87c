"""Round trips through the WAL and through snapshots, for every kind of message."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kapokmq.model import Code, Status
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.storage import Storage
from kapokmq.storage.format import clean_text
from tests.storage.helpers import crash, make_config, start, state

TOPICS = ["plain", "主题-队列", "émoji 🚀 topic", "tab\tand\nnewline", ""]
DATA = ["", "hello", "数据 ✓", "\x00binary\x01", "x" * 70_000, "lone \ud800 surrogate"]


def populate(runtime: BrokerRuntime) -> dict[Code, str]:
    """One message of every status per topic; returns code -> expected status name."""
    broker = runtime.broker
    expected: dict[Code, str] = {}
    for i, topic in enumerate(TOPICS):
        # acks apply to the consumer's own topic only (docs/protocol.md "Consumer session")
        session = broker.attach_consumer(_info(topic), lambda batch: None)
        data = DATA[i % len(DATA)]
        waiting = runtime.publish(topic, data, 0)
        delayed = runtime.publish(topic, data + "later", 3600 + i)  # due in the future
        consumed = runtime.publish(topic, data + "done", 0)
        dead = runtime.publish(topic, data + "dead", 0)
        removed = runtime.publish(topic, "gone", 0)
        broker.ack(session, consumed.code)
        broker.store.set_status(dead, Status.DEAD)
        dead.attempts = 7
        for listener in broker.listeners:
            listener.message_updated(dead)
        broker.delete(removed.code)
        expected.update(
            {waiting.code: "WAITING", delayed.code: "DELAYED", consumed.code: "CONSUMED"}
        )
        expected[dead.code] = "DEAD"
        broker.detach_consumer(session)
    return expected


def _info(topic: str):
    from kapokmq.model import ClientInfo

    return ClientInfo("c", topic, "127.0.0.1", int(time.time()))


def expected_state(runtime: BrokerRuntime, attempts: bool = True) -> dict[Code, tuple[object, ...]]:
    snap = state(list(runtime.broker.store), attempts)
    # lone surrogates are stored as U+FFFD (what a consumer is sent anyway)
    return {code: (v[0], clean_text(str(v[1])), *v[2:]) for code, v in snap.items()}


async def reopen(tmp_path: Path, **mq: object) -> tuple[BrokerRuntime, Storage]:
    return start(make_config(tmp_path, **mq))


@pytest.mark.parametrize("policy", ["always", "everysec", "no"])
async def test_wal_round_trip_after_crash(tmp_path: Path, policy: str) -> None:
    runtime, storage = start(make_config(tmp_path, fsync=policy))
    expected = populate(runtime)
    before = expected_state(runtime)
    crash(runtime, storage)

    runtime2, storage2 = await reopen(tmp_path, fsync=policy)
    after = state(list(runtime2.broker.store))
    assert after == before
    assert {c: runtime2.broker.store.get(c).status.name for c in expected} == expected  # type: ignore[union-attr]
    assert storage2.recovered is not None and storage2.recovered.wal_records > 0
    await storage2.close()
    runtime2.close()


@pytest.mark.parametrize("mode", [1, 2])
async def test_snapshot_round_trip_after_clean_stop(tmp_path: Path, mode: int) -> None:
    runtime, storage = start(make_config(tmp_path, isPersistent=mode))
    populate(runtime)
    before = expected_state(runtime)
    await storage.close()
    runtime.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if n.endswith(".snap")], names
    assert not [n for n in names if n.endswith(".wal")], names

    runtime2, storage2 = await reopen(tmp_path, isPersistent=mode)
    assert state(list(runtime2.broker.store)) == before
    assert storage2.recovered is not None and storage2.recovered.wal_records == 0
    await storage2.close()
    runtime2.close()


async def test_background_snapshot_then_wal(tmp_path: Path) -> None:
    runtime, storage = start(make_config(tmp_path))
    populate(runtime)
    stats = await storage.start_snapshot()
    assert stats is not None and stats.messages == len(runtime.broker.store)
    populate(runtime)  # these go to the new segment only
    before = expected_state(runtime)
    crash(runtime, storage)
    listing = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert listing == ["MQDATA.000000000002.snap", "MQDATA.000000000002.wal"]

    runtime2, storage2 = await reopen(tmp_path)
    assert state(list(runtime2.broker.store)) == before
    assert storage2.recovered is not None and storage2.recovered.snapshot_seq == 2
    await storage2.close()
    runtime2.close()


async def test_changes_during_snapshot_are_replayed(tmp_path: Path) -> None:
    """A fuzzy snapshot plus its WAL segment equals the live state."""
    runtime, storage = start(make_config(tmp_path))
    broker = runtime.broker
    session = broker.attach_consumer(_info("busy"), lambda batch: None)
    msgs = [runtime.publish("busy", f"m{i}", 0) for i in range(5000)]
    task = storage.start_snapshot()
    i = 0
    while not task.done():
        # ack, delete and add while the snapshot is being encoded
        broker.ack(session, msgs[i].code)
        broker.delete(msgs[i + 1].code)
        runtime.publish("busy", f"late{i}", 0)
        i += 2
        await asyncio.sleep(0)
    assert i > 10, "the snapshot should have yielded to the loop many times"
    # attempts are not logged on push (only with status changes and snapshots)
    before = expected_state(runtime, attempts=False)
    crash(runtime, storage)
    runtime2, storage2 = await reopen(tmp_path)
    assert state(list(runtime2.broker.store), attempts=False) == before
    await storage2.close()
    runtime2.close()


async def test_restored_messages_are_delivered_and_delays_keep_due_time(tmp_path: Path) -> None:
    runtime, storage = start(make_config(tmp_path))
    session = runtime.broker.attach_consumer(_info("q"), lambda batch: None)
    runtime.publish("q", "a", 0)
    runtime.publish("q", "b", 0)
    soon = runtime.publish("q", "soon", 1)
    far = runtime.publish("q", "far", 1000)
    runtime.broker.dispatch()
    assert len(session.in_flight) == 2  # in flight, not acked when the crash comes
    crash(runtime, storage)

    runtime2, storage2 = await reopen(tmp_path)
    got: list[str] = []
    pushed = asyncio.Event()

    def deliver(batch):
        got.extend(m.data for m in batch)
        pushed.set()

    runtime2.broker.attach_consumer(_info("q"), deliver)
    await asyncio.wait_for(pushed.wait(), 1)  # redelivered at once, not after pushRetryTime
    assert got == ["a", "b"]
    pushed.clear()
    await asyncio.wait_for(pushed.wait(), 3)
    assert got == ["a", "b", "soon"]
    assert time.time() >= soon.arrival + 1
    restored_far = runtime2.broker.store.get(far.code)
    assert restored_far is not None and restored_far.arrival == far.arrival
    assert runtime2.broker.scheduler.next_deadline() == pytest.approx(far.arrival + 1000)
    await storage2.close()
    runtime2.close()


async def test_clean_consumed_and_expired_on_recovery(tmp_path: Path) -> None:
    runtime, storage = start(make_config(tmp_path))
    old = runtime.publish("q", "old", 0)
    old.arrival -= 10_000  # pretend it is old (CreateTime too); the ADD record is written
    for listener in runtime.broker.listeners:
        listener.message_added(old)  # rewrite it with the old time (same code: replaced)
    keep = runtime.publish("q", "new", 0)
    crash(runtime, storage)
    runtime2, storage2 = await reopen(tmp_path, cleanTime=5000)
    assert runtime2.broker.store.get(old.code) is None
    assert runtime2.broker.store.get(keep.code) is not None
    await storage2.close()
    runtime2.close()


async def test_recovery_strategy_zero_discards(tmp_path: Path) -> None:
    runtime, storage = start(make_config(tmp_path))
    runtime.publish("q", "x", 0)
    crash(runtime, storage)
    runtime2, storage2 = await reopen(tmp_path, recoveryStrategy=0)
    assert len(runtime2.broker.store) == 0
    runtime2.publish("q", "y", 0)
    crash(runtime2, storage2)
    runtime3, storage3 = await reopen(tmp_path)
    assert [m.data for m in runtime3.broker.store] == ["y"]
    await storage3.close()
    runtime3.close()


async def test_memory_only_touches_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path / "d", isPersistent=0)
    runtime = BrokerRuntime(config)
    from kapokmq.storage import open_storage

    assert open_storage(runtime) is None
    assert runtime.broker.listeners == []
    assert not (tmp_path / "d").exists()
    runtime.close()


async def test_group_commit(tmp_path: Path) -> None:
    runtime, storage = start(make_config(tmp_path, fsync="always"))
    assert runtime.durable_barrier is not None
    barrier = runtime.durable_barrier

    async def produce(i: int) -> None:
        for j in range(20):
            runtime.publish("g", f"{i}-{j}", 0)
            await barrier()

    await asyncio.gather(*(produce(i) for i in range(50)))
    wal = storage.wal
    assert wal is not None and wal.synced == wal.appended == 1000
    assert wal.syncs < 200, f"{wal.syncs} fsyncs for 1000 records: no group commit"
    await storage.close()
    runtime.close()


async def test_second_broker_on_same_dir_refused(tmp_path: Path) -> None:
    from kapokmq.storage import StorageError

    runtime, storage = start(make_config(tmp_path))
    with pytest.raises(StorageError, match="in use"):
        start(make_config(tmp_path))
    await storage.close()
    runtime.close()


async def test_tickets_share_one_future_per_batch_and_replies_stay_in_order(
    tmp_path: Path,
) -> None:
    from kapokmq.server.session import ProducerWebSocket
    from tests.server.test_session import FakeLink, FakeTransport, frames, send_frame

    runtime, storage = start(make_config(tmp_path, fsync="always"))
    ticket = runtime.durable_ticket
    assert ticket is not None
    runtime.publish("o", "first", 0)
    assert ticket() is ticket()  # one write batch, one future
    await asyncio.wait_for(asyncio.shield(ticket()), 5)  # type: ignore[arg-type]

    transport = FakeTransport()
    producer = ProducerWebSocket(runtime, transport, FakeLink(), "o", "p1", "")
    producer.receive(b"test")
    transport.out.clear()
    for i in range(100):
        producer.receive(send_frame(str(i)))
        if i == 50:
            producer.receive(b"not json")  # its error must not overtake earlier oks
    producer.end_of_read()
    pending = ticket()
    assert pending is not None
    assert transport.out == []  # nothing is acknowledged before the fsync
    await asyncio.wait_for(asyncio.shield(pending), 5)
    await asyncio.sleep(0)
    replies = frames(b"".join(transport.out))
    assert replies[:51] == [b"ok"] * 51
    assert replies[51].startswith(b"error: ")
    assert replies[52:] == [b"ok"] * 49
    assert ticket() is None  # everything is on disk
    await storage.close()
    runtime.close()


async def test_snapshot_mode_saves_a_change_within_persistent_time(tmp_path: Path) -> None:
    """isPersistent 1 is checked once a second: a snapshot is taken at the last check
    before persistentTime has passed, not at the first one after it (which could lose
    a change made just after a snapshot for persistentTime + 1 s)."""
    runtime, storage = start(make_config(tmp_path, isPersistent=1, persistentTime=3))
    runtime.publish("t", "change", 0)
    storage.last_snapshot_at = time.monotonic() - 2.5  # the next check would be at 3.5 s
    storage._tick()
    assert storage._snapshot_task is not None
    await storage._snapshot_task
    assert storage.counter.changes == 0
    await storage.close()
    runtime.close()

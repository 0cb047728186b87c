"""The master's slow-slave rule (cluster/replication.py ReplicationHub, docs/protocol.md
"Master-slave sync"): what a slave has not read is bounded by progress, not by size alone.
The real-process cases are in tests/server/test_sync_slow_slave.py."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from kapokmq.cluster import replication
from kapokmq.cluster.replication import ReplicaLost, ReplicationHub, apply_record, record_of
from kapokmq.config import Config
from kapokmq.model import code_text, dumps
from kapokmq.server.runtime import BrokerRuntime

BOUND = 65536


class Writer:
    """A slave's connection: ``unread`` is what the kernel has not taken yet."""

    def __init__(self) -> None:
        self.unread = 0

    def send(self, frames: bytes) -> None:
        self.unread += len(frames)

    def buffered(self) -> int:
        return self.unread


def master(ack: int = 0) -> tuple[BrokerRuntime, ReplicationHub]:
    config = Config()
    config.sync.isSync = 1
    config.sync.ack = ack
    config.mq.maxPendingBytes = BOUND
    runtime = BrokerRuntime(config)
    return runtime, ReplicationHub(runtime)


def fill(runtime: BrokerRuntime, count: int) -> None:
    for i in range(count):
        runtime.publish("t", f"{i:04d}" + "x" * 1020, 0)


async def test_a_slave_that_reads_nothing_is_cut_after_the_stall_time() -> None:
    runtime, hub = master()
    writer = Writer()
    slave = hub.attach(writer, False, print)  # type: ignore[arg-type]
    fill(runtime, 100)  # ~130 KiB unread, over the bound
    t0 = runtime.loop.time()
    assert hub._why_cut(slave, t0 + replication.SLAVE_STALLED_AFTER - 0.5) is None
    reason = hub._why_cut(slave, t0 + replication.SLAVE_STALLED_AFTER + 0.1)
    assert reason is not None
    assert f"over mq.maxPendingBytes ({BOUND})" in reason and "nothing read for" in reason
    runtime.close()


async def test_a_small_backlog_is_never_a_stall() -> None:
    runtime, hub = master()
    slave = hub.attach(Writer(), False, print)  # type: ignore[arg-type]
    fill(runtime, 40)  # ~50 KiB, under the bound, unread for ever
    assert hub._why_cut(slave, runtime.loop.time() + 1000) is None
    runtime.close()


async def test_a_slave_reading_its_dump_is_not_cut_however_large_the_dump() -> None:
    runtime, hub = master()
    fill(runtime, 3000)  # a dump of ~60 x the bound
    writer = Writer()
    slave = hub.attach(writer, False, print)  # type: ignore[arg-type]
    now = runtime.loop.time()
    while slave.sent < 3000 or writer.unread:  # it reads 100 KiB per 4 s look: slow, but reading
        now += replication.SLAVE_STALLED_AFTER - 1
        writer.unread = max(0, writer.unread - 100_000)
        assert hub._why_cut(slave, now) is None
        await asyncio.sleep(replication.DUMP_POLL_MAX)  # the dump refills what was read
    assert slave.dump_bytes > 50 * BOUND
    runtime.close()


class Reader:
    """A slave's connection that keeps the frames; ``read`` takes what was sent so far."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frames: bytes) -> None:
        self.frames.append(frames)

    def buffered(self) -> int:
        return sum(map(len, self.frames))

    def read(self) -> list[dict[str, object]]:
        data, self.frames = b"".join(self.frames), []
        records = []
        while data:  # unmasked server text frames (frames.text_frame)
            size, start = data[1] & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(data[2:4]), 4
            elif size == 127:
                size, start = int.from_bytes(data[2:10]), 10
            records.append(orjson.loads(data[start : start + size]))
            data = data[start + size :]
        return records


async def test_the_dump_is_streamed_as_the_slave_reads_it() -> None:
    """A large store is not encoded whole at attach (that doubled a master's memory): at
    most DUMP_AHEAD (plus one chunk) waits unread, and a change made meanwhile is never
    undone by an older copy in the dump."""
    runtime, hub = master()
    fill(runtime, 5000)  # ~5.5 MiB of records
    codes = [m.code for m in runtime.broker.messages()]
    reader = Reader()
    slave = hub.attach(reader, True, print)  # type: ignore[arg-type]
    limit = replication.DUMP_AHEAD + replication.DUMP_CHUNK_BYTES + 4096
    assert 0 < reader.buffered() <= limit
    received = reader.read()
    assert len(received) < 2500
    # meanwhile, before the dump reaches them: one message is deleted, one consumed (as a
    # slave's hand-back would), and one is added
    broker = runtime.broker
    assert broker.delete(codes[-1], by_console=False)
    consumed = record_of(broker, broker.store.get(codes[-2]))  # type: ignore[arg-type]
    consumed.update(Status=1, ConsumedTime=int(time.time()))
    apply_record(runtime, dumps(consumed))
    runtime.publish("t", "added during the dump", 0)
    deadline = time.monotonic() + 30
    while len(received) < 5000 + 2:  # 4,999 in the dump, the removal, the consumed, the new
        assert time.monotonic() < deadline, f"{len(received)} records read"
        await asyncio.sleep(replication.DUMP_POLL)
        assert reader.buffered() <= limit
        received += reader.read()
    final: dict[object, dict[str, object]] = {}
    for record in received:  # the slave applies them in order
        final[record["MessageCode"]] = record
    assert len(final) == 5001 and slave.sent == len(received)  # the deleted one: its removal only
    assert final[code_text(codes[-1])].get("Deleted") is True
    assert final[code_text(codes[-2])]["Status"] == 1
    assert all(final[code_text(c)]["Status"] == -1 for c in codes[:-2])
    assert any(r.get("MessageData") == "added during the dump" for r in final.values())
    runtime.close()


async def test_a_slave_that_reads_slower_than_the_changes_come_is_cut() -> None:
    runtime, hub = master()
    writer = Writer()
    slave = hub.attach(writer, False, print)  # type: ignore[arg-type]
    now = runtime.loop.time()
    reason = None
    for _ in range(20):  # 200 messages per look come in, 50 KiB are read
        fill(runtime, 200)
        writer.unread -= 50_000
        now += 1
        reason = hub._why_cut(slave, now)
        if reason is not None:
            break
    assert reason is not None
    assert f"over {replication.SLAVE_LAG_FACTOR} x mq.maxPendingBytes ({BOUND})" in reason
    runtime.close()


async def test_a_cut_slave_under_sync_ack_turns_the_waiting_ok_into_an_error(
    monkeypatch,
) -> None:
    monkeypatch.setattr(replication, "SLAVE_STALLED_AFTER", 0.0)
    monkeypatch.setattr(replication, "SLAVE_WATCH_EVERY", 0.01)
    runtime, hub = master(ack=1)
    writer = Writer()
    reasons: list[str] = []

    def cut(reason: str) -> None:  # as the session does: its connection ends, it detaches
        reasons.append(reason)
        hub.detach(slave)

    slave = hub.attach(writer, False, cut)  # type: ignore[arg-type]
    writer.unread = BOUND + 1  # and it never reads it
    runtime.publish("t", "waits for the slave", 0)
    ticket = runtime.durable_ticket
    assert ticket is not None
    waiting = ticket()
    assert waiting is not None
    with pytest.raises(ReplicaLost, match="disconnected before it confirmed"):
        await asyncio.wait_for(waiting, 2)
    assert len(reasons) == 1 and "nothing read" in reasons[0]
    assert hub.figures() == (0, 0, 1)
    runtime.close()


def test_hand_back_frames_are_bounded_in_bytes() -> None:
    records = [b"r" * 1000] * 120 + [b"big" * 40_000, b"last"]
    frames = replication.hand_back_frames(records)
    assert b"\n".join(frames) == b"\n".join(records)  # same records, same order
    assert all(len(f) <= replication.HAND_BACK_BYTES for f in frames[:-2])
    assert frames[-2] == b"big" * 40_000 and frames[-1] == b"last"

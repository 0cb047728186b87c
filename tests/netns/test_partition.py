"""Master and slave in two network namespaces; the link between them is cut and healed.

What happens (docs/cluster.md, Partitions): the slave loses the master after its
WebSocket heartbeat fails and takes over; both sides accept writes during the cut (sync.ack
0); when the link heals the slave hands its side back, so every message answered ok on
either side is delivered at least once by the master, and the slave mirrors everything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.netns.harness import NsBroker, Pair, netns_unavailable

_reason = netns_unavailable()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p.open()
    finally:
        p.close()


async def wait_log(broker: NsBroker, text: str, count: int, timeout: float) -> float:
    start = time.monotonic()
    while broker.log().count(text) < count:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{text!r} x{count} not in log within {timeout}s:\n{broker.log()}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def run(broker: NsBroker, *command: str) -> list[str]:
    return broker.client(*command)


@pytest.mark.timeout(90)
async def test_partition_both_sides_write_then_converge(pair: Pair) -> None:
    master = NsBroker(pair.a, pair.addr_a, {"sync.isSync": 1})
    slave = NsBroker(
        pair.b,
        pair.addr_b,
        {"sync.isSync": 1, "sync.isSlave": 1, "sync.masterAddr": pair.addr_a},
    )
    try:
        master.start()
        slave.settings["sync.masterPort"] = master.port
        slave.start()
        await wait_log(slave, "following master", 1, 10)
        before = await asyncio.to_thread(run, master, "send", "20", "before")
        assert len(before) == 20
        refused = await asyncio.to_thread(run, slave, "send", "3", "refused")
        assert refused == []  # a following slave is read-only

        pair.cut()
        cut_at = time.monotonic()
        await wait_log(slave, "takes over", 1, 20)
        failover = time.monotonic() - cut_at
        on_master = await asyncio.to_thread(run, master, "send", "10", "master-side")
        on_slave = await asyncio.to_thread(run, slave, "send", "10", "slave-side")
        assert len(on_master) == len(on_slave) == 10

        pair.heal()
        healed_at = time.monotonic()
        await wait_log(slave, "acknowledged the hand-back", 1, 20)
        converged = time.monotonic() - healed_at
        oked = set(before) | set(on_master) | set(on_slave)
        delivered = await asyncio.to_thread(run, master, "drain", "t", "2")
        print(
            f"partition: failover {failover:.2f}s after the cut, hand-back {converged:.2f}s "
            f"after healing; ok'ed {len(oked)} (20 before, 10 per side), master delivered "
            f"{len(delivered)} ({len(set(delivered))} distinct), refused on the "
            f"following slave {3 - len(refused)}"
        )
        assert oked <= set(delivered)  # every ok'ed message delivered at least once
        assert len(delivered) == len(set(delivered))
    finally:
        slave.cleanup()
        master.cleanup()


@pytest.mark.timeout(120)
async def test_partition_with_sync_ack_never_oks_one_side_only(pair: Pair) -> None:
    settings: dict[str, object] = {"sync.isSync": 1, "sync.ack": 1}
    master = NsBroker(pair.a, pair.addr_a, settings)
    slave = NsBroker(
        pair.b, pair.addr_b, {**settings, "sync.isSlave": 1, "sync.masterAddr": pair.addr_a}
    )
    try:
        master.start()
        slave.settings["sync.masterPort"] = master.port
        slave.start()
        await wait_log(master, "connected; streaming", 1, 10)
        before = await asyncio.to_thread(run, master, "send", "20", "before")
        assert len(before) == 20

        pair.cut()
        await wait_log(slave, "takes over", 1, 20)
        # Neither side may answer ok now: the master cannot reach its slave, the slave
        # cannot reach its master (the master's sends wait, then fail or are refused).
        during_master = await asyncio.to_thread(run, master, "send", "4", "master-side", "2")
        during_slave = await asyncio.to_thread(run, slave, "send", "4", "slave-side", "2")
        assert during_master == [] and during_slave == []

        pair.heal()
        await wait_log(slave, "following master", 2, 30)

        async def accepted_again() -> list[str]:
            for _ in range(100):
                oks = await asyncio.to_thread(run, master, "send", "1", "after", "2")
                if oks:
                    return oks
                await asyncio.sleep(0.1)
            raise AssertionError("the master never accepted writes again")

        after = await accepted_again()
        delivered = await asyncio.to_thread(run, master, "drain", "t", "2")
        print(
            f"partition with sync.ack 1: {len(before)} ok'ed before the cut, 0 of 8 during "
            f"it, writes accepted again after healing; master delivered {len(delivered)}"
        )
        assert set(before) | set(after) <= set(delivered)
    finally:
        slave.cleanup()
        master.cleanup()

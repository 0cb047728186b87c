"""sync.ack 1 on the master (cluster/replication.py ReplicationHub): an `ok` waits for the
slave's confirmation, and a slave that is connected but confirms nothing (its own storage
is failing) turns the waiting `ok`s into errors after a bounded time instead of leaving
the producers unanswered (docs/protocol.md "Master-slave sync")."""

from __future__ import annotations

import asyncio

import pytest

from kapokmq.cluster import replication
from kapokmq.cluster.replication import ReplicaLost, ReplicationHub
from kapokmq.config import Config
from kapokmq.server.runtime import BrokerRuntime


class Writer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frames: bytes) -> None:
        self.sent.append(frames)

    def buffered(self) -> int:
        return 0


async def test_a_slave_that_never_confirms_turns_the_ok_into_an_error(monkeypatch) -> None:
    monkeypatch.setattr(replication, "CONFIRM_TIMEOUT", 0.05)
    config = Config()
    config.sync.isSync = 1
    config.sync.ack = 1
    runtime = BrokerRuntime(config)
    hub = ReplicationHub(runtime)
    slave = hub.attach(Writer(), False, print)  # type: ignore[arg-type]
    runtime.publish("t", "confirmed", 0)
    ticket = runtime.durable_ticket
    assert ticket is not None
    confirmed = ticket()
    assert confirmed is not None
    hub.acked(slave, slave.sent)
    await asyncio.wait_for(confirmed, 1)

    runtime.publish("t", "never confirmed", 0)
    waiting = ticket()
    assert waiting is not None
    with pytest.raises(ReplicaLost, match="did not confirm this message within"):
        await asyncio.wait_for(waiting, 1)
    runtime.close()

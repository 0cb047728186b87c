"""Python nodes on loopback: join, failure detection, leave, refutation."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from kapokmq.gossip import EventKind, JoinError, Memberlist, NodeEvent, NodeStatus
from kapokmq.gossip.codec import IndirectPing
from tests.gossip.util import free_port, holds, names, start_node, wait_until

# Fast timings for tests that only check the logic of a path, not the LAN defaults.
FAST = {
    "probe_interval": 0.2,
    "probe_timeout": 0.1,
    "gossip_interval": 0.05,
    "suspicion_mult": 2,
    "tcp_timeout": 1.0,
}


@pytest.fixture
async def trio() -> AsyncIterator[list[Memberlist]]:
    nodes = [await start_node(f"py{i}") for i in range(3)]
    try:
        yield nodes
    finally:
        for n in nodes:
            await n.shutdown()


def state_in(node: Memberlist, name: str) -> NodeStatus | None:
    for m in node.all_nodes():
        if m.name == name:
            return m.state
    return None


@pytest.mark.timeout(20)
async def test_three_nodes_join_and_see_each_other(trio: list[Memberlist]) -> None:
    a, b, c = trio
    events: list[NodeEvent] = []
    a.add_listener(events.append)
    start = time.monotonic()
    assert await b.join([a.address]) == 1
    assert await c.join([f"127.0.0.1:{a.port}"]) == 1
    await wait_until(lambda: all(names(n) == {"py0", "py1", "py2"} for n in trio), 5)
    print(f"3-node convergence after join: {time.monotonic() - start:.3f}s")
    assert {e.member.name for e in events if e.kind == EventKind.JOIN} == {"py1", "py2"}
    member = next(m for m in b.members() if m.name == "py0")
    assert (member.addr, member.port, member.state) == ("127.0.0.1", a.port, NodeStatus.ALIVE)
    assert member.protocol == (1, 5, 2) and member.delegate == (0, 0, 0)


async def test_join_without_reachable_seed_raises() -> None:
    node = await start_node("lonely")
    try:
        with pytest.raises(JoinError, match="could not join any seed"):
            await node.join([("127.0.0.1", free_port())])
        with pytest.raises(JoinError):
            await node.join([])
    finally:
        await node.shutdown()


@pytest.mark.timeout(30)
async def test_killed_node_is_marked_dead_with_lan_timings(trio: list[Memberlist]) -> None:
    a, b, c = trio
    await b.join([a.address])
    await c.join([a.address])
    await wait_until(lambda: all(len(n.members()) == 3 for n in trio), 5)
    await c.shutdown()  # no leave: peers must detect the failure
    took = await wait_until(
        lambda: state_in(a, "py2") == NodeStatus.DEAD and state_in(b, "py2") == NodeStatus.DEAD,
        15,
    )
    print(f"kill -> dead on both peers: {took:.2f}s")
    assert names(a) == names(b) == {"py0", "py1"}


@pytest.mark.timeout(20)
async def test_leave_marks_node_left(trio: list[Memberlist]) -> None:
    a, b, c = trio
    await b.join([a.address])
    await c.join([a.address])
    await wait_until(lambda: all(len(n.members()) == 3 for n in trio), 5)
    leaves: list[NodeEvent] = []
    a.add_listener(lambda e: leaves.append(e) if e.kind == EventKind.LEAVE else None)
    assert await b.leave(5) is True
    await b.shutdown()
    await wait_until(
        lambda: state_in(a, "py1") == NodeStatus.LEFT and state_in(c, "py1") == NodeStatus.LEFT, 5
    )
    assert [e.member.name for e in leaves] == ["py1"]
    assert names(a) == {"py0", "py2"}


@pytest.mark.timeout(20)
async def test_restart_under_same_name_refutes_old_death() -> None:
    a = await start_node("a", **FAST)
    b = await start_node("b", **FAST)
    port = b.port
    try:
        await b.join([a.address])
        await wait_until(lambda: len(a.members()) == 2, 5)
        old_inc = next(m.incarnation for m in a.all_nodes() if m.name == "b")
        await b.shutdown()
        await wait_until(lambda: state_in(a, "b") == NodeStatus.DEAD, 10)
        b = await start_node("b", bind_port=port, **FAST)
        await b.join([a.address])  # a's reply lists b as dead: b must refute
        await wait_until(lambda: state_in(a, "b") == NodeStatus.ALIVE, 5)
        assert b.local_member().incarnation > old_inc
    finally:
        await a.shutdown()
        await b.shutdown()


@pytest.mark.timeout(20)
async def test_events_iterator_and_meta_update() -> None:
    a = await start_node("a", **FAST)
    b = await start_node("b", **FAST)
    try:
        stream = a.events()
        await b.join([a.address])
        first = await asyncio.wait_for(anext(stream), 3)
        assert (first.kind, first.member.name) == (EventKind.JOIN, "b")
        b.update_meta(b"v2")
        update = await asyncio.wait_for(anext(stream), 3)
        assert (update.kind, update.member.meta) == (EventKind.UPDATE, b"v2")
        await stream.aclose()
    finally:
        await a.shutdown()
        await b.shutdown()


def drop_udp_to(node: Memberlist, port: int) -> list[int]:
    """Test seam: make ``node`` silently lose every UDP packet it sends to ``port``."""
    dropped: list[int] = []
    real_send = node._transport.send

    def lossy_send(data: bytes, addr: tuple[str, int]) -> None:
        if addr[1] == port:
            dropped.append(len(data))
            return
        real_send(data, addr)

    node._transport.send = lossy_send  # type: ignore[method-assign]
    return dropped


@pytest.mark.timeout(20)
async def test_indirect_probe_keeps_node_alive_when_direct_path_fails() -> None:
    """a cannot reach c over UDP, but b relays a's probes; c must never become suspect."""
    nodes = [await start_node(n, disable_tcp_pings=True, **FAST) for n in ("a", "b", "c")]
    a, b, c = nodes
    relayed: list[str] = []
    real_relay = b._handle_indirect_ping

    def counting_relay(req: IndirectPing, src: tuple[str, int]) -> None:
        relayed.append(req.node)
        real_relay(req, src)

    b._handle_indirect_ping = counting_relay  # type: ignore[method-assign]
    try:
        await b.join([a.address])
        await c.join([a.address])
        await wait_until(lambda: all(len(n.members()) == 3 for n in nodes), 5)
        drop_udp_to(a, c.port)
        # Suspicion would turn into death after 0.4 s here; hold well beyond that.
        await holds(lambda: state_in(a, "c") == NodeStatus.ALIVE, 2.0)
        assert "c" in relayed
    finally:
        for n in nodes:
            await n.shutdown()


@pytest.mark.timeout(20)
async def test_tcp_fallback_keeps_node_alive_when_udp_is_lost() -> None:
    """Two nodes, no relays: a's UDP to b is lost, the TCP ping must keep b alive."""
    a = await start_node("a", **FAST)
    b = await start_node("b", **FAST)
    try:
        await b.join([a.address])
        await wait_until(lambda: len(a.members()) == 2, 5)
        dropped = drop_udp_to(a, b.port)
        await holds(lambda: state_in(a, "b") == NodeStatus.ALIVE, 2.0)
        assert dropped
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_idle_streams_of_an_outsider_do_not_lock_peers_out() -> None:
    """130 connections that send one byte and wait held all 128 stream slots, so every join
    was refused for as long as an outsider kept them open (docs/gossip.md, Bounded work):
    the oldest stream still being read now gives way to a new one."""
    seed = await start_node("seed")
    newcomer = await start_node("newcomer")
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(130):
            _, writer = await asyncio.open_connection(*seed.address)
            writer.write(b"\x06")  # a push/pull that never comes
            writers.append(writer)
        await wait_until(lambda: seed._push_pulls_in_flight >= 128, 5)
        assert await newcomer.join([seed.address]) == 1
        await wait_until(lambda: names(seed) == {"seed", "newcomer"}, 5)
        assert seed.stats.streams_refused >= 3
    finally:
        for writer in writers:
            writer.close()
        await newcomer.shutdown()
        await seed.shutdown()


async def test_garbage_packets_are_dropped_and_counted() -> None:
    """Every undecodable packet is counted, unknown message types too (Go logs them as
    not supported); a user message (serf's traffic) is not garbage."""
    node = await start_node("target")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for packet in (bytes([99]) + b"junk", bytes([0]) + b"\xc1", bytes([200]), b"\x08user"):
            udp.sendto(packet, node.address)
        await wait_until(lambda: node.stats.packets_malformed == 3, 5)
        await holds(lambda: node.stats.packets_malformed == 3, 0.2)
    finally:
        udp.close()
        await node.shutdown()


async def test_streams_being_read_share_a_byte_budget() -> None:
    """Streams an outsider fills and leaves open held up to max_push_pull_bytes each (16 of
    20 MiB: +272 MiB RSS); all together they now hold at most two streams' worth, the
    biggest gives way, and a real peer's small push/pull still gets through."""
    from kapokmq.gossip.crypto import Keyring

    ring = Keyring([bytes(16)])
    limit = 64 * 1024
    seed = await start_node("seed", keyring=ring, max_push_pull_bytes=limit)
    newcomer = await start_node("newcomer", keyring=ring)
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(6):  # each declares a full-size payload and sends most of it
            _, writer = await asyncio.open_connection(*seed.address)
            writer.write(b"\x0a" + (limit - 16).to_bytes(4, "big") + bytes(limit - 4096))
            writers.append(writer)
        await wait_until(lambda: seed.stats.streams_refused >= 4, 5)
        budget = seed._stream_budget
        assert budget.total <= budget.limit == 2 * limit
        assert await newcomer.join([seed.address]) == 1
        await wait_until(lambda: names(seed) == {"seed", "newcomer"}, 5)
    finally:
        for writer in writers:
            writer.close()
        await newcomer.shutdown()
        await seed.shutdown()

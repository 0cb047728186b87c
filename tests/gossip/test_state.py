"""State machine rules with a fake clock: alive/suspect/dead/left, refutation, reaping."""

from __future__ import annotations

import random

import pytest

from kapokmq.gossip import codec
from kapokmq.gossip.broadcast import BroadcastQueue
from kapokmq.gossip.codec import Alive, Dead, PushNodeState, Suspect
from kapokmq.gossip.config import GossipConfig
from kapokmq.gossip.state import EventKind, Membership, NodeEvent, NodeStatus, ProtocolMismatch
from kapokmq.gossip.suspicion import Suspicion, retransmit_limit, suspicion_timeout

LO = bytes([127, 0, 0, 1])
VSN = bytes([1, 5, 2, 0, 0, 0])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(name: str = "me", **cfg: object) -> tuple[Membership, FakeClock, list[NodeEvent]]:
    clock = FakeClock()
    m = Membership(GossipConfig.lan(name, **cfg), clock=clock, rng=random.Random(1))
    events: list[NodeEvent] = []
    m.listener = events.append
    m.bootstrap(LO, 7000)
    return m, clock, events


def alive(name: str, inc: int = 1, port: int = 7001, meta: bytes | None = None) -> Alive:
    return Alive(inc, name, LO, port, meta, VSN)


def state_of(m: Membership, name: str) -> NodeStatus | None:
    member = m.get(name)
    return member.state if member else None


def test_bootstrap_makes_self_alive_and_queues_broadcast() -> None:
    m, _, events = make()
    me = m.local()
    assert (me.name, me.addr, me.port, me.incarnation, me.state) == (
        "me",
        "127.0.0.1",
        7000,
        1,
        NodeStatus.ALIVE,
    )
    assert [e.kind for e in events] == [EventKind.JOIN]
    sent = m.broadcasts.get(2, 1400)
    assert codec.unpack(Alive, sent[0][1:]).node == "me"


def test_alive_join_update_and_stale_ignored() -> None:
    m, _, events = make()
    m.on_alive(alive("a", 1))
    assert events[-1].kind == EventKind.JOIN and events[-1].member.name == "a"
    m.on_alive(alive("a", 1, meta=b"x"))  # same incarnation: ignored
    assert m.get("a") is not None and m.get("a").meta == b""  # type: ignore[union-attr]
    m.on_alive(alive("a", 2, meta=b"x"))
    update = events[-1]
    assert update.kind == EventKind.UPDATE and update.member.meta == b"x"
    assert {mem.name for mem in m.members()} == {"me", "a"}


def test_conflicting_address_is_ignored() -> None:
    m, _, _ = make()
    m.on_alive(alive("a", 1, port=7001))
    m.on_alive(alive("a", 5, port=7999))
    member = m.get("a")
    assert member is not None and member.port == 7001 and member.incarnation == 1


def test_bad_versions_ignored() -> None:
    m, _, _ = make()
    m.on_alive(Alive(1, "a", LO, 7001, None, bytes([0, 5, 2, 0, 0, 0])))
    assert m.get("a") is None


def test_suspect_then_dead_after_min_timeout_small_cluster() -> None:
    m, clock, events = make()
    m.on_alive(alive("a"))
    m.on_suspect(Suspect(1, "a", "me"))
    assert state_of(m, "a") == NodeStatus.SUSPECT
    # n = 2 so k = 0: the timer runs for min = 4 × 1 s.
    assert m.next_deadline() == pytest.approx(clock.now + 4.0)
    clock.now += 3.9
    assert m.expire_suspicions() == []
    clock.now += 0.2
    assert m.expire_suspicions() == ["a"]
    assert state_of(m, "a") == NodeStatus.DEAD
    assert events[-1].kind == EventKind.LEAVE
    assert [mem.name for mem in m.members()] == ["me"]


def test_alive_with_higher_incarnation_clears_suspicion() -> None:
    m, clock, _ = make()
    m.on_alive(alive("a"))
    m.on_suspect(Suspect(1, "a", "me"))
    m.on_alive(alive("a", 2))
    clock.now += 100
    assert m.expire_suspicions() == []
    assert state_of(m, "a") == NodeStatus.ALIVE


def test_lifeguard_confirmations_shorten_timer() -> None:
    s = Suspicion("x", k=2, min_=4.0, max_=24.0, start=0.0)
    assert s.deadline == 24.0
    assert s.confirm("x") is False
    assert s.confirm("y") is True
    assert s.deadline == pytest.approx(24 - 20 * 0.6309, abs=0.01)
    assert s.confirm("z") is True
    assert s.deadline == pytest.approx(4.0)
    assert s.confirm("w") is False


def test_suspicion_timeout_scaling() -> None:
    assert suspicion_timeout(4, 1, 1.0) == 4.0
    assert suspicion_timeout(4, 100, 1.0) == 8.0
    assert retransmit_limit(4, 3) == 4
    assert retransmit_limit(4, 10) == 8


def test_refute_suspicion_about_self() -> None:
    m, _, _ = make()
    m.broadcasts.reset()
    m.on_suspect(Suspect(5, "me", "a"))
    me = m.local()
    assert me.state == NodeStatus.ALIVE and me.incarnation == 6
    assert m.awareness.score == 1
    refutation = codec.unpack(Alive, m.broadcasts.get(2, 1400)[0][1:])
    assert (refutation.node, refutation.incarnation) == ("me", 6)


def test_refute_dead_about_self_unless_leaving() -> None:
    m, _, _ = make()
    m.on_alive(alive("a"))
    m.on_dead(Dead(1, "me", "a"))
    assert m.local().state == NodeStatus.ALIVE and m.local().incarnation == 2
    done: list[bool] = []
    m.leave(on_done=lambda: done.append(True))
    assert m.local().state == NodeStatus.LEFT
    assert m.any_alive_peer()
    for _ in range(10):
        m.broadcasts.get(2, 1400)
    assert done == [True]


def test_stale_alive_about_self_refuted() -> None:
    m, _, _ = make()
    m.on_alive(Alive(1, "me", LO, 7000, b"old", VSN))
    assert m.local().incarnation == 2


def test_dead_from_self_is_left() -> None:
    m, _, _ = make()
    m.on_alive(alive("a"))
    m.on_alive(alive("b", port=7002))
    m.on_dead(Dead(1, "a", "a"))
    m.on_dead(Dead(1, "b", "me"))
    assert state_of(m, "a") == NodeStatus.LEFT
    assert state_of(m, "b") == NodeStatus.DEAD


def test_dead_nodes_reaped_after_gossip_to_the_dead_time() -> None:
    m, clock, _ = make()
    m.on_alive(alive("a"))
    m.on_dead(Dead(1, "a", "me"))
    assert m.next_probe_target() is None
    clock.now += 29
    m.reap()
    assert m.get("a") is not None
    clock.now += 2
    m.reap()
    assert m.get("a") is None
    m.on_alive(alive("a", 1, port=7555))  # unknown again: any address accepted
    assert state_of(m, "a") == NodeStatus.ALIVE


def test_probe_round_robin_skips_self_and_dead() -> None:
    m, _, _ = make()
    for i, name in enumerate("abc"):
        m.on_alive(alive(name, port=7001 + i))
    m.on_dead(Dead(1, "c", "me"))
    seen = [m.next_probe_target() for _ in range(6)]
    names = [s.name for s in seen if s]
    assert set(names) == {"a", "b"} and len(names) == 6


def test_merge_turns_dead_into_suspect_and_left_into_left() -> None:
    m, _, _ = make()
    m.on_alive(alive("a"))
    m.on_alive(alive("b", port=7002))
    m.merge(
        [
            PushNodeState("a", LO, 7001, None, 1, NodeStatus.DEAD, VSN),
            PushNodeState("b", LO, 7002, None, 1, NodeStatus.LEFT, VSN),
            PushNodeState("c", LO, 7003, None, 3, NodeStatus.ALIVE, VSN),
        ]
    )
    assert state_of(m, "a") == NodeStatus.SUSPECT
    assert state_of(m, "b") == NodeStatus.LEFT
    assert state_of(m, "c") == NodeStatus.ALIVE


def test_merge_listing_us_dead_makes_us_refute_above_it() -> None:
    m, _, _ = make()
    m.merge([PushNodeState("me", LO, 7000, None, 7, NodeStatus.DEAD, VSN)])
    assert m.local().incarnation == 8 and m.local().state == NodeStatus.ALIVE


def test_verify_protocol_rejects_serf_with_plain_delegate() -> None:
    m, _, _ = make()
    serf = PushNodeState("s1", LO, 7946, b"\xff\x80", 1, 0, bytes([1, 5, 2, 2, 5, 5]))
    with pytest.raises(ProtocolMismatch, match="delegate protocol version"):
        m.merge([serf])
    m2, _, _ = make(delegate_versions=(2, 5, 5))
    m2.merge([serf])
    assert state_of(m2, "s1") == NodeStatus.ALIVE


def test_broadcast_queue_limits_and_invalidation() -> None:
    q = BroadcastQueue(4, lambda: 3)  # limit = 4 × ceil(log10(4)) = 4
    done: list[str] = []
    q.queue("a", b"a1", lambda: done.append("a1"))
    q.queue("a", b"a2")
    assert done == ["a1"]
    q.queue("b", b"bbbb")
    assert q.get(2, 1400) == [b"bbbb", b"a2"]  # larger first at equal transmits
    q.queue("c", b"c")
    assert q.get(2, 1400)[0] == b"c"  # fewer transmits first
    assert q.get(2, 5) == [b"c"]  # size limit: 2 + 1 fits, nothing else
    for _ in range(4):
        q.get(2, 1400)
    assert len(q) == 0


def test_gossip_targets_include_recently_dead() -> None:
    m, clock, _ = make()
    m.on_alive(alive("a"))
    m.on_dead(Dead(1, "a", "me"))
    assert [t.name for t in m.gossip_targets()] == ["a"]
    clock.now += 31
    assert m.gossip_targets() == []


def test_new_names_enter_at_a_bounded_rate_and_never_past_max_nodes() -> None:
    """docs/gossip.md, Bounded work: a burst, then a rate, and never more live nodes than
    ``max_nodes`` however long a flood of spoofed alives lasts; known nodes always update."""
    m, clock, _ = make(introduction_burst=10, introduction_rate=5.0, max_nodes=30)
    for i in range(100):
        m.on_alive(alive(f"fake-{i}"))
    assert len(m.members()) == 1 + 10  # the burst
    assert m.stats.introductions_limited == 90
    sent = 100
    for _ in range(60):  # a minute of flooding: the rate alone would add 300 more
        clock.now += 1.0
        for _ in range(50):
            m.on_alive(alive(f"fake-{sent}"))
            sent += 1
        assert len(m.members()) <= 30
    assert len(m.members()) == 30
    m.on_alive(alive("fake-0", inc=2, meta=b"new"))  # a known node is never limited
    assert m.get("fake-0") is not None and m.get("fake-0").meta == b"new"  # type: ignore[union-attr]
    for i in range(1, 10):  # as nodes die, room opens again
        m.on_dead(Dead(1, f"fake-{i}", "me"))
    assert len(m.members()) == 21
    clock.now += 2.0  # the bucket is full again (10), but only 9 fit
    for _ in range(50):
        m.on_alive(alive(f"fake-{sent}"))
        sent += 1
    assert len(m.members()) == 30
    assert m.get(f"fake-{sent - 50}") is not None

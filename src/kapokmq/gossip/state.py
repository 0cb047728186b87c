"""Node table and SWIM state rules (sans-I/O, injectable clock).

This is memberlist's ``state.go`` logic without sockets or timers: alive /
suspect / dead / left transitions with incarnation numbers, refutation,
Lifeguard suspicion deadlines, reaping, push/pull merge with version checks,
and the target choices of the probe, gossip and push/pull loops. The I/O
layer feeds it messages and asks it what to send where.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from kapokmq.gossip.awareness import Awareness
from kapokmq.gossip.broadcast import BroadcastQueue
from kapokmq.gossip.codec import (
    Alive,
    Dead,
    PushNodeState,
    Suspect,
    encode,
    ip_from_bytes,
)
from kapokmq.gossip.config import GossipConfig
from kapokmq.gossip.suspicion import Suspicion, suspicion_timeout

log = logging.getLogger(__name__)


class NodeStatus(IntEnum):
    """memberlist node states (also their push/pull wire values)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Member:
    """A snapshot of one cluster member, as the public API reports it."""

    name: str
    addr: str
    port: int
    meta: bytes
    state: NodeStatus
    incarnation: int
    protocol: tuple[int, int, int]  # (PMin, PMax, PCur)
    delegate: tuple[int, int, int]  # (DMin, DMax, DCur)


class EventKind(StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    UPDATE = "update"


@dataclass(frozen=True, slots=True)
class NodeEvent:
    kind: EventKind
    member: Member


@dataclass(slots=True)
class GossipStats:
    """Counters of refused input (exported as metrics by the broker and the registry)."""

    packets_unencrypted: int = 0  # plaintext or undecryptable packets, a keyring being set
    packets_malformed: int = 0  # bad framing, CRC, LZW bombs, undecodable bodies, unknown types
    streams_refused: int = 0  # streams refused: encryption mismatch, limits, bad framing
    introductions_limited: int = 0  # new names dropped by the introduction rate limit

    def as_dict(self) -> dict[str, int]:
        return {
            "packets_unencrypted": self.packets_unencrypted,
            "packets_malformed": self.packets_malformed,
            "streams_refused": self.streams_refused,
            "introductions_limited": self.introductions_limited,
        }


class _TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second of ``clock``."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp: float | None = None

    def take(self) -> bool:
        now = self._clock()
        if self._stamp is not None:
            refill = (now - self._stamp) * self._rate
            self._tokens = min(self._burst, self._tokens + refill)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ProtocolMismatch(Exception):
    """A push/pull merge was refused by memberlist's verifyProtocol rule."""


@dataclass(slots=True)
class _Node:
    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: NodeStatus
    state_change: float
    vsn: bytes = bytes(6)

    def member(self) -> Member:
        v = self.vsn
        return Member(
            name=self.name,
            addr=ip_from_bytes(self.addr),
            port=self.port,
            meta=self.meta,
            state=self.state,
            incarnation=self.incarnation,
            protocol=(v[0], v[1], v[2]),
            delegate=(v[3], v[4], v[5]),
        )

    @property
    def pmax(self) -> int:
        return self.vsn[1]

    @property
    def dead_or_left(self) -> bool:
        return self.state in (NodeStatus.DEAD, NodeStatus.LEFT)


def _full_vsn(vsn: bytes) -> bytes:
    return (vsn + bytes(6))[:6]


class Membership:
    """The node table of one memberlist node and the rules that change it."""

    def __init__(
        self,
        config: GossipConfig,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.rng = rng or random.Random()
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.broadcasts = BroadcastQueue(config.retransmit_mult, self.estimated_size)
        self.leaving = False
        self.listener: Callable[[NodeEvent], None] | None = None
        self._meta = config.meta
        self._nodes: dict[str, _Node] = {}
        self._order: list[_Node] = []
        self._probe_index = 0
        self._suspicions: dict[str, tuple[Suspicion, float]] = {}
        self._incarnation = 0
        self._local_addr = b""
        self._local_port = 0
        self.stats = GossipStats()
        # One spoofed packet or push/pull must not add thousands of members: names never
        # seen before are let in at a bounded rate (docs/gossip.md, Bounded work).
        self._introductions = _TokenBucket(
            config.introduction_burst, config.introduction_rate, clock
        )

    # ------------------------------------------------------------ queries

    def estimated_size(self) -> int:
        """Nodes in the table, dead ones included until reaped (drives timeouts)."""
        return len(self._nodes)

    def get(self, name: str) -> Member | None:
        node = self._nodes.get(name)
        return node.member() if node else None

    def pmax_of(self, name: str) -> int:
        node = self._nodes.get(name)
        return node.pmax if node else 0

    def members(self) -> list[Member]:
        """Alive and suspect members, this node included (like Go's Members())."""
        return [n.member() for n in self._order if not n.dead_or_left]

    def all_nodes(self) -> list[Member]:
        return [n.member() for n in self._order]

    def local(self) -> Member:
        return self._nodes[self.name].member()

    def any_alive_peer(self) -> bool:
        return any(n.name != self.name and not n.dead_or_left for n in self._order)

    # ------------------------------------------------------------ local node

    def bootstrap(self, addr: bytes, port: int) -> None:
        """Create our own entry (incarnation 1) and queue its alive broadcast."""
        self._local_addr = addr
        self._local_port = port
        self.on_alive(self._alive_message(self._next_incarnation()), bootstrap=True)

    def update_meta(self, meta: bytes) -> None:
        """Publish new metadata with a higher incarnation (Go's UpdateNode)."""
        if len(meta) > 512:
            raise ValueError("node meta exceeds memberlist's 512-byte limit")
        self._meta = meta
        self.on_alive(self._alive_message(self._next_incarnation()), bootstrap=True)

    def leave(self, on_done: Callable[[], None] | None = None) -> None:
        """Announce our departure: dead{me, From: me}, which peers record as left."""
        self.leaving = True
        me = self._nodes[self.name]
        self.on_dead(Dead(me.incarnation, self.name, self.name), on_done=on_done)

    def _alive_message(self, incarnation: int) -> Alive:
        return Alive(
            incarnation=incarnation,
            node=self.name,
            addr=self._local_addr,
            port=self._local_port,
            meta=self._meta or None,
            vsn=self.config.vsn,
        )

    def _next_incarnation(self) -> int:
        self._incarnation += 1
        return self._incarnation

    def _refute(self, me: _Node, accused: int) -> None:
        inc = self._next_incarnation()
        if accused >= inc:
            self._incarnation = inc = accused + 1
        me.incarnation = inc
        self.awareness.apply_delta(1)
        msg = Alive(inc, me.name, me.addr, me.port, me.meta or None, me.vsn)
        self.broadcasts.queue(me.name, encode(msg))

    # ------------------------------------------------------------ message rules

    def on_alive(
        self, a: Alive, *, bootstrap: bool = False, on_done: Callable[[], None] | None = None
    ) -> None:
        if self.leaving and a.node == self.name:
            return
        if len(a.vsn) >= 3 and (a.vsn[0] == 0 or a.vsn[1] == 0 or a.vsn[0] > a.vsn[1]):
            log.warning("ignoring alive for %s: bad protocol versions %s", a.node, list(a.vsn))
            return
        addr = a.addr or b""
        node = self._nodes.get(a.node)
        updates_addr = False
        if node is None:
            if not bootstrap and not self._introduce():
                self.stats.introductions_limited += 1
                return
            vsn = _full_vsn(a.vsn) if len(a.vsn) > 5 else bytes(6)
            node = _Node(a.node, addr, a.port, a.meta or b"", 0, NodeStatus.DEAD, self.clock(), vsn)
            self._nodes[a.node] = node
            self._order.append(node)
            n = len(self._order) - 1
            offset = self.rng.randrange(n) if n > 0 else 0
            self._order[offset], self._order[n] = self._order[n], self._order[offset]
        elif node.addr != addr or node.port != a.port:
            reclaim = self.config.dead_node_reclaim_time
            can_reclaim = reclaim > 0 and self.clock() - node.state_change > reclaim
            if node.state == NodeStatus.LEFT or (node.state == NodeStatus.DEAD and can_reclaim):
                updates_addr = True
            else:
                log.error(
                    "conflicting address for %s: mine %s:%d, theirs %s:%d (state %s)",
                    a.node,
                    ip_from_bytes(node.addr),
                    node.port,
                    ip_from_bytes(addr),
                    a.port,
                    node.state,
                )
                return

        is_local = a.node == self.name
        if a.incarnation <= node.incarnation and not is_local and not updates_addr:
            return
        if a.incarnation < node.incarnation and is_local:
            return
        self._suspicions.pop(a.node, None)
        old_state, old_meta = node.state, node.meta

        if is_local and not bootstrap:
            if (
                a.incarnation == node.incarnation
                and (a.meta or b"") == node.meta
                and _full_vsn(a.vsn) == node.vsn
            ):
                return
            log.warning("refuting an alive message about ourselves (inc %d)", a.incarnation)
            self._refute(node, a.incarnation)
        else:
            self.broadcasts.queue(a.node, encode(a), on_done)
            if a.vsn:
                node.vsn = _full_vsn(a.vsn)
            node.incarnation = a.incarnation
            node.meta = a.meta or b""
            node.addr = addr
            node.port = a.port
            if node.state != NodeStatus.ALIVE:
                node.state = NodeStatus.ALIVE
                node.state_change = self.clock()

        if old_state in (NodeStatus.DEAD, NodeStatus.LEFT):
            self._emit(EventKind.JOIN, node)
        elif old_meta != node.meta:
            self._emit(EventKind.UPDATE, node)

    def _introduce(self) -> bool:
        """Whether a name never seen before may enter: a token of the rate limit, and room
        under ``max_nodes`` live nodes (counted only when the table, dead ones included,
        is that big; the bucket keeps this rare). Known nodes are never limited."""
        if not self._introductions.take():
            return False
        limit = self.config.max_nodes
        return len(self._nodes) < limit or sum(not n.dead_or_left for n in self._order) < limit

    def on_suspect(self, s: Suspect) -> None:
        node = self._nodes.get(s.node)
        if node is None or s.incarnation < node.incarnation:
            return
        running = self._suspicions.get(s.node)
        if running is not None:
            if running[0].confirm(s.from_):
                self.broadcasts.queue(s.node, encode(s))
            return
        if node.state != NodeStatus.ALIVE:
            return
        if node.name == self.name:
            self._refute(node, s.incarnation)
            return
        self.broadcasts.queue(s.node, encode(s))
        now = self.clock()
        node.incarnation = s.incarnation
        node.state = NodeStatus.SUSPECT
        node.state_change = now
        cfg = self.config
        n = self.estimated_size()
        k = cfg.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        min_ = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        max_ = cfg.suspicion_max_timeout_mult * min_
        self._suspicions[s.node] = (Suspicion(s.from_, k, min_, max_, now), now)

    def on_dead(self, d: Dead, on_done: Callable[[], None] | None = None) -> None:
        node = self._nodes.get(d.node)
        if node is None or d.incarnation < node.incarnation:
            return
        self._suspicions.pop(d.node, None)
        if node.dead_or_left:
            return
        if node.name == self.name and not self.leaving:
            self._refute(node, d.incarnation)
            return
        self.broadcasts.queue(d.node, encode(d), on_done)
        node.incarnation = d.incarnation
        node.state = NodeStatus.LEFT if d.node == d.from_ else NodeStatus.DEAD
        node.state_change = self.clock()
        self._emit(EventKind.LEAVE, node)

    def _emit(self, kind: EventKind, node: _Node) -> None:
        if self.listener is not None:
            self.listener(NodeEvent(kind, node.member()))

    # ------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When the earliest suspicion timer fires (clock time), if any."""
        if not self._suspicions:
            return None
        return min(s.deadline for s, _ in self._suspicions.values())

    def expire_suspicions(self) -> list[str]:
        """Declare dead every suspect whose timer ran out; returns their names."""
        now = self.clock()
        expired: list[str] = []
        for name, (susp, changed) in list(self._suspicions.items()):
            if susp.deadline > now:
                continue
            del self._suspicions[name]
            node = self._nodes.get(name)
            if node and node.state == NodeStatus.SUSPECT and node.state_change == changed:
                log.info("marking %s as failed, suspect timeout reached", name)
                self.on_dead(Dead(node.incarnation, name, self.name))
                expired.append(name)
        return expired

    # ------------------------------------------------------------ push/pull

    def push_pull_states(self) -> list[PushNodeState]:
        return [
            PushNodeState(n.name, n.addr, n.port, n.meta or None, n.incarnation, n.state, n.vsn)
            for n in self._order
        ]

    def verify_protocol(self, remote: list[PushNodeState]) -> None:
        """Refuse a merge whose versions don't overlap, exactly like Go does."""
        max_pmin = max_dmin = 0
        min_pmax = min_dmax = 255
        vectors = [_full_vsn(r.vsn) for r in remote if r.state == NodeStatus.ALIVE and r.vsn]
        vectors += [n.vsn for n in self._order if n.state == NodeStatus.ALIVE]
        for v in vectors:
            max_pmin, min_pmax = max(max_pmin, v[0]), min(min_pmax, v[1])
            max_dmin, min_dmax = max(max_dmin, v[3]), min(min_dmax, v[4])
        named = [(r.name, _full_vsn(r.vsn)) for r in remote]
        named += [(n.name, n.vsn) for n in self._order]
        for name, v in named:
            if not max_pmin <= v[2] <= min_pmax:
                raise ProtocolMismatch(
                    f"Node '{name}' protocol version ({v[2]}) is incompatible: "
                    f"[{max_pmin}, {min_pmax}]"
                )
            if not max_dmin <= v[5] <= min_dmax:
                raise ProtocolMismatch(
                    f"Node '{name}' delegate protocol version ({v[5]}) is incompatible: "
                    f"[{max_dmin}, {min_dmax}]"
                )

    def merge(self, remote: list[PushNodeState]) -> None:
        """Merge a peer's node table (after verify_protocol)."""
        self.verify_protocol(remote)
        self.apply_remote(remote)

    def apply_remote(self, remote: list[PushNodeState]) -> None:
        """The merge without the version check, for applying a big table in slices."""
        for r in remote:
            if r.state == NodeStatus.ALIVE:
                self.on_alive(Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn))
            elif r.state == NodeStatus.LEFT:
                self.on_dead(Dead(r.incarnation, r.name, r.name))
            elif r.state in (NodeStatus.DEAD, NodeStatus.SUSPECT):
                self.on_suspect(Suspect(r.incarnation, r.name, self.name))

    # ------------------------------------------------------------ target choice

    def next_probe_target(self) -> Member | None:
        """Round-robin over live peers; a wrap reaps old dead nodes and reshuffles."""
        checked = 0
        while checked < len(self._order):
            if self._probe_index >= len(self._order):
                self.reap()
                self._probe_index = 0
                checked += 1
                continue
            node = self._order[self._probe_index]
            self._probe_index += 1
            if node.name == self.name or node.dead_or_left:
                checked += 1
                continue
            return node.member()
        return None

    def reap(self) -> list[str]:
        """Forget nodes dead or left for longer than GossipToTheDeadTime, then shuffle."""
        now = self.clock()
        limit = self.config.gossip_to_the_dead_time
        gone = [n for n in self._order if n.dead_or_left and now - n.state_change > limit]
        for n in gone:
            del self._nodes[n.name]
        self._order = [n for n in self._order if n.name in self._nodes]
        self.rng.shuffle(self._order)
        return [n.name for n in gone]

    def _random(self, k: int, keep: Callable[[_Node], bool]) -> list[Member]:
        pool = [n for n in self._order if n.name != self.name and keep(n)]
        return [n.member() for n in self.rng.sample(pool, min(k, len(pool)))]

    def gossip_targets(self) -> list[Member]:
        now = self.clock()
        limit = self.config.gossip_to_the_dead_time

        def keep(n: _Node) -> bool:
            if n.state in (NodeStatus.ALIVE, NodeStatus.SUSPECT):
                return True
            return n.state == NodeStatus.DEAD and now - n.state_change <= limit

        return self._random(self.config.gossip_nodes, keep)

    def indirect_relays(self, target: str) -> list[Member]:
        return self._random(
            self.config.indirect_checks,
            lambda n: n.name != target and n.state == NodeStatus.ALIVE,
        )

    def push_pull_target(self) -> Member | None:
        picked = self._random(1, lambda n: n.state == NodeStatus.ALIVE)
        return picked[0] if picked else None

"""Gossip configuration with memberlist 0.2.2's default profiles.

KapokMQ's Go nodes run ``memberlist.DefaultLANConfig()`` unchanged, so
``GossipConfig.lan`` reproduces those timings exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kapokmq.gossip.crypto import Keyring

PROTOCOL_VERSION_MIN = 1
PROTOCOL_VERSION_MAX = 5


@dataclass(slots=True)
class GossipConfig:
    """Node identity, addresses and SWIM timings (seconds)."""

    name: str
    bind_addr: str = "0.0.0.0"
    bind_port: int = 7946  # 0 picks a free port (same number for UDP and TCP)
    advertise_addr: str | None = None
    advertise_port: int | None = None
    meta: bytes = b""
    protocol_version: int = 2
    # (DMin, DMax, DCur): (0, 0, 0) for KapokMQ nodes, (2, 5, 5) inside a serf cluster.
    delegate_versions: tuple[int, int, int] = (0, 0, 0)

    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 30.0
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    retransmit_mult: int = 4
    push_pull_interval: float = 30.0
    tcp_timeout: float = 10.0
    awareness_max_multiplier: int = 8
    udp_buffer_size: int = 1400
    enable_compression: bool = True
    dead_node_reclaim_time: float = 0.0
    disable_tcp_pings: bool = False

    # Encryption (memberlist's Keyring, GossipVerifyIncoming/Outgoing): with a keyring,
    # packets and streams are encrypted with its first key; verify_incoming refuses
    # plaintext, verify_outgoing sends encrypted (both off only while upshifting a live
    # cluster from plaintext to encrypted gossip).
    keyring: Keyring | None = None
    gossip_verify_incoming: bool = True
    gossip_verify_outgoing: bool = True
    # Bounded work (docs/gossip.md): a push/pull stream's bytes (memberlist's 20 MiB
    # maxPushStateBytes) and node states, how fast names never seen before are added
    # (a token bucket: a burst, then a rate per second), and how many live (alive or
    # suspect) nodes the table may hold before new names are refused.
    max_push_pull_bytes: int = 20 << 20
    max_push_pull_nodes: int = 1024
    introduction_burst: int = 256
    introduction_rate: float = 16.0
    max_nodes: int = 512

    @classmethod
    def lan(cls, name: str, **overrides: Any) -> GossipConfig:
        """memberlist ``DefaultLANConfig``."""
        return cls(name=name, **overrides)

    @classmethod
    def wan(cls, name: str, **overrides: Any) -> GossipConfig:
        """memberlist ``DefaultWANConfig``."""
        base: dict[str, Any] = {
            "tcp_timeout": 30.0,
            "suspicion_mult": 6,
            "push_pull_interval": 60.0,
            "probe_timeout": 3.0,
            "probe_interval": 5.0,
            "gossip_nodes": 4,
            "gossip_interval": 0.5,
            "gossip_to_the_dead_time": 60.0,
        }
        return cls(name=name, **(base | overrides))

    @classmethod
    def local(cls, name: str, **overrides: Any) -> GossipConfig:
        """memberlist ``DefaultLocalConfig`` (loopback, faster failure detection)."""
        base: dict[str, Any] = {
            "tcp_timeout": 1.0,
            "indirect_checks": 1,
            "retransmit_mult": 2,
            "suspicion_mult": 3,
            "push_pull_interval": 15.0,
            "probe_timeout": 0.2,
            "probe_interval": 1.0,
            "gossip_interval": 0.1,
            "gossip_to_the_dead_time": 15.0,
        }
        return cls(name=name, **(base | overrides))

    def replace(self, **changes: Any) -> GossipConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if not self.name:
            raise ValueError("gossip node name must not be empty")
        if len(self.meta) > 512:
            raise ValueError("node meta exceeds memberlist's 512-byte limit")
        if not PROTOCOL_VERSION_MIN <= self.protocol_version <= PROTOCOL_VERSION_MAX:
            raise ValueError(f"protocol version {self.protocol_version} out of range")
        if self.max_push_pull_bytes < 1024 or self.max_push_pull_nodes < 1:
            raise ValueError("push/pull limits too small (at least 1024 bytes and 1 node)")
        if self.max_nodes < 2:
            raise ValueError("max_nodes must be at least 2 (this node and one peer)")
        dmin, dmax, dcur = self.delegate_versions
        if not 0 <= dmin <= dcur <= dmax <= 255:
            raise ValueError(f"bad delegate versions {self.delegate_versions}")

    @property
    def vsn(self) -> bytes:
        """The version vector this node advertises."""
        protocol = (PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, self.protocol_version)
        return bytes((*protocol, *self.delegate_versions))

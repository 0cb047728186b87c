"""SWIM membership wire-compatible with hashicorp/memberlist v0.2.2.

Use ``Memberlist`` (alias ``GossipNode``) with a ``GossipConfig``; see
docs/gossip.md.
"""

from kapokmq.gossip.config import GossipConfig
from kapokmq.gossip.crypto import Keyring
from kapokmq.gossip.memberlist import GossipNode, JoinError, Memberlist
from kapokmq.gossip.serf import SERF_DELEGATE_VERSIONS, decode_tags, encode_tags
from kapokmq.gossip.state import (
    EventKind,
    GossipStats,
    Member,
    NodeEvent,
    NodeStatus,
    ProtocolMismatch,
)

__all__ = [
    "SERF_DELEGATE_VERSIONS",
    "EventKind",
    "GossipConfig",
    "GossipNode",
    "GossipStats",
    "JoinError",
    "Keyring",
    "Member",
    "Memberlist",
    "NodeEvent",
    "NodeStatus",
    "ProtocolMismatch",
    "decode_tags",
    "encode_tags",
]

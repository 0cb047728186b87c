"""Gossip settings a broker and the registry share: addresses, keyring, bounds."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kapokmq.config import ConfigError
from kapokmq.gossip.crypto import Keyring
from kapokmq.httpbase import is_loopback

log = logging.getLogger("kapokmq.cluster")

UNSPECIFIED = ("", "0.0.0.0", "::")


class GossipSection(Protocol):
    """The gossip keys of the broker's ``cluster:`` and the registry's ``registry:``."""

    gossipKey: str
    gossipVerifyIncoming: int
    gossipVerifyOutgoing: int
    gossipMaxPushBytes: int
    gossipMaxPushNodes: int
    gossipMaxNodes: int


def advertise_for(addr: str) -> str | None:
    """``server.addr`` is advertised as is, except an unspecified address (``0.0.0.0``):
    then the gossip library picks the routed local IP (Go would advertise 0.0.0.0)."""
    return None if addr in UNSPECIFIED else addr


def gossip_options(section: GossipSection, section_name: str) -> dict[str, Any]:
    """GossipConfig fields from the config keys; a bad key is a ConfigError naming it."""
    try:
        keyring = Keyring.parse(section.gossipKey)
    except ValueError as exc:
        raise ConfigError(f"{section_name}.gossipKey: {exc}") from None
    return {
        "keyring": keyring,
        "gossip_verify_incoming": section.gossipVerifyIncoming == 1,
        "gossip_verify_outgoing": section.gossipVerifyOutgoing == 1,
        "max_push_pull_bytes": section.gossipMaxPushBytes,
        "max_push_pull_nodes": section.gossipMaxPushNodes,
        "max_nodes": section.gossipMaxNodes,
    }


def warn_if_unencrypted(options: dict[str, Any], addr: str, section_name: str) -> None:
    """Gossip without a key on a reachable address lets anyone on the network join, list
    fake brokers and remove real ones (docs/cluster.md, Security): say so loudly."""
    if options["keyring"] is not None or is_loopback(addr):
        return
    log.warning(
        "!!! gossip on %s is NOT encrypted: anyone who can reach the gossip port can join "
        "the cluster, list fake brokers in GetNodes and make real ones disappear; "
        "set %s.gossipKey (base64 of 16, 24 or 32 random bytes) on every node !!!",
        addr,
        section_name,
    )

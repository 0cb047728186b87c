"""Node names and the GetNodes list shared by the registry and the brokers (docs/cluster.md "HTTP").

A broker's gossip name is ``mq:{addr}:{httpPort}`` and the registry's ``r:{addr}:{httpPort}``;
clients learn where to connect from the name alone, as in the original.
"""

from __future__ import annotations

from collections.abc import Iterable

from kapokmq.gossip import Member

BROKER_PREFIX = "mq"
REGISTRY_PREFIX = "r"


def broker_name(addr: str, http_port: int) -> str:
    return f"{BROKER_PREFIX}:{addr}:{http_port}"


def registry_name(addr: str, http_port: int) -> str:
    return f"{REGISTRY_PREFIX}:{addr}:{http_port}"


def parse_broker_name(name: str) -> dict[str, str] | None:
    """``{"Name", "Addr", "Port"}`` for a broker name, None for anything else."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != BROKER_PREFIX or not parts[1] or not parts[2].isdigit():
        return None
    return {"Name": name, "Addr": parts[1], "Port": parts[2]}


def broker_nodes(members: Iterable[Member]) -> list[dict[str, str]]:
    """The live brokers among ``members`` (alive or suspect), sorted by name.

    The original lists every member but the registry, in memberlist's order, and encodes
    an empty list as ``null``; we list only well-formed broker names and send ``[]``.
    """
    nodes = (parse_broker_name(m.name) for m in members)
    return sorted((n for n in nodes if n is not None), key=lambda n: n["Name"])

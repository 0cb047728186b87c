"""Node names and the GetNodes list shared by the registry and the brokers (docs/cluster.md "HTTP").

A broker's gossip name is ``mq:{addr}:{httpPort}`` and the registry's ``r:{addr}:{httpPort}``;
clients learn where to connect from the name alone, as in the original.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kapokmq.gossip import Member

BROKER_PREFIX = "mq"
REGISTRY_PREFIX = "r"
# what a broker's server.addr can be: a hostname (RFC 1123 labels) or an IPv4 address
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")


def broker_name(addr: str, http_port: int) -> str:
    return f"{BROKER_PREFIX}:{addr}:{http_port}"


def registry_name(addr: str, http_port: int) -> str:
    return f"{REGISTRY_PREFIX}:{addr}:{http_port}"


def parse_broker_name(name: str) -> dict[str, str] | None:
    """``{"Name", "Addr", "Port"}`` for a broker name, None for anything else: a client
    connects to what is listed, so the address must be a hostname or IPv4 address and the
    port a number from 1 to 65535 (an outsider's odd names are never listed)."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != BROKER_PREFIX:
        return None
    _, addr, port = parts
    if not _HOST.fullmatch(addr) or not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        return None
    return {"Name": name, "Addr": addr, "Port": port}


def broker_nodes(members: Iterable[Member]) -> list[dict[str, str]]:
    """The live brokers among ``members`` (alive or suspect), sorted by name.

    The original lists every member but the registry, in memberlist's order, and encodes
    an empty list as ``null``; we list only well-formed broker names and send ``[]``.
    """
    nodes = (parse_broker_name(m.name) for m in members)
    return sorted((n for n in nodes if n is not None), key=lambda n: n["Name"])

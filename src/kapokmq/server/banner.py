"""The start-up banner: what a new user needs to know on one screen of stderr.

Version, where the configuration came from, the URLs, persistence and cluster role, and a
warning when the secret key is the well-known default (louder off loopback, B8 in
docs/protocol.md's differences table). The ``listening on <url>`` line is what scripts and the
test harness wait for: it stays the banner's last line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kapokmq import __version__
from kapokmq.cluster.node import joins_cluster
from kapokmq.config import Config, Persistence, PushType
from kapokmq.httpbase import is_loopback

log = logging.getLogger("kapokmq")

DEFAULT_KEY = "test"


def _browsable(addr: str) -> str:
    """A host a browser on this machine can open (0.0.0.0 is not one)."""
    if addr in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{addr}]" if ":" in addr else addr


def persistence(config: Config) -> str:
    mq = config.mq
    where = Path(mq.dataDir).resolve()
    if mq.isPersistent == Persistence.SNAPSHOTS:
        return f"snapshots every {mq.persistentTime} s in {where}"
    if mq.isPersistent == Persistence.WAL:
        return f"write-ahead log + snapshots (fsync {mq.fsync}) in {where}"
    return "memory only (mq.isPersistent 0): messages are lost on restart"


def role(config: Config, gossip_port: int | None = None) -> str:
    """``gossip_port``: the port bound, which ``cluster.gossipPort: 0`` (ephemeral) leaves
    to the kernel."""
    parts = []
    cluster, sync = config.cluster, config.sync
    if joins_cluster(config):
        port = cluster.gossipPort if gossip_port is None else gossip_port
        parts.append(
            f"cluster member (registry {cluster.registryAddr}:{cluster.registryGossipPort}, "
            f"gossip port {port})"
        )
    if sync.isSync and sync.isSlave:
        parts.append(
            f"slave of {sync.masterProtocol}://{sync.masterAddr}:{sync.masterPort} "
            "(pushes only while the master is down)"
        )
    elif sync.isSync:
        parts.append("master (slaves follow it at /Sync/Conn)")
    return ", ".join(parts) or "standalone"


def shown_addr(addr: str) -> str:
    """How the listen address is named: an empty ``server.addr`` (the original's packaged
    ``addr:``, Gin's ``:port``) listens on every interface, as 0.0.0.0 does."""
    return addr or "0.0.0.0"


def banner_lines(config: Config, port: int, tls: bool, gossip_port: int | None = None) -> list[str]:
    """``port`` and ``gossip_port`` are the ports bound (``0`` in the yaml means ephemeral)."""
    scheme = "https" if tls else "http"
    addr = shown_addr(config.server.addr)
    pubsub = config.mq.pushType == PushType.PUBLISH_SUBSCRIBE
    mode = "publish/subscribe" if pubsub else "point-to-point"
    host = f"{_browsable(addr)}:{port}"
    console = f"{scheme}://{host}/"
    ws = "wss" if tls else "ws"
    login = "mq.consoleKey" if config.mq.consoleKey else "the secret key"
    return [
        f"kapokmq {__version__}",
        f"  config:      {config.source}",
        f"  console:     {console} (log in with {login})",
        f"  websocket:   {ws}://{host}/Producers/Conn/{{topic}}/{{id}} and /Consumers/Conn/...",
        f"  persistence: {persistence(config)}",
        f"  role:        {role(config, gossip_port)}",
        f"kapokmq listening on {scheme}://{addr}:{port} (pushType {mode})",
    ]


def key_warning(config: Config) -> str | None:
    """A warning about a well-known or empty key; ``!!!`` when others can reach the port."""
    key = config.mq.secretKey
    if key not in (DEFAULT_KEY, ""):
        return None
    what = "the default secret key 'test'" if key == DEFAULT_KEY else "an empty secret key"
    addr = shown_addr(config.server.addr)
    if is_loopback(addr):
        return (
            f"using {what}: fine on this machine; set mq.secretKey (--secret-key) before "
            "opening the port to other machines"
        )
    return (
        f"!!! listening on {addr} with {what}: anyone who can reach this port can read and "
        "write your queues; set mq.secretKey !!!"
    )


def log_banner(config: Config, port: int, tls: bool, gossip_port: int | None = None) -> None:
    """The banner on stderr, the key warning just before its last (``listening``) line."""
    *head, listening = banner_lines(config, port, tls, gossip_port)
    for line in head:
        log.info("%s", line)
    warning = key_warning(config)
    if warning is not None:
        log.warning("%s", warning)
    log.info("%s", listening)

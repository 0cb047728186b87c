"""A broker's cluster membership (``cluster.isCluster: 1``, docs/cluster.md).

The broker runs a gossip node named ``mq:{server.addr}:{httpPort}`` bound to
``server.addr:cluster.gossipPort`` and joins the registry at
``cluster.registryAddr:cluster.registryGossipPort``. Unlike the original, which panics
when the registry is down, it keeps serving and retries the join with exponential
backoff; it also rejoins when the registry disappears later. While connected it repeats
the join's push/pull with the registry every ``resync_interval`` seconds: a registry that
was restarted quickly on the same address answers pings under the same name, so the
brokers never see it fail, yet its new member table is empty; memberlist's own periodic
push/pull would fix that only when it happens to pick the registry (every 30 s at best).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from kapokmq.cluster.gossip_addr import advertise_for, gossip_options, warn_if_unencrypted
from kapokmq.cluster.nodes import REGISTRY_PREFIX, broker_name, broker_nodes
from kapokmq.config import Config, ConfigError
from kapokmq.gossip import GossipConfig, JoinError, Memberlist

log = logging.getLogger("kapokmq.cluster")


class ClusterNode:
    """Membership of one broker; ``nodes()`` is what ``/Console/GetNodes`` returns."""

    def __init__(
        self,
        config: Config,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 5.0,
        check_interval: float = 1.0,
        resync_interval: float = 10.0,
    ) -> None:
        self.config = config
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.check_interval = check_interval
        self.resync_interval = resync_interval
        try:
            self.registry_port = int(config.cluster.registryGossipPort)
        except ValueError:
            raise ConfigError(
                "cluster.registryGossipPort must be a port number, "
                f"got {config.cluster.registryGossipPort!r}"
            ) from None
        self.registry_host = config.cluster.registryAddr
        self.gossip_options = gossip_options(config.cluster, "cluster")
        self.gossip: Memberlist | None = None
        self._task: asyncio.Task[None] | None = None
        self._registry_ips: set[str] = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self, http_port: int) -> None:
        """Bind the gossip port and start joining the registry in the background."""
        addr = self.config.server.addr
        gossip = Memberlist(
            GossipConfig.lan(
                broker_name(addr, http_port),
                bind_addr=addr,
                bind_port=self.config.cluster.gossipPort,
                advertise_addr=advertise_for(addr),
                **self.gossip_options,
            )
        )
        await gossip.start()
        warn_if_unencrypted(self.gossip_options, addr, "cluster")
        self.gossip = gossip
        self._task = asyncio.create_task(self._membership_loop(), name="cluster-join")

    async def stop(self, leave_timeout: float = 2.0) -> None:
        """Leave gracefully (peers see the node as *left* at once), then close the sockets."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        gossip, self.gossip = self.gossip, None
        if gossip is None:
            return
        try:
            left = await gossip.leave(timeout=leave_timeout)
            log.info("left the cluster" if left else "leave broadcast not confirmed in time")
        except Exception:
            log.exception("leaving the cluster failed")
        await gossip.shutdown()

    # ------------------------------------------------------------ queries

    @property
    def gossip_port(self) -> int:
        """The gossip port in use: the one bound once started (``gossipPort: 0`` is ephemeral)."""
        return self.config.cluster.gossipPort if self.gossip is None else self.gossip.port

    def nodes(self) -> list[dict[str, str]]:
        """Live brokers ``[{"Name","Addr","Port"}]``, this one included."""
        return [] if self.gossip is None else broker_nodes(self.gossip.members())

    def refused(self) -> dict[str, int]:
        """Counters of gossip input dropped by this broker (for /metrics)."""
        return {} if self.gossip is None else self.gossip.stats.as_dict()

    def connected(self) -> bool:
        """True while the registry (or the configured seed) is an alive member."""
        gossip = self.gossip
        if gossip is None:
            return False
        for m in gossip.members():
            if m.name == gossip.name:
                continue
            if m.name.startswith(REGISTRY_PREFIX + ":"):
                return True
            if m.port == self.registry_port and m.addr in self._registry_ips:
                return True
        return False

    # ------------------------------------------------------------ joining

    async def _resolve_registry(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.registry_host, self.registry_port, type=socket.SOCK_STREAM
            )
        except OSError:
            return
        self._registry_ips = {str(info[4][0]) for info in infos}

    async def _membership_loop(self) -> None:
        delay = self.initial_backoff
        attempt = 0
        target = f"{self.registry_host}:{self.registry_port}"
        loop = asyncio.get_running_loop()
        last_sync = loop.time()
        while self.gossip is not None:
            if self.connected():
                delay, attempt = self.initial_backoff, 0
                if loop.time() - last_sync >= self.resync_interval:
                    last_sync = loop.time()
                    with contextlib.suppress(JoinError, OSError):
                        await self.gossip.join([(self.registry_host, self.registry_port)])
                await asyncio.sleep(self.check_interval)
                continue
            attempt += 1
            await self._resolve_registry()
            try:
                await self.gossip.join([(self.registry_host, self.registry_port)])
            except (JoinError, OSError) as exc:
                log.warning(
                    "cluster: join attempt %d to registry %s failed (%s); retrying in %.1fs",
                    attempt,
                    target,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            log.info(
                "cluster: joined through registry %s as %s (attempt %d, %d members)",
                target,
                self.gossip.name,
                attempt,
                self.gossip.num_members(),
            )
            delay, attempt = self.initial_backoff, 0
            last_sync = loop.time()
            await asyncio.sleep(self.check_interval)


def joins_cluster(config: Config) -> bool:
    """Whether the broker joins the cluster: ``cluster.isCluster: 1``, unless it is a slave
    of master-slave sync, which stays out of the cluster, as in the original."""
    return config.cluster.isCluster == 1 and not (
        config.sync.isSync == 1 and config.sync.isSlave == 1
    )


def cluster_node_for(config: Config) -> ClusterNode | None:
    """The broker's cluster node, or None when it does not join (`joins_cluster`)."""
    if joins_cluster(config):
        return ClusterNode(config)
    if config.cluster.isCluster == 1:
        log.info("cluster: this broker is a sync slave; it does not join the cluster")
    return None

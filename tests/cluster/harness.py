"""A registry process and a registry + brokers cluster on 127.0.0.1, for the cluster tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from tests.gossip.util import free_port
from tests.harness import SECRET, BrokerProcess


class RegistryProcess(BrokerProcess):
    """``kapokmq registry``; its gossip port is ``settings["registry.gossipPort"]``."""

    SUBCOMMAND = "registry"

    @property
    def gossip_port(self) -> int:
        return int(str(self.settings["registry.gossipPort"]))


def registry_process(cwd: Path, gossip_port: int | None = None) -> RegistryProcess:
    port = gossip_port or free_port()
    return RegistryProcess(settings={"registry.gossipPort": port}, cwd=cwd)


def cluster_broker(
    cwd: Path, registry_gossip_port: int, settings: dict[str, object] | None = None
) -> BrokerProcess:
    """A broker with cluster.isCluster=1, its own free gossip port, joining the registry."""
    base: dict[str, object] = {
        "cluster.isCluster": 1,
        "cluster.gossipPort": free_port(),
        "cluster.registryAddr": "127.0.0.1",
        "cluster.registryGossipPort": registry_gossip_port,
    }
    return BrokerProcess(settings=base | (settings or {}), cwd=cwd)


def node_name(broker: BrokerProcess) -> str:
    return f"mq:127.0.0.1:{broker.port}"


async def post_nodes(
    session: aiohttp.ClientSession, url: str, secret: str = SECRET
) -> list[dict[str, str]] | None:
    """The GetNodes answer of ``url`` (registry or broker); None if it can't be reached."""
    try:
        async with session.post(
            url, headers={"secretKey": secret}, timeout=aiohttp.ClientTimeout(total=3)
        ) as resp:
            body = await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        return None
    decoded = orjson.loads(body) if body else None
    assert decoded is None or isinstance(decoded, list), decoded
    return decoded


def registry_nodes_url(registry: BrokerProcess) -> str:
    return registry.http + "/Registry/GetNodes"


def broker_nodes_url(broker: BrokerProcess) -> str:
    return broker.http + "/Console/GetNodes"


@dataclass
class NodeWatcher:
    """Poll a GetNodes URL and wait for the set of names to satisfy a condition."""

    session: aiohttp.ClientSession
    url: str
    last: set[str] = field(default_factory=set)

    async def names(self) -> set[str] | None:
        nodes = await post_nodes(self.session, self.url)
        if nodes is None:
            return None
        self.last = {n["Name"] for n in nodes}
        return self.last

    async def wait(
        self, predicate: Callable[[set[str]], bool], timeout: float, step: float = 0.05
    ) -> float:
        """Seconds until ``predicate(names)`` held; AssertionError after ``timeout``."""
        start = time.monotonic()
        while True:
            names = await self.names()
            if names is not None and predicate(names):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"{self.url}: condition not met within {timeout}s; last nodes {self.last}"
                )
            await asyncio.sleep(step)

    async def wait_for(self, expected: Sequence[str] | set[str], timeout: float) -> float:
        want = set(expected)
        return await self.wait(lambda names: names == want, timeout)

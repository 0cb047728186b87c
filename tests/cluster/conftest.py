"""Fixtures for the loopback cluster tests: a registry and brokers as real processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.cluster.harness import RegistryProcess, cluster_broker, registry_process
from tests.harness import BrokerProcess


@dataclass
class Cluster:
    """Processes started by a test; all are stopped at teardown."""

    root: Path
    registry: RegistryProcess
    brokers: list[BrokerProcess] = field(default_factory=list)
    _count: int = 0

    def new_broker(self, settings: dict[str, object] | None = None) -> BrokerProcess:
        """A broker (not started) joining the registry, with its own working directory."""
        self._count += 1
        cwd = self.root / f"broker{self._count}"
        cwd.mkdir()
        broker = cluster_broker(cwd, self.registry.gossip_port, settings)
        self.brokers.append(broker)
        return broker

    async def add_brokers(
        self, count: int, settings: dict[str, object] | None = None
    ) -> list[BrokerProcess]:
        """Start ``count`` brokers in parallel (a Python start-up takes a second or two)."""
        brokers = [self.new_broker(settings) for _ in range(count)]
        await asyncio.gather(*(asyncio.to_thread(b.start) for b in brokers))
        return brokers

    def stop_all(self) -> None:
        for broker in self.brokers:
            broker.cleanup()
        self.registry.cleanup()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A started registry with no brokers yet; ``cluster.add_broker()`` adds them."""
    reg_dir = tmp_path / "registry"
    reg_dir.mkdir()
    registry = registry_process(reg_dir)
    c = Cluster(tmp_path, registry)
    try:
        registry.start()
        yield c
    finally:
        c.stop_all()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session

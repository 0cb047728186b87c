"""The registry and a broker against a plain memberlist 0.2.2 Go node named like a Go broker.

The Go node (tests/gossip/gonode) runs DefaultLANConfig with no delegate, as KapokMQ's Go
brokers do, and is named ``mq:127.0.0.1:{its gossip port}``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.harness import (
    NodeWatcher,
    broker_nodes_url,
    cluster_broker,
    node_name,
    registry_nodes_url,
    registry_process,
)
from tests.gossip.util import GoNode, build_gonode, go_available, wait_until

_reason = go_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def gonode_binary() -> Path:
    return build_gonode()


@pytest.mark.timeout(180)  # the first run compiles the Go node (then cached)
async def test_go_broker_joins_the_python_registry(
    gonode_binary: Path, cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    (py_broker,) = await cluster.add_brokers(1)
    go = GoNode(gonode_binary)
    await go.start(join=f"127.0.0.1:{cluster.registry.gossip_port}")
    try:
        everyone = {go.name, node_name(py_broker)}
        reg = NodeWatcher(http, registry_nodes_url(cluster.registry))
        took = await reg.wait_for(everyone, 10)
        print(f"Go node listed by the Python registry {took:.2f}s after it started")
        nodes = await reg.names()
        assert nodes == everyone
        await NodeWatcher(http, broker_nodes_url(py_broker)).wait_for(everyone, 10)
        # The Go node sees the registry and the Python broker.
        await wait_until(lambda: {n.split(":")[0] for n in go.members()} == {"mq", "r"}, 10)
        assert len(go.members()) == 3
        # A killed Go node disappears from GetNodes.
        await go.stop()
        took = await reg.wait_for({node_name(py_broker)}, 10)
        print(f"killed Go node gone from GetNodes after {took:.2f}s")
    finally:
        await go.stop()
    assert "[ERR]" not in go.log_text(), go.log_text()[-3000:]


@pytest.mark.timeout(180)
async def test_python_broker_joins_a_go_seed(
    gonode_binary: Path, cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    seed = GoNode(gonode_binary)
    await seed.start()
    try:
        await wait_until(lambda: seed.members() == {seed.name}, 10)
        # The broker's "registry" is the Go seed's gossip port.
        broker = cluster.new_broker({"cluster.registryGossipPort": seed.port}).start()
        everyone = {seed.name, node_name(broker)}
        took = await NodeWatcher(http, broker_nodes_url(broker)).wait_for(everyone, 10)
        print(f"Python broker joined the Go seed; GetNodes lists both after {took:.2f}s")
        await wait_until(lambda: seed.members() == everyone, 10)
        # SIGTERM: the Go seed sees a graceful leave at once.
        assert broker.stop() == 0
        await wait_until(lambda: seed.members() == {seed.name}, 2)
    finally:
        await seed.stop()
    assert "[ERR]" not in seed.log_text(), seed.log_text()[-3000:]


KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.timeout(120)
async def test_encrypted_cluster_admits_only_go_nodes_with_the_key(
    gonode_binary: Path, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    registry = registry_process(tmp_path)
    registry.settings["registry.gossipKey"] = KEY
    broker = cluster_broker(tmp_path, registry.gossip_port, {"cluster.gossipKey": KEY})
    bad_key = cluster_broker(
        tmp_path,
        registry.gossip_port,
        {"cluster.gossipKey": "c2hvcnQ="},  # 5 bytes
    )
    keyed, keyless = GoNode(gonode_binary), GoNode(gonode_binary)
    try:
        registry.start()
        broker.start()
        with pytest.raises(RuntimeError, match="gossipKey: gossip key size must be 16, 24 or 32"):
            bad_key.start()
        reg = NodeWatcher(http, registry_nodes_url(registry))
        await reg.wait_for({node_name(broker)}, 10)
        await keyless.start(join=f"127.0.0.1:{registry.gossip_port}")
        assert await keyless.exit_code(15) != 0
        assert "Remote state is encrypted" in keyless.log_text()
        await keyed.start(join=f"127.0.0.1:{registry.gossip_port}", keys=KEY)
        everyone = {keyed.name, node_name(broker)}
        await reg.wait_for(everyone, 10)
        await NodeWatcher(http, broker_nodes_url(broker)).wait_for(everyone, 10)
        await wait_until(lambda: len(keyed.members()) == 3, 10)
        async with http.get(registry.http + "/healthz") as resp:
            refused = (await resp.json())["gossipRefused"]
        assert refused["streams_refused"] >= 1
        assert "NOT encrypted" not in registry.log() + broker.log()
    finally:
        await keyed.stop()
        await keyless.stop()
        for proc in (bad_key, broker, registry):
            proc.cleanup()
    assert "[ERR]" not in keyed.log_text(), keyed.log_text()[-3000:]

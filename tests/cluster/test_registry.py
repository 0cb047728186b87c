"""Loopback cluster: a registry and three brokers as real processes (issue 6, docs/cluster.md)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.harness import (
    NodeWatcher,
    broker_nodes_url,
    node_name,
    post_nodes,
    registry_nodes_url,
)
from tests.harness import BrokerProcess

# docs/cluster.md "HTTP": the registry answers with exactly the broker's CORS headers.
CORS_EXPECTED = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Content-Type,AccessToken,X-CSRF-Token, Authorization, Token, secretKey"
    ),
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Expose-Headers": (
        "Content-Length, Access-Control-Allow-Origin, Access-Control-Allow-Headers, Content-Type"
    ),
    "Access-Control-Allow-Credentials": "true",
}


def watcher(
    http: aiohttp.ClientSession, target: BrokerProcess, registry: bool = False
) -> NodeWatcher:
    url = registry_nodes_url(target) if registry else broker_nodes_url(target)
    return NodeWatcher(http, url)


@pytest.mark.timeout(60)
async def test_get_nodes_lists_every_broker(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    brokers = await cluster.add_brokers(3)
    names = {node_name(b) for b in brokers}
    reg = watcher(http, cluster.registry, registry=True)
    took = await reg.wait_for(names, 10)
    print(f"registry lists all 3 brokers {took:.2f}s after they started")
    nodes = await post_nodes(http, registry_nodes_url(cluster.registry))
    assert nodes is not None
    for b in brokers:
        assert {"Name": node_name(b), "Addr": "127.0.0.1", "Port": str(b.port)} in nodes
    # Every broker's /Console/GetNodes gives the same list (the registry excluded).
    for b in brokers:
        await watcher(http, b).wait_for(names, 10)
        assert await post_nodes(http, broker_nodes_url(b)) == nodes


@pytest.mark.timeout(30)
async def test_registry_key_and_cors(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    url = registry_nodes_url(cluster.registry)
    async with http.post(url, headers={"secretKey": "wrong"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"code": -1, "msg": "Secret key matching error"}
        for name, value in CORS_EXPECTED.items():
            assert resp.headers[name] == value
    async with http.post(url) as resp:
        assert await resp.json() == {"code": -1, "msg": "Secret key matching error"}
    async with http.post(url, headers={"SECRETKEY": "test"}) as resp:
        assert await resp.json() == []  # no broker yet (the original sends null)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    async with http.options(url) as resp:
        assert resp.status == 204
        for name, value in CORS_EXPECTED.items():
            assert resp.headers[name] == value
    async with http.get(url) as resp:
        assert resp.status == 404
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    async with http.post(cluster.registry.http + "/nope") as resp:
        assert resp.status == 404
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    # the default key: a foreign web page is refused (docs/protocol.md "Origins"), with
    # CORS headers; its preflight and the registry's own origin are answered as before
    evil = {"Origin": "http://evil.example", "secretKey": "test"}
    async with http.post(url, headers=evil) as resp:
        assert resp.status == 403
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    async with http.options(url, headers=evil) as resp:
        assert resp.status == 204
    async with http.post(url, headers={**evil, "Origin": cluster.registry.http}) as resp:
        assert await resp.json() == []


async def test_registry_throttles_wrong_keys_per_address(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """As a broker: 20 wrong keys within 60 s are answered at once, then one a second;
    the right key from the same address is never held up (docs/protocol.md "HTTP API")."""
    url = registry_nodes_url(cluster.registry)

    async def wrong() -> None:
        async with http.post(url, headers={"secretKey": "guess"}) as resp:
            assert (await resp.json())["code"] == -1

    for _ in range(20):
        await wrong()
    started = time.monotonic()
    await asyncio.gather(wrong(), wrong(), wrong())
    assert time.monotonic() - started >= 1.9  # three answers spaced a second apart
    started = time.monotonic()
    async with http.post(url, headers={"secretKey": "test"}) as resp:
        assert await resp.json() == []
    assert time.monotonic() - started < 0.5


@pytest.mark.timeout(90)
async def test_kill_restart_and_graceful_stop(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    a, b, c = await cluster.add_brokers(3)
    everyone = {node_name(x) for x in (a, b, c)}
    reg = watcher(http, cluster.registry, registry=True)
    await reg.wait_for(everyone, 10)
    via_b = watcher(http, b)
    await via_b.wait_for(everyone, 10)

    # SIGKILL: failure detection by the registry (and the other brokers) within 10 s.
    a.kill()
    killed = time.monotonic()
    took = await reg.wait(lambda names: node_name(a) not in names, 10)
    print(f"SIGKILLed broker gone from the registry's GetNodes after {took:.2f}s")
    assert reg.last == everyone - {node_name(a)}
    await via_b.wait(
        lambda names: node_name(a) not in names, max(1.0, 12 - (time.monotonic() - killed))
    )

    # Restart on the same HTTP and gossip ports: back within 2 s of listening again.
    a.start()
    took = await reg.wait_for(everyone, 2)
    print(f"restarted broker listed again {took:.2f}s after it was listening")
    await via_b.wait_for(everyone, 2)

    # SIGTERM: a graceful leave, seen at once.
    sent = time.monotonic()
    assert c.stop() == 0
    stopped = time.monotonic() - sent
    took = await reg.wait(lambda names: node_name(c) not in names, 1.0)
    print(f"SIGTERMed broker exited after {stopped:.2f}s, gone from GetNodes {took:.2f}s later")
    assert reg.last == everyone - {node_name(c)}
    assert "left the cluster" in c.log()
    await via_b.wait(lambda names: node_name(c) not in names, 1.0)


@pytest.mark.timeout(60)
async def test_broker_started_before_the_registry_joins_later(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    cluster.registry.stop()  # the fixture's registry: stopped, then started again below
    broker = cluster.new_broker().start()
    name = node_name(broker)
    # It keeps serving and retries with backoff, logging each attempt.
    deadline = time.monotonic() + 10
    while broker.log().count("join attempt") < 2:
        assert time.monotonic() < deadline, broker.log()
        await asyncio.sleep(0.05)
    assert broker.proc is not None and broker.proc.poll() is None
    async with http.post(broker.http + "/Console/Ping", headers={"secretKey": "test"}) as resp:
        assert await resp.json() == {"code": 0}
    assert await post_nodes(http, broker_nodes_url(broker)) == [
        {"Name": name, "Addr": "127.0.0.1", "Port": str(broker.port)}
    ]
    cluster.registry.start()
    took = await watcher(http, cluster.registry, registry=True).wait_for({name}, 10)
    print(f"broker joined {took:.2f}s after the registry came up")
    assert "joined through registry" in broker.log()


@pytest.mark.timeout(90)
async def test_brokers_rejoin_a_restarted_registry(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """A registry restart loses its table; the brokers notice and join again."""
    brokers = await cluster.add_brokers(2)
    names = {node_name(b) for b in brokers}
    reg = watcher(http, cluster.registry, registry=True)
    await reg.wait_for(names, 10)
    cluster.registry.kill()
    cluster.registry.start()
    took = await reg.wait_for(names, 20)
    print(f"restarted registry lists both brokers again after {took:.2f}s")

"""`kapokmq registry` configuration and `kapokmq nodes`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from kapokmq.cluster.nodes import parse_broker_name
from kapokmq.cluster.settings import load_registry_config
from kapokmq.config import ConfigError
from tests.cluster.conftest import Cluster
from tests.cluster.harness import NodeWatcher, node_name, registry_nodes_url


def test_registry_defaults_yaml_env_and_overrides(tmp_path: Path) -> None:
    config = load_registry_config(environ={})
    assert (config.server.addr, config.server.port) == ("127.0.0.1", 8031)
    assert (config.registry.secretKey, config.registry.gossipPort) == ("test", 8041)
    # Serena's own application.yaml reads unchanged.
    path = tmp_path / "application.yaml"
    path.write_text(
        "server:\n  addr: 0.0.0.0\n  port: 9031\nregistry:\n  secretKey: s3\n  gossipPort: 9041\n"
    )
    config = load_registry_config(path, environ={"KAPOKMQ_REGISTRY_SECRETKEY": "env"})
    assert (config.server.addr, config.server.port) == ("0.0.0.0", 9031)
    assert (config.registry.secretKey, config.registry.gossipPort) == ("env", 9041)
    config = load_registry_config(path, environ={}, overrides={"registry.gossipPort": "9999"})
    assert config.registry.gossipPort == 9999
    with pytest.raises(ConfigError):
        load_registry_config(path, environ={}, overrides={"registry.gossipPort": "x"})
    with pytest.raises(ConfigError):
        load_registry_config(path, environ={}, overrides={"mq.secretKey": "x"})


def test_broker_yaml_in_cwd_is_not_taken_for_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "application.yaml").write_text("server:\n  port: 8011\nmq:\n  secretKey: k\n")
    monkeypatch.chdir(tmp_path)
    assert load_registry_config(environ={}).server.port == 8031
    registry_yaml = "server:\n  port: 8032\nregistry:\n  gossipPort: 1\n"
    (tmp_path / "application.yaml").write_text(registry_yaml)
    assert load_registry_config(environ={}).server.port == 8032


def test_broker_names() -> None:
    assert parse_broker_name("mq:10.0.0.5:8011") == {
        "Name": "mq:10.0.0.5:8011",
        "Addr": "10.0.0.5",
        "Port": "8011",
    }
    assert parse_broker_name("mq:broker-1.example.com:80") is not None
    assert parse_broker_name("mq:0.0.0.0:8011") is not None  # the original's own naming
    odd = (
        "r:127.0.0.1:8031",
        "mq:127.0.0.1",
        "mq:a:b",
        "serf-node",
        "mq::8011",
        "mq:10.0.0.5:99999",
        "mq:10.0.0.5:0",
        "mq:10.0.0.5:\u0661\u0662",  # digits, but not ASCII ones
        "mq:<script>:8011",
        "mq:evil host:8011",
        "mq:-x:8011",
        "mq:10.0.0.5:8011\n",
        "MQ:10.0.0.5:8011",
    )
    for name in odd:
        assert parse_broker_name(name) is None, name


def kapokmq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kapokmq", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
    )


@pytest.mark.timeout(60)
async def test_nodes_command(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    (broker,) = await cluster.add_brokers(1)
    await NodeWatcher(http, registry_nodes_url(cluster.registry)).wait_for({node_name(broker)}, 10)
    out = kapokmq("nodes", "--registry", cluster.registry.http, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {"Name": node_name(broker), "Addr": "127.0.0.1", "Port": str(broker.port)}
    ]
    out = kapokmq("nodes", "--registry", cluster.registry.http.removeprefix("http://"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split() == [node_name(broker), broker.http]
    out = kapokmq("nodes", "--registry", cluster.registry.http, "--secret-key", "nope")
    assert out.returncode == 1 and "secret key" in out.stderr
    cluster.registry.stop()
    out = kapokmq("nodes", "--registry", cluster.registry.http, "--timeout", "2")
    assert out.returncode == 1 and "cannot reach" in out.stderr

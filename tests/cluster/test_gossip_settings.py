"""Gossip keys and bounds from the config: broker and registry, yaml/env/flags."""

from __future__ import annotations

import base64
import logging

import pytest

from kapokmq.cluster.gossip_addr import gossip_options, warn_if_unencrypted
from kapokmq.cluster.settings import load_registry_config
from kapokmq.config import ConfigError, load_config

K1 = base64.b64encode(bytes(16)).decode()
K2 = base64.b64encode(bytes(range(32))).decode()


def test_broker_key_from_env_and_flag_override() -> None:
    config = load_config(environ={"KAPOKMQ_CLUSTER_GOSSIPKEY": K1})
    ring = gossip_options(config.cluster, "cluster")["keyring"]
    assert ring is not None and ring.keys == (bytes(16),)
    config = load_config(
        environ={"KAPOKMQ_CLUSTER_GOSSIPKEY": K1}, overrides={"cluster.gossipKey": f"{K2},{K1}"}
    )
    ring = gossip_options(config.cluster, "cluster")["keyring"]
    assert ring is not None and ring.primary == bytes(range(32)) and len(ring.keys) == 2
    assert "gossipKey" not in config.console_view()  # a secret, like secretKey


def test_registry_key_and_limits() -> None:
    config = load_registry_config(
        environ={"KAPOKMQ_REGISTRY_GOSSIPKEY": K2},
        overrides={"registry.gossipMaxPushNodes": "50", "registry.gossipVerifyIncoming": "0"},
    )
    options = gossip_options(config.registry, "registry")
    assert options["keyring"].primary == bytes(range(32))
    assert options["max_push_pull_nodes"] == 50
    assert options["max_push_pull_bytes"] == 20 << 20
    assert options["gossip_verify_incoming"] is False
    assert options["gossip_verify_outgoing"] is True
    assert options["max_nodes"] == 512
    broker = load_config(environ={"KAPOKMQ_CLUSTER_GOSSIPMAXNODES": "64"})
    assert gossip_options(broker.cluster, "cluster")["max_nodes"] == 64


@pytest.mark.parametrize("bad", ["c2hvcnQ=", "%%%", f"{K1},xx"])
def test_bad_keys_name_the_setting(bad: str) -> None:
    config = load_config(environ={}, overrides={"cluster.gossipKey": bad})
    with pytest.raises(ConfigError, match=r"cluster\.gossipKey"):
        gossip_options(config.cluster, "cluster")


def test_no_key_on_a_reachable_address_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(environ={})
    options = gossip_options(config.cluster, "cluster")
    with caplog.at_level(logging.WARNING, logger="kapokmq.cluster"):
        warn_if_unencrypted(options, "127.0.0.1", "cluster")
        assert not caplog.records
        warn_if_unencrypted(options, "10.1.2.3", "cluster")
    assert "NOT encrypted" in caplog.text and "cluster.gossipKey" in caplog.text
    keyed = gossip_options(
        load_config(environ={}, overrides={"cluster.gossipKey": K1}).cluster, "c"
    )
    caplog.clear()
    warn_if_unencrypted(keyed, "10.1.2.3", "cluster")
    assert not caplog.records

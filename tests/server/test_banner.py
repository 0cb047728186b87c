"""The start-up banner (src/kapokmq/server/banner.py) and its key warnings."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from kapokmq import __version__
from kapokmq.config import Config, load_config
from kapokmq.server.banner import banner_lines, key_warning
from kapokmq.service import add_logging_options
from tests.harness import BrokerProcess


def test_a_broker_started_from_a_file_says_where_everything_is(tmp_path: Path, monkeypatch) -> None:
    # the suite's second engine run sets it, and the banner would name the environment
    monkeypatch.delenv("KAPOKMQ_SERVER_WSENGINE", raising=False)
    path = tmp_path / "application.yaml"
    path.write_text("mq:\n  isPersistent: 1\n  persistentTime: 7\n  dataDir: store\n")
    broker = BrokerProcess(extra_args=["--config", str(path)], cwd=tmp_path).start()
    try:
        log = broker.log()
    finally:
        broker.cleanup()
    lines = log.splitlines()
    banner = lines[next(i for i, line in enumerate(lines) if f"kapokmq {__version__}" in line) :]
    text = "\n".join(banner)
    assert f"config:      {path.resolve()} + command-line flags" in text
    assert f"console:     http://127.0.0.1:{broker.port}/" in text
    assert f"ws://127.0.0.1:{broker.port}/Producers/Conn/" in text
    assert f"snapshots every 7 s in {(tmp_path / 'store').resolve()}" in text
    assert "role:        standalone" in text
    warning = next(line for line in banner if "default secret key" in line)
    assert "WARNING" in warning and "!!!" not in warning
    assert banner.index(warning) < len(banner) - 1
    listening = next(line for line in banner if "listening on" in line)
    assert f"listening on http://127.0.0.1:{broker.port}" in listening


def test_embedded_defaults_and_roles(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    text = "\n".join(banner_lines(config, 8011, tls=False))
    assert "config:      embedded defaults" in text
    assert "memory only" in text
    config = load_config(
        environ={"KAPOKMQ_MQ_ISPERSISTENT": "2"},
        overrides={
            "sync.isSync": "1",
            "sync.isSlave": "1",
            "sync.masterPort": "8012",  # 8011 would be this broker itself: then a master
            "cluster.isCluster": "1",
        },
    )
    text = "\n".join(banner_lines(config, 8011, tls=True))
    assert "embedded defaults + KAPOKMQ_* environment + command-line flags" in text
    assert "write-ahead log + snapshots (fsync everysec)" in text
    # a sync slave stays out of the cluster (docs/cluster.md), so the banner does not
    # call it a member
    assert "cluster member" not in text
    assert "slave of ws://127.0.0.1:8012" in text
    assert "console:     https://127.0.0.1:8011/" in text
    assert "wss://127.0.0.1:8011/Producers" in text
    config = load_config(environ={}, overrides={"sync.isSync": "1", "cluster.isCluster": "1"})
    text = "\n".join(banner_lines(config, 8011, tls=False))
    assert "cluster member (registry 127.0.0.1:8041, gossip port 8021), master" in text


def test_the_default_key_warning_is_louder_off_loopback() -> None:
    config = Config()
    quiet = key_warning(config)
    assert quiet is not None and "default secret key 'test'" in quiet and "!!!" not in quiet
    config.server.addr = "0.0.0.0"
    loud = key_warning(config)
    assert loud is not None and loud.startswith("!!! listening on 0.0.0.0 with the default")
    assert "console:     http://127.0.0.1:8011/" in "\n".join(banner_lines(config, 8011, False))
    config.mq.secretKey = ""
    empty = key_warning(config)
    assert empty is not None and "an empty secret key" in empty and "!!!" in empty
    config.mq.secretKey = "s3cret"
    assert key_warning(config) is None


def test_json_log_lines_are_one_object_each(tmp_path: Path) -> None:
    """`--log-format json`: structured logs for a collector; the banner's lines too."""
    import json

    broker = BrokerProcess(extra_args=["--log-format", "json"], cwd=tmp_path).start()
    try:
        log = broker.log()
    finally:
        broker.cleanup()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert lines and all(set(line) == {"time", "level", "logger", "msg"} for line in lines)
    assert any(line["level"] == "WARNING" and "default secret key" in line["msg"] for line in lines)
    assert any(f"listening on http://127.0.0.1:{broker.port}" in line["msg"] for line in lines)


def test_the_console_line_names_the_key_it_wants() -> None:
    config = Config()
    assert "(log in with the secret key)" in "\n".join(banner_lines(config, 8011, False))
    config.mq.consoleKey = "admin"
    assert "(log in with mq.consoleKey)" in "\n".join(banner_lines(config, 8011, False))


def test_an_empty_addr_is_named_as_every_interface() -> None:
    """`addr:` with no value (the original's packaged file) listens on every interface."""
    config = Config()
    config.server.addr = ""
    lines = banner_lines(config, 8011, False)
    assert lines[-1].startswith("kapokmq listening on http://0.0.0.0:8011 ")
    warning = key_warning(config)
    assert warning is not None and warning.startswith("!!! listening on 0.0.0.0 with")


def test_log_level_is_case_insensitive() -> None:
    parser = argparse.ArgumentParser()
    add_logging_options(parser)
    assert parser.parse_args(["--log-level", "debug"]).log_level == "DEBUG"
    assert parser.parse_args([]).log_level == "INFO"


def test_ephemeral_ports_are_shown_as_bound(tmp_path: Path) -> None:
    """`server.port: 0` and `cluster.gossipPort: 0` bind ephemeral ports: the banner names
    the ports actually bound, which a user (or a script) needs to reach the broker."""
    path = tmp_path / "application.yaml"
    # no registry listens there: the node binds its gossip port and keeps trying to join
    path.write_text(
        "server:\n  port: 0\ncluster:\n  isCluster: 1\n  gossipPort: 0\n  registryGossipPort: 9\n"
    )
    broker = BrokerProcess(extra_args=["--config", str(path)], cwd=tmp_path).start()
    try:
        log = broker.log()
    finally:
        broker.cleanup()
    assert broker.port != 0
    bound = re.search(r"gossip node \S+ listening on [\d.]+:(\d+)", log)
    assert bound is not None and int(bound.group(1)) != 0, log
    assert f"gossip port {bound.group(1)})" in log, log
    assert "gossip port 0" not in log
    assert f"console:     http://127.0.0.1:{broker.port}/" in log
    assert f"listening on http://127.0.0.1:{broker.port} " in log

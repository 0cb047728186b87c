"""The original's application.yaml files start this broker, zeros included (docs/protocol.md,
"Values of the original's application.yaml"); only meaningless values are refused."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kapokmq.client import Consumer, Producer
from kapokmq.cluster.settings import load_registry_config
from kapokmq.config import ConfigError, load_config
from tests.cluster.harness import RegistryProcess
from tests.harness import SECRET, BrokerProcess

ORIGINAL = Path(__file__).parent / "original_yaml"
BROKER_FILES = ("seed.yaml", "latest.yaml", "standalone.yaml", "zeros.yaml")

# where a test broker must not reach: a registry or master on the original's fixed ports
# could belong to someone else's test, so these are pointed at a closed loopback port
SAFE = {
    "cluster.registryAddr": "127.0.0.1",
    "cluster.registryGossipPort": "9",
    "cluster.gossipPort": "0",
    "sync.masterPort": "9",
}

ZERO_WARNINGS = {
    "pushMessagesSpeed": "mq.pushMessagesSpeed is 0",
    "pushCount": "mq.pushCount is 0",
    "pushRetryTime": "mq.pushRetryTime is 0",
    "persistentTime": "mq.persistentTime is 0",
    "checkSpeed": "mq.checkSpeed is 0",
    "messageChanBuffer": "mq.messageChanBuffer is 0",
    "cleanTime": "mq.cleanTime is 0 with mq.isClean 1",
}


@pytest.fixture(autouse=True)
def _no_stray_application_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # load_config(None) would read ./application.yaml


def post(broker: BrokerProcess, path: str, **form: object) -> Any:
    body = urllib.parse.urlencode({k: str(v) for k, v in form.items()}).encode()
    request = urllib.request.Request(broker.http + path, data=body, headers={"secretKey": SECRET})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def start_with(tmp_path: Path, name: str, **settings: object) -> BrokerProcess:
    """A broker on 127.0.0.1 (the harness's --addr wins over the file's 0.0.0.0)."""
    broker = BrokerProcess(
        settings={**SAFE, "mq.dataDir": str(tmp_path / "data"), **settings},
        extra_args=["--config", str(ORIGINAL / name)],
        cwd=tmp_path,
    )
    return broker.start()


@pytest.mark.parametrize("name", BROKER_FILES)
def test_every_original_file_loads(name: str) -> None:
    config = load_config(ORIGINAL / name, environ={})
    assert config.mq.secretKey == "test"
    assert config.mq.pushRetryTime >= 1 and config.mq.checkSpeed >= 1


def test_registry_file_loads() -> None:
    config = load_registry_config(ORIGINAL / "registry.yaml", environ={})
    assert (config.server.port, config.registry.gossipPort) == (8031, 8041)


@pytest.mark.parametrize("name", ("seed.yaml", "latest.yaml", "standalone.yaml"))
async def test_original_file_starts_a_broker_that_delivers(tmp_path: Path, name: str) -> None:
    broker = start_with(tmp_path, name)
    try:
        await round_trip(broker, f"t-{name}")
        assert "Traceback" not in broker.log()
    finally:
        broker.cleanup()


def test_registry_file_starts_a_registry(tmp_path: Path) -> None:
    registry = RegistryProcess(
        settings={"registry.gossipPort": "0"},
        extra_args=["--config", str(ORIGINAL / "registry.yaml")],
        cwd=tmp_path,
    )
    try:
        registry.start()
        request = urllib.request.Request(
            registry.http + "/Registry/GetNodes", data=b"", headers={"secretKey": SECRET}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read() or b"[]") == []
    finally:
        registry.cleanup()


async def round_trip(broker: BrokerProcess, topic: str) -> None:
    """One message in over WebSocket, pushed to a consumer and acknowledged."""
    async with Consumer(broker.http, topic, "c1", SECRET) as consumer:
        async with Producer(broker.http, topic, "p1", SECRET) as producer:
            await producer.send("hello")
        msg = await asyncio.wait_for(consumer.receive(), 10)
        assert msg.message_data == "hello"
        await msg.ack()


async def test_zeros_start_with_the_original_meaning_and_warn(tmp_path: Path) -> None:
    # pushThrottle is ours: with it on, pushCount/pushMessagesSpeed 0 must still mean no limit
    broker = start_with(tmp_path, "zeros.yaml", **{"mq.pushThrottle": "1"})
    try:
        log = broker.log()
        for key, warning in ZERO_WARNINGS.items():
            assert warning in log, key
            assert "WARNING" in next(line for line in log.splitlines() if warning in line)
        assert "mq.pushCount is 0: the original then never pauses" in log
        assert "mq.pushMessagesSpeed is 0: the original then never pauses" in log
        assert "(mq.pushThrottle 1 has no effect)" in log
        config = post(broker, "/Console/GetConfig")["data"]
        assert (config["pushRetryTime"], config["checkSpeed"], config["persistentTime"]) == (
            1,
            1,
            1,
        )
        assert config["messageChanBuffer"] == 10_000_000
        assert (config["pushMessagesSpeed"], config["pushCount"], config["cleanTime"]) == (0, 0, 0)
        # no throttle: a burst of 50 arrives at once (pushCount 0 would otherwise allow none)
        async with Consumer(broker.http, "burst", "c1", SECRET) as consumer:
            async with Producer(broker.http, "burst", "p1", SECRET) as producer:
                for i in range(50):
                    await producer.send(f"m{i}")
            for _ in range(50):
                await asyncio.wait_for(consumer.receive(), 10)
        # cleanTime 0 (the original's meaning): every message is deleted within checkSpeed s
        deadline = time.monotonic() + 10
        while post(broker, "/Console/CountMessage")["data"]["all"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert post(broker, "/Console/CountMessage")["data"]["all"] == 0
    finally:
        broker.cleanup()


@pytest.mark.parametrize("value", ["-1", "-300"])
@pytest.mark.parametrize("key", ["pushRetryTime", "persistentTime", "checkSpeed"])
def test_negative_intervals_are_raised_to_one_second(
    key: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kapokmq.config"):
        config = load_config(None, environ={}, overrides={f"mq.{key}": value})
    assert getattr(config.mq, key) == 1
    assert f"mq.{key} is {value}" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "throttle"),
    [
        ({"mq.pushThrottle": "1", "mq.pushMessagesSpeed": "0"}, None),
        ({"mq.pushThrottle": "1", "mq.pushCount": "-5"}, None),
        ({"mq.pushThrottle": "0", "mq.pushMessagesSpeed": "0"}, None),
        ({"mq.pushThrottle": "1", "mq.pushCount": "10", "mq.pushMessagesSpeed": "2"}, (10, 2.0)),
    ],
)
def test_push_rate_limit_zero_means_no_limit(
    overrides: dict[str, str], throttle: tuple[int, float] | None
) -> None:
    assert load_config(None, environ={}, overrides=overrides).push_throttle() == throttle


def test_empty_keys_take_the_originals_zero_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the original's packaged application.yaml ships `secretKey:` with no value
    path = tmp_path / "application.yaml"
    path.write_text("mq:\n  secretKey:\n  cleanTime:\n  isClean: 0\ncluster:\n  registryAddr:\n")
    with caplog.at_level(logging.WARNING, logger="kapokmq.config"):
        config = load_config(path, environ={})
    assert (config.mq.secretKey, config.mq.cleanTime, config.cluster.registryAddr) == ("", 0, "")
    assert "mq.secretKey is empty" in caplog.text
    registry = tmp_path / "registry.yaml"
    registry.write_text("registry:\n  secretKey:\n  gossipPort: 8041\n")
    assert load_registry_config(registry, environ={}).registry.secretKey == ""


def test_yaml_booleans_are_the_originals_one_and_zero(tmp_path: Path) -> None:
    """viper's GetInt reads `true` as 1: a file the original starts with starts here."""
    path = tmp_path / "application.yaml"
    path.write_text("mq:\n  isPersistent: true\n  isClean: false\n  isRePush: yes\n")
    mq = load_config(path, environ={}).mq
    assert (mq.isPersistent, mq.isClean, mq.isRePush) == (1, 0, 1)
    assert type(mq.isPersistent) is int
    with pytest.raises(ConfigError, match=r"mq\.secretKey must be a string"):  # not guessed
        path.write_text("mq:\n  secretKey: true\n")
        load_config(path, environ={})


def test_original_only_key_is_not_reported_as_unknown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kapokmq.config"):
        load_config(ORIGINAL / "seed.yaml", environ={})
    assert "pushRetryCount has no setting here" in caplog.text
    assert "unknown key" not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mq.messageChanBuffer": "-1"}, "mq.messageChanBuffer must be >= 0"),
        ({"mq.pushType": "0"}, "mq.pushType must be one of 1, 2"),
        ({"mq.isPersistent": "3"}, "mq.isPersistent must be one of 0, 1, 2"),
        ({"mq.checkSpeed": "fast"}, "mq.checkSpeed must be an integer"),
        ({"mq.checkSpeed": "nan"}, "mq.checkSpeed must be an integer"),
        ({"mq.maxInFlight": "1.5"}, "mq.maxInFlight must be a whole number"),
        ({"sync.masterProtocol": "http"}, "sync.masterProtocol must be one of ws, wss"),
        ({"sync.masterPort": "abc"}, r"sync.masterPort must be a port number \(0-65535\)"),
        ({"cluster.registryGossipPort": "70000"}, "cluster.registryGossipPort must be a port"),
    ],
)
def test_meaningless_values_are_still_refused(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, environ={}, overrides=overrides)


@pytest.mark.parametrize(
    ("text", "value", "warned"),
    [
        ("1.5", 1, True),  # viper's GetInt: int(1.5)
        ("0.5", 1, True),  # 0, then raised to 1 s as any zero interval
        ("2.0", 2, False),
        ('"5"', 5, False),  # digits in quotes: cast.ToInt parses them
        ('"0x10"', 16, False),  # strconv.ParseInt(s, 0, 0)
        ("true", 1, False),
    ],
)
def test_integer_keys_read_as_the_originals_getint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, value: int, warned: bool
) -> None:
    path = tmp_path / "application.yaml"
    path.write_text(f"mq:\n  checkSpeed: {text}\n")
    with caplog.at_level(logging.WARNING, logger="kapokmq.config"):
        assert load_config(path, environ={}).mq.checkSpeed == value
    assert ("mq.checkSpeed is " in caplog.text) is warned
    assert ("drops the fraction" in caplog.text) is warned


async def test_a_file_with_fractions_and_quoted_digits_starts(tmp_path: Path) -> None:
    """The original (viper GetInt) starts with `checkSpeed: 1.5`: so does this broker."""
    path = tmp_path / "application.yaml"
    path.write_text(
        "mq:\n  checkSpeed: 1.5\n  pushRetryTime: '60'\n  cleanTime: 172800.9\n  pushType: 1.0\n"
    )
    broker = BrokerProcess(extra_args=["--config", str(path)], cwd=tmp_path).start()
    try:
        config = post(broker, "/Console/GetConfig")["data"]
        assert (config["checkSpeed"], config["pushRetryTime"], config["cleanTime"]) == (
            1,
            60,
            172800,
        )
        assert "WARNING kapokmq.config: mq.checkSpeed is 1.5" in broker.log()
        await round_trip(broker, "fractions")
    finally:
        broker.cleanup()


@pytest.mark.parametrize(
    ("addr", "master", "is_self"),
    [
        ("0.0.0.0", "127.0.0.1", True),  # the original's latest file as shipped
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "localhost", True),
        ("", "::1", True),
        ("10.0.0.5", "10.0.0.5", True),
        ("127.0.0.1", "10.0.0.5", False),  # another machine's broker on the same port
        ("10.0.0.5", "127.0.0.1", False),  # not listening on loopback: someone else's
    ],
)
def test_a_slave_of_itself_is_a_master(
    caplog: pytest.LogCaptureFixture, addr: str, master: str, is_self: bool
) -> None:
    overrides = {"server.addr": addr, "sync.masterAddr": master}
    with caplog.at_level(logging.WARNING, logger="kapokmq.config"):
        config = load_config(ORIGINAL / "latest.yaml", environ={}, overrides=overrides)
    assert (config.sync.isSync, config.sync.isSlave) == (1, 0 if is_self else 1)
    assert ("is this broker itself" in caplog.text) is is_self
    other_port = load_config(
        ORIGINAL / "latest.yaml", environ={}, overrides={**overrides, "sync.masterPort": "9"}
    )
    assert other_port.sync.isSlave == 1


async def test_the_latest_file_as_shipped_starts_a_broker_that_pushes(tmp_path: Path) -> None:
    """latest.yaml names the broker's own port as its master's: it pushes at once, no
    endless "master unreachable" warnings."""
    with socket.socket() as probe:  # the port must be known before start: masterPort = port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = BrokerProcess(
        port=port,
        settings={"sync.masterPort": str(port), "mq.dataDir": str(tmp_path / "data")},
        extra_args=["--config", str(ORIGINAL / "latest.yaml")],
        cwd=tmp_path,
    ).start()
    try:
        await round_trip(broker, "latest")
        log = broker.log()
        assert "is this broker itself" in log and "unreachable" not in log
        assert post(broker, "/Console/GetConfig")["data"]["isSlave"] == 0
    finally:
        broker.cleanup()

"""Configuration (README "Configuration") on a live broker: an original application.yaml,
environment and flag overrides."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    MATCHED,
    MISMATCH,
    PROMPT,
    api,
    api_raw,
    consumer,
    http_send,
    recv_push,
)

# The original's file, comments and all (it has a key we do not know: pushRetryCount).
ORIGINAL_YAML = """\
server:
  # ip地址/域名（公网环境下部署需要配置成公网ip）
  addr: 0.0.0.0
  port: 8011

mq:
  # 生产者、控制台访问密钥（放在请求头部）
  secretKey: yamlkey
  pushType: 2
  messageChanBuffer: 10000000
  pushMessagesSpeed: 1
  pushCount: 1000
  pushRetryCount: 3
  pushRetryTime: 120
  persistentFile: MQDATA
  isPersistent: 0
  recoveryStrategy: 1
  persistentTime: 3
  isCleanConsumed: 0
  isRePush: 1
  isClean: 1
  checkSpeed: 3
  cleanTime: 259200

cluster:
  isCluster: 0
  gossipPort: 8022
  registryAddr: 127.0.0.1
  registryGossipPort: 8042

sync:
  isSync: 0
  isSlave: 0
  masterProtocol: ws
  masterAddr: 127.0.0.1
  masterPort: 8012
"""


async def _login_result(url: str, key: str) -> str:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        assert await ws.receive_str(timeout=5) == PROMPT
        await ws.send_str(key)
        reply = await ws.receive_str(timeout=5)
        await ws.close()
        return reply


@pytest.mark.parametrize("place", ["application.yaml", "config/application.yaml"])
async def test_original_application_yaml_in_working_directory(tmp_path, place):
    """./application.yaml, or ./config/application.yaml where the original keeps it."""
    path = tmp_path / place
    path.parent.mkdir(exist_ok=True)
    path.write_text(ORIGINAL_YAML, encoding="utf-8")
    with started_broker(tmp_path) as proc:
        assert f"config:      {path.resolve()}" in proc.log()
        url = f"{proc.ws}/Consumers/Conn/t/c"
        assert await _login_result(url, "yamlkey") == MATCHED
        assert await _login_result(url, "test") == MISMATCH
        async with aiohttp.ClientSession() as session:
            _, body, _ = await api_raw(session, proc, "/Console/GetConfig", key="yamlkey")
            data = orjson.loads(body)["data"]
            assert data["pushType"] == 2 and data["pushRetryTime"] == 120
            assert data["cleanTime"] == 259200 and data["gossipPort"] == 8022
            assert data["registryGossipPort"] == "8042" and data["masterPort"] == "8012"
            assert "pushRetryCount" not in data


async def test_config_flag_env_and_cli_precedence(tmp_path):
    config = tmp_path / "custom.yaml"
    config.write_text(ORIGINAL_YAML, encoding="utf-8")
    env = {"KAPOKMQ_MQ_SECRETKEY": "envkey", "KAPOKMQ_MQ_PUSHRETRYTIME": "60"}
    args = ["--config", str(config), "--push-type", "1"]
    with started_broker(tmp_path, {"mq.checkSpeed": 2}, extra_args=args, env=env) as proc:
        url = f"{proc.ws}/Producers/Conn/t/p"
        assert await _login_result(url, "envkey") == MATCHED  # env beats yaml
        assert await _login_result(url, "yamlkey") == MISMATCH
        async with aiohttp.ClientSession() as session:
            _, body, _ = await api_raw(session, proc, "/Console/GetConfig", key="envkey")
            data = orjson.loads(body)["data"]
            assert data["pushRetryTime"] == 60  # env
            assert data["pushType"] == 1  # flag beats yaml
            assert data["checkSpeed"] == 2  # --set beats yaml
            assert data["cleanTime"] == 259200  # yaml beats defaults


async def test_secret_key_flag_beats_env(tmp_path):
    env = {"KAPOKMQ_MQ_SECRETKEY": "envkey"}
    with started_broker(tmp_path, extra_args=["--secret-key", "flagkey"], env=env) as proc:
        url = f"{proc.ws}/Consumers/Conn/t/c"
        assert await _login_result(url, "flagkey") == MATCHED
        assert await _login_result(url, "envkey") == MISMATCH


async def test_no_file_at_all_uses_embedded_defaults(tmp_path):
    with started_broker(tmp_path) as proc:
        async with aiohttp.ClientSession() as session:
            data = (await api(session, proc, "/Console/GetConfig"))["data"]
            assert data["pushType"] == 1 and data["pushRetryTime"] == 300
            c = await consumer(session, proc, "t")
            code = await http_send(session, proc, "t", "default key works")
            assert (await recv_push(c))["MessageCode"] == code
            await c.close()


@pytest.mark.parametrize(
    ("setting", "key"),
    [("mq.pushType=3", "mq.pushType"), ("mq.fsync=sometimes", "mq.fsync")],
)
def test_bad_value_stops_start_up_naming_the_key(tmp_path, setting, key):
    name, _, value = setting.partition("=")
    with pytest.raises(RuntimeError) as info, started_broker(tmp_path, {name: value}):
        pass
    assert key in str(info.value)

"""Configuration: defaults, the original application.yaml, env and flag overrides, errors."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import kapokmq
from kapokmq.config import ConfigError, load_config

ORIGINAL_YAML = """\
server:
  addr: 0.0.0.0
  port: 8011
mq:
  secretKey: test
  pushType: 1
  messageChanBuffer: 10000000
  pushMessagesSpeed: 1
  pushCount: 1000
  pushRetryCount: 3
  pushRetryTime: 300
  persistentFile: MQDATA
  isPersistent: 1
  recoveryStrategy: 1
  persistentTime: 3
  isCleanConsumed: 0
  isRePush: 1
  isClean: 1
  checkSpeed: 3
  cleanTime: 259200
cluster:
  isCluster: 0
  gossipPort: 8021
  registryAddr: 0.0.0.0
  registryGossipPort: 8041
sync:
  isSync: 0
  isSlave: 0
  masterProtocol: ws
  masterAddr: 127.0.0.1
  masterPort: 8011
"""


def test_embedded_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert (config.server.addr, config.server.port) == ("127.0.0.1", 8011)
    assert config.mq.secretKey == "test" and config.mq.pushType == 1
    assert config.mq.pushThrottle == 0


def test_original_yaml_reads_unchanged(tmp_path):
    path = tmp_path / "application.yaml"
    path.write_text(ORIGINAL_YAML)
    config = load_config(path, environ={})
    assert config.server.addr == "0.0.0.0"
    assert config.mq.persistentTime == 3 and config.mq.cleanTime == 259200
    assert config.cluster.registryGossipPort == "8041"  # strings, as GetConfig reports them
    view = config.console_view()
    assert len([k for k in view if k in ORIGINAL_YAML]) == 23
    assert list(view) == sorted(view)
    assert "secretKey" not in view


def test_env_and_overrides_take_precedence(tmp_path):
    path = tmp_path / "application.yaml"
    path.write_text(ORIGINAL_YAML)
    env = {"KAPOKMQ_MQ_SECRETKEY": "s3cret", "KAPOKMQ_MQ_PUSH_RETRY_TIME": "7"}
    config = load_config(path, environ=env, overrides={"mq.pushRetryTime": "9"})
    assert config.mq.secretKey == "s3cret"
    assert config.mq.pushRetryTime == 9


def test_per_topic_push_type(tmp_path):
    path = tmp_path / "application.yaml"
    path.write_text("mq:\n  pushType: 1\n  topics:\n    news: {pushType: 2}\n")
    config = load_config(path, environ={})
    assert config.topic_push_type("news") == 2
    assert config.topic_push_type("other") == 1
    # setting names match case-insensitively like every key; topic names stay as written
    path.write_text("mq:\n  topics:\n    News: {pushtype: 2, TTL: 60, DedupWindow: 0}\n")
    config = load_config(path, environ={})
    assert (config.topic_push_type("News"), config.topic_push_type("news")) == (2, 1)
    assert (config.topic_ttl("News"), config.topic_dedup_window("News")) == (60, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mq.pushType": "3"}, "mq.pushType must be one of 1, 2"),
        ({"mq.pushRetryTime": "soon"}, "mq.pushRetryTime must be an integer"),
        ({"server.port": "70000"}, "server.port must be <= 65535"),
        ({"mq.fsync": "sometimes"}, "mq.fsync must be one of always, everysec, no"),
        ({"nope": "1"}, "unknown setting"),
    ],
)
def test_bad_values_name_the_key(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_config(None, environ={}, overrides=overrides)


def test_per_topic_ttl(tmp_path):
    path = tmp_path / "application.yaml"
    path.write_text("mq:\n  topics:\n    news: {pushType: 2, ttl: 60}\n    other: {ttl: '5'}\n")
    config = load_config(path, environ={})
    assert config.topic_ttl("news") == 60 and config.topic_ttl("other") == 5
    assert config.topic_ttl("plain") == 0
    path.write_text("mq:\n  topics:\n    news: {ttl: -1}\n")
    with pytest.raises(ConfigError, match=r"mq.topics.news.ttl must be an integer >= 0"):
        load_config(path, environ={})
    path.write_text("mq:\n  topics:\n    news: {tll: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*allowed: pushType, ttl"):
        load_config(path, environ={})


def test_bad_topic_settings(tmp_path):
    path = tmp_path / "application.yaml"
    path.write_text("mq:\n  topics:\n    news: {pushType: 5}\n")
    with pytest.raises(ConfigError, match=r"mq.topics.news.pushType"):
        load_config(path, environ={})
    for value in ("1.5", "2.0", "[60]", "true"):  # never truncated to a whole number
        path.write_text(f"mq:\n  topics:\n    news: {{ttl: {value}}}\n")
        with pytest.raises(ConfigError, match=r"mq.topics.news.ttl must be an integer >= 0"):
            load_config(path, environ={})


def test_serve_refuses_bad_config_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kapokmq", "serve", "--set", "mq.pushType=9"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "mq.pushType must be one of 1, 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_trace_takes_off_on_or_a_sample_rate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "trace.yaml"
    path.write_text("mq:\n  trace: 1\n", encoding="utf-8")
    assert load_config(path, environ={}).mq.trace == 1.0
    assert load_config(None, environ={"KAPOKMQ_MQ_TRACE": "0.25"}).mq.trace == 0.25
    assert load_config(None, environ={}).mq.trace == 0.0
    # a whole number stays an int (GetConfig reports 0 and 1, not 0.0)
    assert type(load_config(path, environ={}).mq.trace) is int
    assert type(load_config(None, environ={}).console_view()["trace"]) is int
    for bad, message in [
        ("2", r"mq.trace must be <= 1"),
        ("-0.1", r"mq.trace must be >= 0"),
        ("often", r"mq.trace must be a number"),
        ("nan", r"mq.trace must be a number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, environ={}, overrides={"mq.trace": bad})


def test_sections_match_case_insensitively_and_unknown_ones_are_named(tmp_path, caplog):
    """The original's viper reads `MQ:` / `SecretKey:` as mq.secretKey; a section that no
    config of ours reads (a typo) is warned about, the registry's own is skipped quietly."""
    path = tmp_path / "application.yaml"
    path.write_text("MQ:\n  SecretKey: upper\nmqq:\n  pushType: 2\nregistry:\n  gossipPort: 1\n")
    with caplog.at_level("WARNING", logger="kapokmq.config"):
        config = load_config(path, environ={})
    assert config.mq.secretKey == "upper" and config.mq.pushType == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert any("ignoring unknown section mqq" in w for w in warnings), warnings
    assert not any("registry" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "config file {path} does not exist"),
        ("dir", "config file {path} is a directory"),
        ("mq: [1,2\n", "config file {path} is not valid YAML: line 2, column 1: "),
        ("mq:\n\tpushType: 2\n", "is not valid YAML: line 2, column 1: "),
        ("mq:\n  checkSpeed: fast\n", "mq.checkSpeed must be an integer, got 'fast'"),
        ("- 1\n", "the top level must be a mapping of sections"),
        # the original's Chinese comments saved as GBK (a Windows editor's "ANSI")
        ("mq:\n  # 密钥\n".encode("gbk"), "is not UTF-8 (byte 0xc3 at offset 8); save it as"),
    ],
    ids=["missing", "directory", "syntax", "tab", "wrong-type", "not-a-mapping", "gbk"],
)
def test_serve_with_a_bad_config_file_says_what_is_wrong(tmp_path, write, message):
    """One line on stderr naming the file (and the line of a syntax error), exit 2."""
    path = tmp_path / "application.yaml"
    if write == "dir":
        path.mkdir()
    elif isinstance(write, bytes):
        path.write_bytes(write)
    elif write is not None:
        path.write_text(write)
    result = subprocess.run(
        [sys.executable, "-m", "kapokmq", "serve", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kapokmq: configuration error: "), lines
    assert message.format(path=path) in lines[0], lines


def test_serve_on_a_port_in_use_says_so(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "kapokmq", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
    assert result.returncode == 1
    assert f"kapokmq: cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "address already in use" in result.stderr and "Traceback" not in result.stderr


def test_unknown_keys_name_the_nearest_one(tmp_path, caplog):
    """A typo on the command line stops start-up; in the file or the environment it is a
    warning; both name the key meant. pushRetryCount (the original's) is neither."""
    with pytest.raises(
        ConfigError, match=r"unknown setting mq.retryTime \(did you mean mq.pushRetryTime\?\)"
    ):
        load_config(None, environ={}, overrides={"mq.retryTime": "5"})
    path = tmp_path / "application.yaml"
    path.write_text("mq:\n  secretKy: x\n")
    environ = {"KAPOKMQ_MQ_PUSHRETRYTIM": "3", "KAPOKMQ_MQ_PUSHRETRYCOUNT": "3"}
    with caplog.at_level("INFO", logger="kapokmq.config"):
        load_config(path, environ=environ, overrides={"mq.pushRetryCount": "3"})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("mq.secretKy (did you mean mq.secretKey?)" in w for w in warnings), warnings
    assert any("mq.PUSHRETRYTIM (did you mean mq.pushRetryTime?)" in w for w in warnings)
    assert not any("PUSHRETRYCOUNT" in w or "pushRetryCount" in w for w in warnings), warnings


def test_version_and_help_speak_to_a_user():
    run = [sys.executable, "-m", "kapokmq"]
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.strip() == f"kapokmq {kapokmq.__version__}"
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=30)
    assert "kapokmq serve" in helped.stdout and "registered by the modules" not in helped.stdout
    serve = subprocess.run([*run, "serve", "--help"], capture_output=True, text=True, timeout=30)
    text = " ".join(serve.stdout.split())  # argparse wraps at the terminal's width
    assert "./config/application.yaml" in text and "(default INFO)" in text


def test_a_list_setting_takes_commas_or_the_yaml_flow_form_from_env_and_flags() -> None:
    """server.allowedOrigins as docs/protocol.md writes it (`[a, b]`), or `a,b`."""
    for raw in ("[http://a.example, http://b.example]", '["http://a.example","http://b.example"]'):
        for source in (
            {"environ": {"KAPOKMQ_SERVER_ALLOWEDORIGINS": raw}, "overrides": {}},
            {"environ": {}, "overrides": {"server.allowedOrigins": raw}},
        ):
            config = load_config(None, **source)
            assert config.server.allowedOrigins == ["http://a.example", "http://b.example"]
    flags = {"server.allowedOrigins": " http://a.example ,null"}
    assert load_config(None, environ={}, overrides=flags).server.allowedOrigins == [
        "http://a.example",
        "null",
    ]


def test_an_allowed_origin_no_browser_can_send_is_refused() -> None:
    """An entry that no Origin header can equal would silently allow nothing."""
    good = "*,null,https://app.example.com,http://localhost:3000,HTTP://A.EXAMPLE/"
    flags = {"server.allowedOrigins": good}
    assert len(load_config(None, environ={}, overrides=flags).server.allowedOrigins) == 5
    for bad in ("app.example.com", "http://a.example/app", "https://*.example.com", "http://"):
        with pytest.raises(ConfigError, match="scheme://host") as info:
            load_config(None, environ={}, overrides={"server.allowedOrigins": bad})
        assert repr(bad) in str(info.value)

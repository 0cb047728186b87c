"""The original client's wire behaviour, played by a Go program on gorilla/websocket (the
library the original Go client uses), against a real broker process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from kapokmq.client.sync import SyncConsoleClient as ConsoleClient

SOURCE = Path(__file__).with_name("goclient") / "main.go"
GOPATH = "/usr/share/gocode"
GORILLA = Path(GOPATH) / "src/github.com/gorilla/websocket"

pytestmark = pytest.mark.timeout(240)


def _missing() -> str | None:
    if shutil.which("go") is None:
        return "Go toolchain (golang-go) not installed"
    if not GORILLA.is_dir():
        return "golang-github-gorilla-websocket-dev not installed"
    return None


@pytest.fixture(scope="module")
def goclient() -> Path:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it (scripts/install-system-deps.sh)")
        pytest.skip(reason)
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / f"kapokmq-goclient-{digest}" / "goclient"
    if not binary.exists():
        build = Path(tempfile.mkdtemp(prefix="goclient-build-"))
        shutil.copy(SOURCE, build / "main.go")
        env = os.environ | {
            "GO111MODULE": "off",
            "GOPATH": GOPATH,
            "GOCACHE": str(Path(tempfile.gettempdir()) / "kapokmq-gocache"),
        }
        subprocess.run(
            ["go", "build", "-o", "goclient", "."],
            cwd=build,
            env=env,
            check=True,
            capture_output=True,
            timeout=200,
        )
        binary.parent.mkdir(parents=True, exist_ok=True)
        os.replace(build / "goclient", binary)
        shutil.rmtree(build, ignore_errors=True)
    return binary


def run(binary: Path, *args: str) -> list[str]:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_go_client_produces_and_consumes(broker, goclient):
    assert run(goclient, "produce", f"{broker.ws}/Producers/Conn/go/p1", "50", "0") == ["ok 50"]
    lines = run(goclient, "consume", f"{broker.ws}/Consumers/Conn/go/c1", "50")
    messages = [json.loads(line) for line in lines]
    assert sorted(m["MessageData"] for m in messages) == sorted(f"go-{i}" for i in range(50))
    assert all(
        m["Topic"] == "go" and m["Status"] == -1 and len(m["MessageCode"]) == 32 for m in messages
    )


def test_go_client_delayed_message(broker, goclient):
    assert run(goclient, "produce", f"{broker.ws}/Producers/Conn/later/p", "1", "1") == ["ok 1"]
    [line] = run(goclient, "consume", f"{broker.ws}/Consumers/Conn/later/c", "1")
    assert json.loads(line)["DelayTime"] == 1


def test_go_client_consumes_messages_with_ttl_and_a_dedup_id(broker, goclient):
    """Our extensions (TTL, MessageId, a dedup repeat) stay out of what the Go client reads:
    it decodes and acks the message as any other, and the repeat is not pushed again."""
    with ConsoleClient(broker.http) as console:
        code = console.send("go-ext", "once", ttl=600, message_id="go-ext-1")
        assert console.send("go-ext", "twice", ttl=600, message_id="go-ext-1") == code
        [line] = run(goclient, "consume", f"{broker.ws}/Consumers/Conn/go-ext/c", "1")
        assert json.loads(line)["MessageData"] == "once"
        for _ in range(100):  # the ack is written just before the Go client exits
            if console.get_message(code)["Status"] == 1:
                break
            time.sleep(0.02)
        assert console.get_message(code)["Status"] == 1
        assert console.count()["all"] == 1  # the repeat was never stored, so never pushed


def test_go_client_sees_the_wrong_key_texts(broker, goclient):
    lines = run(goclient, "wrongkey", f"{broker.ws}/Consumers/Conn/t/c", "nope")
    assert lines == [
        "Please enter the secret key",
        "Secret key matching error",
        "Please enter the secret key",
    ]


def test_an_original_slave_reads_our_sync_records(broker_factory, goclient):
    """The original slave decodes every /Sync/Conn frame with json.Unmarshal into its message
    struct: our extra keys (TTL, History, MessageId, ...) must not disturb it, and the records
    of gone dedup ids, which it would store as messages, are not sent to it
    (docs/protocol.md, Master-slave sync)."""
    master = broker_factory(settings={"sync.isSync": 1})
    with ConsoleClient(master.http) as console:
        gone = console.send("t", "gone", message_id="gone-1")
        console.del_message(gone)
        kept = {
            console.send("t", "with ttl", ttl=60): "with ttl",
            console.send("t", "with id", message_id="id-1"): "with id",
            console.send("t", "later", 3600, ttl=5): "later",
        }
        stored = {code: console.get_message(code) for code in kept}
    assert "TTL" in stored[next(iter(kept))]  # the records do carry extras
    lines = run(goclient, "slave", f"{master.ws}/Sync/Conn", "3")  # then 1 s: nothing more
    assert not [line for line in lines if line.startswith("extra")], lines
    decoded = {m["MessageCode"]: m for m in map(json.loads, lines)}
    assert set(decoded) == set(kept), lines
    for code, message in decoded.items():
        original = {k: stored[code][k] for k in message}  # the original's fields
        assert message == original

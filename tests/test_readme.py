"""The README's examples, run as a reader would run them, against a real broker.

Every fenced block of README.md is checked: `text` blocks are WebSocket transcripts replayed
frame by frame, `python` blocks run as pasted, `sh` blocks run in bash. Only the broker's
address (the README's 127.0.0.1:8011 becomes this test's port) and the place of the installed
`kapokmq` command (the README's `.venv/bin/`, this interpreter's directory here) change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.harness import SECRET, BrokerProcess

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
BLOCKS = FENCE.findall(README)
README_URL = "127.0.0.1:8011"
CODE = "<32 hex>"


def blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCKS if kind == lang]


def for_broker(text: str, broker: BrokerProcess) -> str:
    bindir = Path(sys.executable).parent
    text = text.replace(".venv/bin/", f"{bindir}/")
    text = text.replace(f"http://{README_URL}", broker.http)
    return text.replace(f"ws://{README_URL}", broker.ws)


def test_every_block_is_one_that_is_checked() -> None:
    assert {kind for kind, _ in BLOCKS} <= {"text", "python", "sh"}
    assert blocks("text") and blocks("python") and blocks("sh")


def test_first_screen_is_the_two_setup_commands() -> None:
    head = README.split("\n---\n")[0]
    commands = [line.strip() for line in head.splitlines() if line.startswith("    ")]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/kapokmq serve",
        "bash scripts/test.sh",
    ]
    assert len(head.splitlines()) < 30  # one screen


async def replay(broker: BrokerProcess, transcript: str) -> list[dict[str, object]]:
    """Send the `>` frames, expect the `<` frames; returns the messages received."""
    first, *lines = transcript.splitlines()
    url = for_broker(first.removeprefix("# "), broker)
    received: list[dict[str, object]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for line in lines:
            direction, _, text = line.partition(" ")
            if direction == ">":
                code = str(received[-1]["MessageCode"]) if received else ""
                await ws.send_str(text.replace(CODE, code))
                continue
            assert direction == "<", line
            got = await ws.receive_str(timeout=10)
            if not text.startswith("{"):
                assert got == text
                continue
            assert got.endswith("}\n")  # one compact JSON object and Go's newline
            expected, message = json.loads(text), json.loads(got)
            assert list(message) == list(expected)
            assert re.fullmatch("[0-9a-f]{32}", str(message["MessageCode"]))
            for key in ("MessageData", "Topic", "ConsumedTime", "DelayTime", "Status"):
                assert message[key] == expected[key], key
            received.append(message)
    return received


def count(broker: BrokerProcess) -> dict[str, int]:
    request = urllib.request.Request(
        broker.http + "/Console/CountMessage", data=b"", headers={"secretKey": SECRET}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        counts: dict[str, int] = json.loads(response.read())["data"]
        return counts


async def test_transcripts_are_what_the_broker_says(broker: BrokerProcess) -> None:
    producer, consumer = blocks("text")
    assert "< Secret key matching succeeded" in producer.splitlines()
    assert await replay(broker, producer) == []
    messages = await replay(broker, consumer)
    assert len(messages) == 1
    counts = count(broker)
    assert counts["consumed"] == 1  # the `> <32 hex>` line acknowledged it
    assert counts["delay"] == 1


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs_as_pasted(broker: BrokerProcess, tmp_path: Path, index: int) -> None:
    source = blocks("python")[index]
    assert "asyncio.run(" in source
    script = tmp_path / "example.py"
    script.write_text(for_broker(source, broker))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hello 0", "hello 1", "hello 2"]


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_block_runs_as_pasted(broker: BrokerProcess, tmp_path: Path, index: int) -> None:
    script = for_broker(blocks("sh")[index], broker)
    # the CLI's default URL is the README's 127.0.0.1:8011; point it at this broker
    env = dict(os.environ, KAPOKMQ_URL=broker.http)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert '{"code":0,"msg":"' in done.stdout
    assert "showing 1-5 of 1000 messages" in done.stderr

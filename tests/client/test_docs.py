"""docs/client.md's examples, run as printed against a real broker (as tests/test_readme.py
does for the README).

Python blocks run in a fresh interpreter, a bare ``await`` as in ``python -m asyncio``; the
names a fragment takes from the prose around it (``url``, ``producer``, ``lines``, ...) are
given to it. Blocks that consume forever must be still running, having printed what was
sent, when their time is up. The `sh` block's concrete commands run in bash with
``KAPOKMQ_URL`` pointing at the broker, so they too run exactly as printed; the synopsis
lines (``CODE``, ``[...]``, ``a | b`` alternatives) are what `--help` documents instead.
Only the broker's address changes (the docs' 127.0.0.1:8011 becomes this test's port).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kapokmq.client import ConsoleClient
from kapokmq.client.sync import SyncProducer
from tests.client.test_acceptance import one_broker_cluster
from tests.harness import BrokerProcess

DOCS = Path(__file__).parents[2] / "docs"
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.M | re.S)


def fenced(doc: str) -> list[tuple[str, str]]:
    text = (DOCS / doc).read_text(encoding="utf-8")
    return [(lang, textwrap.dedent(body)) for _, lang, body in FENCE.findall(text)]


BLOCKS = fenced("client.md")
DOC_URL = "http://127.0.0.1:8011"
BIN = Path(sys.executable).parent
FOREVER = 6.0  # seconds a consuming-forever block runs before it is stopped

# The prose's names for a fragment; a bare await runs on a loop with a producer open.
RUNNER = """
import ast, asyncio, inspect, os, sys
from kapokmq.client import Producer
URL = os.environ["KAPOKMQ_URL"]
source = sys.stdin.read()
code = compile(source, "docs/client.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
async def store(data):
    print("stored", data)
def count_reply(future):
    print("reply", future.exception())
names = {"__name__": "__main__", "url": URL, "lines": ["line 1", "line 2"],
         "store": store, "count_reply": count_reply}
if code.co_flags & inspect.CO_COROUTINE:
    async def main():
        async with Producer(URL, "orders", "docs-producer") as producer:
            names["producer"] = producer
            await eval(code, names)
    asyncio.run(main())
else:
    exec(code, names)
"""


def python_blocks() -> list[str]:
    return [body for lang, body in BLOCKS if lang == "python"]


def as_text(output: str | bytes | None) -> str:
    """What a stopped child wrote (typeshed allows bytes here even in text mode)."""
    return output.decode() if isinstance(output, bytes) else output or ""


def run_python(
    broker: BrokerProcess,
    block: str,
    forever: bool,
    doc_url: str = DOC_URL,
    url: str = "",
    limit: float = FOREVER,
) -> str:
    env = {**os.environ, "KAPOKMQ_URL": broker.http, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", RUNNER]
    source = block.replace(doc_url, url or broker.http)
    try:
        done = subprocess.run(
            command, input=source, env=env, capture_output=True, text=True, timeout=limit
        )
    except subprocess.TimeoutExpired as stopped:
        assert forever, f"did not end within {limit} s:\n{block}\n{as_text(stopped.stderr)}"
        return as_text(stopped.stdout)
    assert not forever, f"a consuming block ended:\n{done.stdout}{done.stderr}"
    assert done.returncode == 0, f"{block}\n{done.stderr}"
    return done.stdout


def test_every_block_is_one_that_is_checked() -> None:
    assert {lang for lang, _ in BLOCKS} <= {"python", "sh", "js"}
    assert len(python_blocks()) == 6


@pytest.mark.parametrize("index", range(6))
def test_python_example_runs_as_printed(broker: BrokerProcess, index: int) -> None:
    block = python_blocks()[index]
    forever = "for msg in consumer" in block or "consumer.run(" in block
    if forever:  # something for it to receive
        with SyncProducer(broker.http, "orders", "seed") as producer:
            producer.send("seeded")
    out = run_python(broker, block, forever)
    if forever:
        assert "seeded" in out, out
    if "count_reply" in block:
        assert out.splitlines() == ["reply None", "reply None"]
    if "console.requeue" in block:
        assert "no dead or consumed message with that messageCode" in out, out


@pytest.mark.timeout(240)  # 100,000 messages produced and consumed on a shared machine
def test_command_line_examples_run_as_printed(broker: BrokerProcess, tmp_path: Path) -> None:
    (block,) = [body for lang, body in BLOCKS if lang == "sh"]
    commands = [
        line
        for line in block.splitlines()
        if line.strip()
        and not line.startswith(("#", " "))
        and not line.endswith("\\")
        and not any(mark in line for mark in ("CODE", "[", " | count |"))
    ]
    assert len(commands) == 10
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(5000)))
    with SyncProducer(broker.http, "a", "seed") as producer:  # what `consume --topic a` moves
        producer.send_many([f"a{i}" for i in range(100)])
    env = {**os.environ, "KAPOKMQ_URL": broker.http, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for command in commands:
        forever = command.split("#")[0].split() == ["kapokmq", "consume", "--topic", "orders"]
        if command.startswith("kapokmq consume --topic orders"):  # each one, as if alone
            with SyncProducer(broker.http, "orders", "seed") as producer:
                producer.send_many([f"o{i}" for i in range(20)])
        shell = subprocess.Popen(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a pipeline is stopped as a whole
        )
        started = time.monotonic()
        try:
            _, errors = shell.communicate(timeout=FOREVER if forever else 60)
            print(f"{time.monotonic() - started:.1f} s: {command}")  # shown by pytest -s
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
            assert forever, f"{command} did not end"
            continue
        assert not forever, f"{command} ended: {errors}"
        assert shell.returncode == 0, f"{command}\n{errors}"


@pytest.mark.timeout(90)
async def test_cluster_example_runs_as_printed(tmp_path: Path) -> None:
    """docs/cluster.md's cluster clients: 1001 messages through a registry's broker."""
    (block,) = [body for lang, body in fenced("cluster.md") if lang == "python"]
    async with one_broker_cluster(tmp_path) as (registry, broker):
        await asyncio.to_thread(
            run_python, broker, block, True, "http://127.0.0.1:8031", registry.http, 15.0
        )  # time for 1001 messages to be consumed and acked on a busy machine
        async with ConsoleClient(broker.http) as console:
            assert (await console.count())["consumed"] == 1001

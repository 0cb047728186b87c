"""The optional picows listener (server.fastPort) speaks exactly like the main port."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import (
    MATCHED,
    MISMATCH,
    PROMPT,
    consumer,
    expect_silence,
    frame,
    producer,
    publish,
    recv_push,
)
from tests.harness import BrokerProcess

FAST = re.compile(r"\(picows\) on ws://[^:]+:(\d+)")


@pytest.fixture(scope="module")
def brokers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BrokerProcess, BrokerProcess]]:
    """(main port, fast port) of one broker process."""
    cwd: Path = tmp_path_factory.mktemp("fast")
    settings = {"server.fastPort": 0, "mq.maxMessageBytes": 1000}
    with started_broker(cwd, settings) as broker:
        match = FAST.search(broker.log())
        assert match, broker.log()
        yield broker, BrokerProcess(port=int(match.group(1)))


async def test_push_and_ack_on_fast_port(brokers: tuple[BrokerProcess, BrokerProcess]) -> None:
    _, fast = brokers
    async with aiohttp.ClientSession() as http:
        c = await consumer(http, fast, "fast-a")
        p = await producer(http, fast, "fast-a")
        await publish(p, "hello <fast> & co")
        push = await recv_push(c)
        assert push["MessageData"] == "hello <fast> & co"
        assert push["Topic"] == "fast-a" and push["Status"] == -1
        await c.send_str(push["MessageCode"])
        await expect_silence(c)


async def test_main_and_fast_port_share_the_broker(
    brokers: tuple[BrokerProcess, BrokerProcess],
) -> None:
    main, fast = brokers
    async with aiohttp.ClientSession() as http:
        c = await consumer(http, fast, "fast-b")
        p = await producer(http, main, "fast-b")
        await publish(p, "from the main port")
        assert (await recv_push(c))["MessageData"] == "from the main port"


async def test_bad_frame_gets_error_and_connection_stays(
    brokers: tuple[BrokerProcess, BrokerProcess],
) -> None:
    _, fast = brokers
    async with aiohttp.ClientSession() as http:
        p = await producer(http, fast, "fast-c")
        await p.send_str("{not json")
        reply = await p.receive(timeout=5)
        assert reply.type is aiohttp.WSMsgType.TEXT and reply.data.startswith("error: ")
        await publish(p, "still open", delay=0)


async def test_too_big_closes_1009(brokers: tuple[BrokerProcess, BrokerProcess]) -> None:
    _, fast = brokers
    async with aiohttp.ClientSession() as http:
        p = await producer(http, fast, "fast-d")
        await p.send_str(frame("x" * 2000))
        msg = await p.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009


async def test_wrong_keys_reprompt_then_close_1008(
    brokers: tuple[BrokerProcess, BrokerProcess],
) -> None:
    _, fast = brokers
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{fast.ws}/Producers/Conn/fast-e/p")
        assert await ws.receive_str(timeout=5) == PROMPT
        for attempt in range(5):
            await ws.send_str("wrong")
            assert await ws.receive_str(timeout=5) == MISMATCH
            if attempt < 4:
                assert await ws.receive_str(timeout=5) == PROMPT
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008


async def test_right_key_after_a_wrong_one(brokers: tuple[BrokerProcess, BrokerProcess]) -> None:
    _, fast = brokers
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{fast.ws}/Consumers/Conn/fast-f/c")
        assert await ws.receive_str(timeout=5) == PROMPT
        await ws.send_str("wrong")
        assert await ws.receive_str(timeout=5) == MISMATCH
        assert await ws.receive_str(timeout=5) == PROMPT
        await ws.send_str("test")
        assert await ws.receive_str(timeout=5) == MATCHED


async def test_unknown_path_is_refused(brokers: tuple[BrokerProcess, BrokerProcess]) -> None:
    _, fast = brokers
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{fast.ws}/Nope/Conn/t/x")
        assert info.value.status == 404

"""Both WebSocket engines of the main port (server.wsEngine) speak exactly alike, and the
first-request router (server/listener.py) hands every kind of connection to the right one."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yarl

from kapokmq.server.session import CLOSE_GRACE
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


@pytest.fixture(scope="module", params=["picows", "aiohttp"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    cwd: Path = tmp_path_factory.mktemp(request.param)
    settings = {"server.wsEngine": request.param, "mq.maxMessageBytes": 1000}
    with started_broker(cwd, settings) as proc:
        yield proc


async def test_push_and_ack(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        c = await consumer(http, broker, "fast-a")
        p = await producer(http, broker, "fast-a")
        await publish(p, "hello <engine> & co")
        push = await recv_push(c)
        assert push["MessageData"] == "hello <engine> & co"
        assert push["Topic"] == "fast-a" and push["Status"] == -1
        await c.send_str(push["MessageCode"])
        await expect_silence(c)


async def test_producer_and_consumer_meet(
    broker: BrokerProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        c = await consumer(http, broker, "fast-b")
        p = await producer(http, broker, "fast-b")
        await publish(p, "across connections")
        assert (await recv_push(c))["MessageData"] == "across connections"


async def test_bad_frame_gets_error_and_connection_stays(
    broker: BrokerProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        p = await producer(http, broker, "fast-c")
        await p.send_str("{not json")
        reply = await p.receive(timeout=5)
        assert reply.type is aiohttp.WSMsgType.TEXT and reply.data.startswith("error: ")
        await publish(p, "still open", delay=0)


async def test_too_big_closes_1009(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        p = await producer(http, broker, "fast-d")
        await p.send_str(frame("x" * 2000))
        msg = await p.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009


async def test_wrong_keys_reprompt_then_close_1008(
    broker: BrokerProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{broker.ws}/Producers/Conn/fast-e/p")
        assert await ws.receive_str(timeout=5) == PROMPT
        for attempt in range(5):
            await ws.send_str("wrong")
            assert await ws.receive_str(timeout=5) == MISMATCH
            if attempt < 4:
                assert await ws.receive_str(timeout=5) == PROMPT
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008


async def test_right_key_after_a_wrong_one(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{broker.ws}/Consumers/Conn/fast-f/c")
        assert await ws.receive_str(timeout=5) == PROMPT
        await ws.send_str("wrong")
        assert await ws.receive_str(timeout=5) == MISMATCH
        assert await ws.receive_str(timeout=5) == PROMPT
        await ws.send_str("test")
        assert await ws.receive_str(timeout=5) == MATCHED


async def test_unknown_path_is_refused(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{broker.ws}/Nope/Conn/t/x")
        assert info.value.status == 404


async def test_a_path_escape_that_is_not_utf8_names_the_same_topic_on_both_engines(
    broker: BrokerProcess,
) -> None:
    """`%FF` in the path: U+FFFD in the topic and id, however the upgrade is served (aiohttp's
    match_info alone would keep `%FF`, the picows engine decodes it)."""
    async with aiohttp.ClientSession() as http:
        urls = [
            yarl.URL(f"{broker.ws}/{role}/Conn/odd%FFtopic/id%FE", encoded=True)
            for role in ("Producers", "Consumers")
        ]
        p, c = [await http.ws_connect(url) for url in urls]
        for ws in (p, c):
            assert await ws.receive_str(timeout=5) == PROMPT
            await ws.send_str("test")
            assert await ws.receive_str(timeout=5) == MATCHED
        await publish(p, "odd")
        push = await recv_push(c)
        assert push["Topic"] == "odd\ufffdtopic" and push["MessageData"] == "odd"
        async with http.post(
            f"{broker.http}/Console/GetProducers", headers={"secretKey": "test"}
        ) as resp:
            producers = (await resp.json())["data"]
        assert {"odd\ufffdtopic"} == {r["Topic"] for r in producers if r["Topic"].startswith("odd")}
        assert any(r["ProducerId"] == "id\ufffd" for r in producers)


async def raw_answer(port: int, request: bytes) -> bytes:
    """The status line and headers answered to ``request`` (a raw upgrade head)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


async def test_firefox_connection_header_upgrades(broker: BrokerProcess) -> None:
    """Firefox sends `Connection: keep-alive, Upgrade`; picows alone refuses that token
    list (400), so the picows engine leaves such an upgrade to aiohttp."""
    request = upgrade_request("/Producers/Conn/firefox/p").replace(
        b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(request + masked_text(b"test") + masked_text(frame("from firefox").encode()))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    assert await asyncio.wait_for(read_text_frame(reader), 5) == MATCHED.encode()
    assert await asyncio.wait_for(read_text_frame(reader), 5) == b"ok"
    writer.close()


@pytest.mark.parametrize(
    ("name", "old", "new", "status"),
    [
        ("no key", b"Sec-WebSocket-Key", b"X-Key", b"400"),
        ("no version", b"Sec-WebSocket-Version: 13", b"X-V: 1", b"400"),
        ("no connection", b"Connection: Upgrade", b"X-C: 1", b"400"),
        (
            "foreign origin",
            b"Host: 127.0.0.1",
            b"Host: 127.0.0.1\r\nOrigin: http://a.example",
            b"403",
        ),
    ],
)
async def test_refused_upgrades_carry_cors_on_both_engines(
    broker: BrokerProcess, name: str, old: bytes, new: bytes, status: bytes
) -> None:
    request = upgrade_request("/Consumers/Conn/refused/c")
    assert old in request
    head = await raw_answer(broker.port, request.replace(old, new))
    assert head.split(b" ")[1] == status, head
    assert b"\r\nAccess-Control-Allow-Origin: *\r\n" in head, head
    assert b"\r\nAccess-Control-Allow-Credentials: true\r\n" in head, head


async def test_unescaped_utf8_topic_in_the_upgrade_path(broker: BrokerProcess) -> None:
    """A raw UTF-8 path names the same topic as its percent-encoded form, on both engines
    (aiohttp's own parser answers it 400: server/listener.py escape_request_target)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(upgrade_request("/Producers/Conn/主题/p") + masked_text(b"test"))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    assert await asyncio.wait_for(read_text_frame(reader), 5) == MATCHED.encode()
    async with aiohttp.ClientSession() as http:
        c = await consumer(http, broker, "主题")
        writer.write(masked_text(frame("你好").encode()))
        assert await asyncio.wait_for(read_text_frame(reader), 5) == b"ok"
        push = await recv_push(c)
        assert push["Topic"] == "主题" and push["MessageData"] == "你好"
    writer.close()


# ---------------------------------------------------------------- the router (picows engine)
@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with started_broker(tmp_path_factory.mktemp("routed")) as proc:
        yield proc


def upgrade_request(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def masked_text(payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload  # zero mask key


async def read_text_frame(reader: asyncio.StreamReader) -> bytes:
    first, length = await reader.readexactly(2)
    assert first == 0x81 and length < 126, (first, length)
    return await reader.readexactly(length)


async def upgraded(reader: asyncio.StreamReader) -> None:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head


async def test_head_split_into_single_bytes(routed: BrokerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", routed.port)
    for byte in upgrade_request("/Consumers/Conn/split/c"):
        writer.write(bytes((byte,)))
        await writer.drain()
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    writer.close()


async def test_frames_sent_with_the_upgrade_request(routed: BrokerProcess) -> None:
    """Bytes after the head in the same packet reach the WebSocket engine, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", routed.port)
    writer.write(upgrade_request("/Producers/Conn/eager/p") + masked_text(b"test"))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    assert await asyncio.wait_for(read_text_frame(reader), 5) == MATCHED.encode()
    writer.close()


async def test_keep_alive_http_then_websocket_upgrade(routed: BrokerProcess) -> None:
    """A connection that starts as plain HTTP stays with aiohttp, upgrades included."""
    reader, writer = await asyncio.open_connection("127.0.0.1", routed.port)
    for _ in range(2):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
    writer.write(upgrade_request("/Consumers/Conn/kept/c"))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    writer.close()


async def test_oversized_head_is_answered_not_hung(routed: BrokerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", routed.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), 5)
    assert status.split(b" ")[1] in (b"400", b"431"), status
    writer.close()


async def test_plain_get_on_websocket_path_is_400(routed: BrokerProcess) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{routed.http}/Producers/Conn/t/p") as resp,
    ):
        assert resp.status == 400


async def test_replies_keep_frame_order_within_one_read(broker: BrokerProcess) -> None:
    """Good and bad frames written together: `ok`, `error: ...`, `ok`, in that order,
    and both good messages stored in order (the picows engine batches per read)."""
    topic = "one-read"
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(upgrade_request(f"/Producers/Conn/{topic}/p"))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    writer.write(masked_text(b"test"))
    assert await asyncio.wait_for(read_text_frame(reader), 5) == MATCHED.encode()
    writer.write(
        masked_text(frame("first").encode())
        + masked_text(b"{oops")
        + masked_text(frame("second").encode())
    )
    assert await asyncio.wait_for(read_text_frame(reader), 5) == b"ok"
    assert (await asyncio.wait_for(read_text_frame(reader), 5)).startswith(b"error: ")
    assert await asyncio.wait_for(read_text_frame(reader), 5) == b"ok"
    writer.close()
    async with aiohttp.ClientSession() as http:
        c = await consumer(http, broker, topic)
        assert (await recv_push(c))["MessageData"] == "first"
        assert (await recv_push(c))["MessageData"] == "second"


@pytest.fixture(scope="module", params=["picows", "aiohttp"])
def impatient(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    settings = {"server.wsEngine": request.param, "mq.keyTimeout": 1}
    with started_broker(tmp_path_factory.mktemp(f"key-{request.param}"), settings) as proc:
        yield proc


async def test_no_key_in_time_closes_1008(impatient: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{impatient.ws}/Consumers/Conn/idle/c")
        assert await ws.receive_str(timeout=5) == PROMPT
        msg = await ws.receive(timeout=5)  # we never answer the prompt
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008


async def test_key_in_time_keeps_the_connection(impatient: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        c = await consumer(http, impatient, "patient")
        p = await producer(http, impatient, "patient")
        await expect_silence(p, 1.5)  # past mq.keyTimeout: no close, the timer is gone
        await publish(p, "still here")
        assert (await recv_push(c))["MessageData"] == "still here"


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, length = await reader.readexactly(2)
    assert length < 126
    return first & 0x0F, await reader.readexactly(length)


async def test_frames_then_a_ping_in_one_read_are_answered(broker: BrokerProcess) -> None:
    """A read that ends with a PING (answered by the engine itself) still gets its `ok`s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(upgrade_request("/Producers/Conn/pinged/p") + masked_text(b"test"))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    assert await asyncio.wait_for(read_text_frame(reader), 5) == MATCHED.encode()
    ping = bytes((0x89, 0x80 | 2)) + b"\0\0\0\0" + b"hi"
    writer.write(masked_text(frame("a").encode()) + masked_text(frame("b").encode()) + ping)
    got: list[tuple[int, bytes]] = []
    while len(got) < 3:
        got.append(await asyncio.wait_for(read_frame(reader), 5))
    assert sorted(got) == [(0x1, b"ok"), (0x1, b"ok"), (0xA, b"hi")]
    writer.close()


async def test_frames_before_a_too_big_one_are_answered_before_the_close(
    broker: BrokerProcess,
) -> None:
    """A good frame and a too-big one in one read: `ok` for the stored one, then close 1009."""
    topic = "big-after-good"
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(upgrade_request(f"/Producers/Conn/{topic}/p"))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    writer.write(masked_text(b"test"))
    assert await asyncio.wait_for(read_text_frame(reader), 5) == MATCHED.encode()
    big = frame("x" * 1100).encode()  # above the fixture's mq.maxMessageBytes (1000)
    writer.write(
        masked_text(frame("small").encode())
        + bytes((0x81, 0x80 | 126))
        + len(big).to_bytes(2, "big")
        + b"\0\0\0\0"
        + big
    )
    assert await asyncio.wait_for(read_text_frame(reader), 5) == b"ok"
    first, _ = await asyncio.wait_for(reader.readexactly(2), 5)
    assert first == 0x88  # the close frame follows the reply
    writer.close()


async def closed_for_a_too_big_frame(
    broker: BrokerProcess,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A logged-in producer connection that has just read the broker's close 1009."""
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(upgrade_request("/Producers/Conn/linger/p") + masked_text(b"test"))
    await upgraded(reader)
    assert await asyncio.wait_for(read_text_frame(reader), 5) == PROMPT.encode()
    assert await asyncio.wait_for(read_text_frame(reader), 5) == MATCHED.encode()
    big = frame("x" * 1100).encode()  # above the fixture's mq.maxMessageBytes (1000)
    writer.write(bytes((0x81, 0x80 | 126)) + len(big).to_bytes(2, "big") + b"\0\0\0\0" + big)
    assert await asyncio.wait_for(read_frame(reader), 5) == (0x8, b"\x03\xf1message too big")
    return reader, writer


@pytest.mark.parametrize("broker", ["picows"], indirect=True)  # aiohttp: docs/protocol.md
async def test_after_its_close_the_broker_reads_until_the_clients_answer(
    broker: BrokerProcess,
) -> None:
    """docs/protocol.md "WebSocket sessions": after its close frame the broker keeps the
    connection open for the client's answering close, reading (and ignoring) what the
    client sent meanwhile, then ends it cleanly. Ending it at once answered the client's
    next frame with a reset, which can cost a browser the close frame itself: it then
    saw 1006, not 1009 (tests/browser/test_js_client.py)."""
    reader, writer = await closed_for_a_too_big_frame(broker)
    writer.write(masked_text(frame("sent before it saw the close").encode()))
    with pytest.raises(TimeoutError):  # neither an answer nor the end: it waits for ours
        await asyncio.wait_for(reader.read(1), 0.5)
    writer.write(bytes((0x88, 0x80 | 2)) + b"\0\0\0\0" + (1009).to_bytes(2, "big"))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # a clean end, not a reset
    writer.close()


@pytest.mark.parametrize("broker", ["picows"], indirect=True)
async def test_a_client_that_never_answers_the_close_is_cut_off(broker: BrokerProcess) -> None:
    reader, writer = await closed_for_a_too_big_frame(broker)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert asyncio.get_running_loop().time() - started >= CLOSE_GRACE - 0.1
    writer.close()

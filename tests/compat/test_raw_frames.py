"""docs/protocol.md "WebSocket sessions", frame by frame: what a library client never sends
(a close frame without a code, text that is not UTF-8, heads without Host), sent over a raw
socket, and answered alike on both engines (CI runs this file on each)."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import MATCHED, MISMATCH, PROMPT, api, wait_status
from tests.harness import SECRET, BrokerProcess

TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8
# reserved (1004, 1005, 1006, 1015), unassigned (1016-2999) or out of range
INVALID_CLOSE_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    with started_broker(tmp_path_factory.mktemp("raw_frames")) as proc:
        yield proc


def upgrade_head(path: str, host: str | None = "127.0.0.1", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def masked(opcode: int, payload: bytes) -> bytes:
    """One final client frame (masked, as RFC 6455 5.3 wants), payload < 64 KiB."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x80 | opcode, 0x80 | size]) if size < 126 else bytes([0x80 | opcode, 0xFE])
    if size >= 126:
        head += struct.pack(">H", size)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + body


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, mb: BrokerProcess, path: str) -> RawWebSocket:
        reader, writer = await asyncio.open_connection(mb.addr, mb.port)
        writer.write(upgrade_head(path))
        status = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0]
        assert status == b"HTTP/1.1 101 Switching Protocols", status
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes) -> None:
        self.writer.write(masked(opcode, payload))

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame (servers do not mask), as (opcode, payload)."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 5)
        size = b1 & 0x7F
        if size == 126:
            (size,) = struct.unpack(">H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack(">Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await asyncio.wait_for(self.reader.readexactly(size), 5)

    async def text(self) -> bytes:
        opcode, payload = await self.frame()
        assert opcode == TEXT, (opcode, payload)
        return payload

    async def login(self) -> None:
        assert await self.text() == PROMPT.encode()
        self.send(TEXT, SECRET.encode())
        assert await self.text() == MATCHED.encode()

    async def closed(self) -> bool:
        """Has the server closed the TCP connection (after its close frame)?"""
        return await asyncio.wait_for(self.reader.read(1), 5) == b""

    def end(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------- close frames
@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (struct.pack(">H", 1000) + b"bye", 1000),
        (struct.pack(">H", 1001), 1001),
        (struct.pack(">H", 4000) + b"app", 4000),  # an application's own code is echoed
        (struct.pack(">H", 1014), 1014),  # the last assigned code
        (struct.pack(">H", 3000), 3000),
        (struct.pack(">H", 4999) + b"app", 4999),
        (b"", 1000),  # no code: 1000 (0 and 1005 are not codes to send)
        # not codes a close frame may carry (RFC 6455 7.4): a protocol error
        *((struct.pack(">H", code), 1002) for code in INVALID_CLOSE_CODES),
        (b"\x03", 1002),  # one byte: half a code
        (struct.pack(">H", 1000) + b"b\xffe", 1007),  # a reason that is not UTF-8
    ],
    ids=[
        "1000",
        "1001",
        "4000",
        "1014",
        "3000",
        "4999",
        "no-code",
        *map(str, INVALID_CLOSE_CODES),
        "one-byte",
        "reason-not-utf8",
    ],
)
@pytest.mark.parametrize("kind", ["Producers", "Consumers"])
async def test_a_client_close_is_answered_with_its_own_code_if_valid(mb, kind, sent, answer):
    ws = await RawWebSocket.open(mb, f"/{kind}/Conn/close-{kind}/c1")
    await ws.login()
    ws.send(CLOSE, sent)
    opcode, payload = await ws.frame()
    assert opcode == CLOSE
    assert struct.unpack(">H", payload[:2])[0] == answer, payload
    assert await ws.closed()
    ws.end()


async def test_a_close_before_the_key_is_answered_too(mb):
    ws = await RawWebSocket.open(mb, "/Producers/Conn/close-early/p1")
    assert await ws.text() == PROMPT.encode()
    ws.send(CLOSE, b"")
    opcode, payload = await ws.frame()
    assert (opcode, payload[:2]) == (CLOSE, struct.pack(">H", 1000))
    ws.end()


async def test_frames_before_a_close_are_answered_and_frames_after_it_ignored(mb):
    """RFC 6455 5.5.1: nothing a client sends after its close frame is a message."""
    topic = "after-close"
    ws = await RawWebSocket.open(mb, f"/Producers/Conn/{topic}/p1")
    await ws.login()
    ws.writer.write(
        masked(TEXT, b'{"MessageData":"before"}')
        + masked(CLOSE, struct.pack(">H", 1000))
        + masked(TEXT, b'{"MessageData":"after"}')
    )
    assert await ws.text() == b"ok"  # answered ahead of the close frame
    opcode, payload = await ws.frame()
    assert (opcode, payload[:2]) == (CLOSE, struct.pack(">H", 1000))
    assert await ws.closed()
    ws.end()
    async with aiohttp.ClientSession() as session:
        listed = await api(session, mb, "/Console/GetMessageList", topic=topic, status=3)
    assert [m["Topic"] for m in listed["data"]] == [topic]  # "before" only


# ---------------------------------------------------------------------------- invalid UTF-8
async def test_text_frames_that_are_not_utf8_read_as_replacement_characters(mb):
    """Not a close 1007 (the original's gorilla/websocket does not check either): the
    frame is read as a binary one would be (docs/protocol.md "Differences")."""
    topic = "not-utf8"
    ws = await RawWebSocket.open(mb, f"/Producers/Conn/{topic}/p1")
    assert await ws.text() == PROMPT.encode()
    ws.send(TEXT, b"t\xffst")  # a wrong key: answered, asked again
    assert await ws.text() == MISMATCH.encode()
    assert await ws.text() == PROMPT.encode()
    ws.send(TEXT, SECRET.encode())
    assert await ws.text() == MATCHED.encode()
    ws.send(TEXT, b'{"MessageData":"a\xffb"}')
    assert await ws.text() == b"ok"
    ws.send(TEXT, b'{"MessageData":"\xff"')  # still checked as JSON
    assert (await ws.text()).startswith(b"error: ")
    ws.end()

    consumer = await RawWebSocket.open(mb, f"/Consumers/Conn/{topic}/c1")
    await consumer.login()
    push = orjson.loads(await consumer.text())
    assert push["MessageData"] == "a\ufffdb"
    consumer.send(TEXT, b"\xfe" + push["MessageCode"].encode())  # not its code: ignored
    consumer.send(TEXT, push["MessageCode"].encode())
    consumer.send(CLOSE, struct.pack(">H", 1000))
    assert (await consumer.frame())[0] == CLOSE
    consumer.end()
    async with aiohttp.ClientSession() as session:
        await wait_status(session, mb, push["MessageCode"], 1)


# ---------------------------------------------------------------------------- upgrade heads
@pytest.mark.parametrize(
    ("host", "extra"),
    [(None, ""), ("127.0.0.1", "Host: 127.0.0.1\r\n"), ("a", "User-Agent: x\r\nUser-Agent: y\r\n")],
    ids=["no-host", "two-hosts", "two-user-agents"],
)
async def test_an_upgrade_head_aiohttp_refuses_is_400_on_both_engines(mb, host, extra):
    reader, writer = await asyncio.open_connection(mb.addr, mb.port)
    writer.write(upgrade_head("/Producers/Conn/t/p1", host, extra))
    status = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).split(b"\r\n")[0]
    assert status.endswith(b" 400 Bad Request"), status
    writer.close()

"""docs/protocol.md "Handshake": the secret-key handshake, byte for byte, and the WebSocket
paths."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.compat.conftest import started_broker
from tests.compat.wsclient import MATCHED, MISMATCH, PROMPT, expect_silence, publish
from tests.harness import BrokerProcess

KINDS = ["Producers", "Consumers"]


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    with started_broker(tmp_path_factory.mktemp("handshake")) as proc:
        yield proc


async def _text(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    data: str = msg.data
    return data


@pytest.mark.parametrize("kind", KINDS)
async def test_prompt_wrong_key_reprompt_then_success(mb, kind):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{mb.ws}/{kind}/Conn/t/id1")
        assert await _text(ws) == PROMPT
        await ws.send_str("wrong")
        assert await _text(ws) == MISMATCH
        assert await _text(ws) == PROMPT
        await ws.send_bytes(b"test")  # binary frames are accepted too
        assert await _text(ws) == MATCHED
        await ws.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_texts_are_exact_with_no_trailing_newline(mb, kind):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{mb.ws}/{kind}/Conn/t/id2")
        prompt = await ws.receive(timeout=5)
        assert prompt.type is aiohttp.WSMsgType.TEXT
        assert prompt.data.encode() == b"Please enter the secret key"
        await ws.send_str("test")
        matched = await ws.receive(timeout=5)
        assert matched.type is aiohttp.WSMsgType.TEXT
        assert matched.data.encode() == b"Secret key matching succeeded"
        # nothing else follows the success text
        await expect_silence(ws, 0.2)
        await ws.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_four_wrong_keys_then_right_key_still_logs_in(mb, kind):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{mb.ws}/{kind}/Conn/t/id3")
        for _ in range(4):
            assert await _text(ws) == PROMPT
            await ws.send_str("nope")
            assert await _text(ws) == MISMATCH
        assert await _text(ws) == PROMPT
        await ws.send_str("test")
        assert await _text(ws) == MATCHED
        if kind == "Producers":  # the session really started
            await publish(ws, "after four wrong keys")
        await ws.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_five_wrong_keys_close_1008(mb, kind):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{mb.ws}/{kind}/Conn/t/id4")
        for attempt in range(5):
            assert await _text(ws) == PROMPT
            await ws.send_str(f"wrong{attempt}")
            assert await _text(ws) == MISMATCH
        closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE, closing
        assert ws.close_code == 1008


async def test_key_compare_is_exact(mb):
    """A key with a trailing newline or different case is wrong."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{mb.ws}/Consumers/Conn/t/id5")
        for wrong in ("test\n", "TEST", "tes", "testt", ""):
            assert await _text(ws) == PROMPT
            await ws.send_str(wrong)
            assert await _text(ws) == MISMATCH
        await ws.close()


async def test_custom_secret_key(tmp_path):
    with started_broker(tmp_path, {"mq.secretKey": "s3cr3t"}) as proc:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{proc.ws}/Producers/Conn/t/p")
            assert await _text(ws) == PROMPT
            await ws.send_str("test")
            assert await _text(ws) == MISMATCH
            assert await _text(ws) == PROMPT
            await ws.send_str("s3cr3t")
            assert await _text(ws) == MATCHED
            await ws.close()


@pytest.mark.parametrize(
    "path",
    [
        "/Producers/Conn/t",
        "/Producers/Conn/t/p/extra",
        "/Producers/Conn",
        "/Consumers/Conn/t",
        "/Consumers/Conn/t/c/extra",
        "/Consumers/Conn/",
    ],
)
async def test_ws_path_with_missing_or_extra_segments_is_404(mb, path):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{mb.ws}{path}")
        assert info.value.status == 404
        async with session.get(f"{mb.http}{path}") as resp:
            assert resp.status == 404


@pytest.mark.parametrize("kind", KINDS)
async def test_plain_get_without_upgrade_is_400(mb, kind):
    url = f"{mb.http}/{kind}/Conn/t/x"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 400

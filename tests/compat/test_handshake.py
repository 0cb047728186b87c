"""DESIGN A2: the secret-key handshake, byte for byte."""

from __future__ import annotations

import aiohttp
import pytest

from tests.compat.wsclient import MATCHED, MISMATCH, PROMPT


@pytest.mark.parametrize("kind", ["Producers", "Consumers"])
async def test_prompt_wrong_key_reprompt_then_success(broker, kind):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{broker.ws}/{kind}/Conn/t/id1")
        first = await ws.receive(timeout=5)
        assert first.type is aiohttp.WSMsgType.TEXT and first.data == PROMPT
        await ws.send_str("wrong")
        assert await ws.receive_str(timeout=5) == MISMATCH
        assert await ws.receive_str(timeout=5) == PROMPT
        await ws.send_bytes(b"test")  # binary frames are accepted too
        assert await ws.receive_str(timeout=5) == MATCHED
        await ws.close()

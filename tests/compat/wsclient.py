"""Minimal raw WebSocket helpers for compatibility tests (no library client on purpose)."""

from __future__ import annotations

import aiohttp

from tests.harness import SECRET

PROMPT = "Please enter the secret key"
MATCHED = "Secret key matching succeeded"
MISMATCH = "Secret key matching error"


async def login(
    session: aiohttp.ClientSession, url: str, key: str = SECRET
) -> aiohttp.ClientWebSocketResponse:
    """Connect and complete the handshake; returns the open WebSocket."""
    ws = await session.ws_connect(url, autoping=True)
    assert await ws.receive_str(timeout=5) == PROMPT
    await ws.send_str(key)
    assert await ws.receive_str(timeout=5) == MATCHED
    return ws

"""The secret-key handshake (DESIGN A2, B3) and the HTTP key check."""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import WSMsgType, web

from kapokmq.login import MATCHED, MAX_ATTEMPTS, MISMATCH, PROMPT

POLICY_VIOLATION = 1008
NO_KEY = b"no secret key in time"

log = logging.getLogger(__name__)


def key_matches(given: str | bytes | None, secret: str) -> bool:
    """Constant-time comparison, so response timing does not leak the key."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, secret.encode())


async def handshake(
    ws: web.WebSocketResponse, secret: str, peer: str, timeout: float = 30.0
) -> bool:
    """Prompt for the key until it matches; after MAX_ATTEMPTS wrong keys, or with no
    right key within ``timeout`` seconds (mq.keyTimeout), close with 1008."""
    deadline = asyncio.get_running_loop().time() + timeout
    for _ in range(MAX_ATTEMPTS):
        await ws.send_str(PROMPT)
        try:
            msg = await ws.receive(timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            log.warning("closing %s: no secret key within %g s", peer, timeout)
            await ws.close(code=POLICY_VIOLATION, message=NO_KEY)
            return False
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return False
        if key_matches(msg.data, secret):
            await ws.send_str(MATCHED)
            return True
        await ws.send_str(MISMATCH)
    log.warning("closing %s after %d wrong secret keys", peer, MAX_ATTEMPTS)
    await ws.close(code=POLICY_VIOLATION, message=b"too many wrong secret keys")
    return False

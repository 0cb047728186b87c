"""The secret-key handshake (DESIGN A2, B3) and the HTTP key check."""

from __future__ import annotations

import hmac
import logging

from aiohttp import WSMsgType, web

PROMPT = "Please enter the secret key"
MATCHED = "Secret key matching succeeded"
MISMATCH = "Secret key matching error"
MAX_ATTEMPTS = 5
POLICY_VIOLATION = 1008

log = logging.getLogger(__name__)


def key_matches(given: str | bytes | None, secret: str) -> bool:
    """Constant-time comparison, so response timing does not leak the key."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, secret.encode())


async def handshake(ws: web.WebSocketResponse, secret: str, peer: str) -> bool:
    """Prompt for the key until it matches; after MAX_ATTEMPTS wrong keys close with 1008."""
    for _ in range(MAX_ATTEMPTS):
        await ws.send_str(PROMPT)
        msg = await ws.receive()
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return False
        if key_matches(msg.data, secret):
            await ws.send_str(MATCHED)
            return True
        await ws.send_str(MISMATCH)
    log.warning("closing %s after %d wrong secret keys", peer, MAX_ATTEMPTS)
    await ws.close(code=POLICY_VIOLATION, message=b"too many wrong secret keys")
    return False

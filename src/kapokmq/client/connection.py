"""Opening a WebSocket session: URL building and the secret-key handshake (texts in
kapokmq/login.py; docs/protocol.md "Handshake")."""

from __future__ import annotations

import asyncio
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from kapokmq.client.errors import (
    AuthenticationError,
    ConnectionLostError,
    ProtocolError,
    failure_reason,
)
from kapokmq.login import MATCHED, MISMATCH, PROMPT

DEFAULT_URL = "http://127.0.0.1:8011"
DEFAULT_SECRET_KEY = "test"

# Consumers may receive large messages; the broker's own limit (mq.maxMessageBytes) is smaller.
MAX_FRAME_BYTES = 64 * 1024 * 1024

# A broker that stops answering (SIGSTOP, a cut link) keeps its TCP connection open: after
# this many seconds without a frame aiohttp pings, and closes the connection when no pong
# came within half of it, so a hung broker is noticed within 1.5 x this (docs/client.md
# "Reconnecting, errors and closing"). Both broker engines answer pings.
DEFAULT_HEARTBEAT = 2.0

Role = Literal["Producers", "Consumers"]


def base_url(url: str, websocket: bool) -> str:
    """Normalise a broker address to its root, with ws(s) or http(s) scheme as asked.

    Accepts ``host:port``, ``http://``, ``https://``, ``ws://`` and ``wss://`` forms.
    """
    given = url
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    if parts.scheme not in ("http", "https", "ws", "wss"):
        raise ValueError(f"unsupported URL scheme in {given!r} (http, https, ws or wss)")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {given!r}")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
    except ValueError:
        raise ValueError(f"URL has a bad port: {given!r}") from None
    scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def session_url(url: str, role: Role, topic: str, client_id: str) -> str:
    """WebSocket URL of a producer or consumer session for ``topic``."""
    if not topic or not client_id:
        raise ValueError("topic and client id must not be empty")
    segments = (quote(topic, safe=""), quote(client_id, safe=""))
    return f"{base_url(url, websocket=True)}/{role}/Conn/{segments[0]}/{segments[1]}"


async def _receive_text(ws: aiohttp.ClientWebSocketResponse, step: str) -> str:
    msg = await ws.receive()
    if msg.type == aiohttp.WSMsgType.TEXT:
        return str(msg.data)
    if msg.type == aiohttp.WSMsgType.BINARY:
        return bytes(msg.data).decode("utf-8", "replace")
    if msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION:
        raise AuthenticationError(f"broker closed the connection during {step}: {msg.extra}")
    raise ConnectionLostError(f"connection closed during {step} ({msg.type.name})")


async def handshake(ws: aiohttp.ClientWebSocketResponse, secret_key: str) -> None:
    """Answer the broker's key prompt; raise AuthenticationError on a wrong key."""
    prompt = await _receive_text(ws, "the key prompt")
    if prompt != PROMPT:
        raise ProtocolError(f"expected the key prompt, got {prompt[:80]!r}")
    await ws.send_str(secret_key)
    answer = await _receive_text(ws, "key check")
    if answer == MATCHED:
        return
    if answer == MISMATCH:
        raise AuthenticationError("the broker rejected the secret key")
    raise ProtocolError(f"unexpected handshake reply {answer[:80]!r}")


async def open_session(
    http: aiohttp.ClientSession,
    url: str,
    secret_key: str,
    timeout: float,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
) -> aiohttp.ClientWebSocketResponse:
    """Connect and complete the handshake within ``timeout`` seconds; ``heartbeat`` as
    DEFAULT_HEARTBEAT (None: no pings, a hung broker is then never noticed).

    Network failures become ConnectionLostError (retryable); a wrong key stays
    AuthenticationError (fatal). The socket is closed on any failure.
    """
    try:
        ws = await asyncio.wait_for(
            http.ws_connect(
                url,
                max_msg_size=MAX_FRAME_BYTES,
                autoclose=True,
                autoping=True,
                heartbeat=heartbeat,
            ),
            timeout,
        )
    except aiohttp.WSServerHandshakeError as exc:
        raise ConnectionLostError(f"WebSocket upgrade refused ({exc.status}): {url}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ConnectionLostError(
            f"cannot connect to {url}: {failure_reason(exc, timeout)}"
        ) from exc
    try:
        await asyncio.wait_for(handshake(ws, secret_key), timeout)
    except TimeoutError as exc:
        await ws.close()
        raise ConnectionLostError(f"handshake with {url}: {failure_reason(exc, timeout)}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        await ws.close()
        raise ConnectionLostError(f"handshake with {url} failed: {exc}") from exc
    except BaseException:
        await ws.close()
        raise
    return ws

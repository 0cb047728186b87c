"""Minimal raw WebSocket and HTTP helpers for compatibility tests (no library client on purpose)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import orjson

from tests.harness import SECRET, BrokerProcess

PROMPT = "Please enter the secret key"
MATCHED = "Secret key matching succeeded"
MISMATCH = "Secret key matching error"
KEY_ERROR_BODY = b'{"code":-1,"msg":"Secret key matching error"}'

PUSH_RE = re.compile(
    r'\{"MessageCode":"(?P<code>[0-9a-f]{32})","MessageData":(?P<data>"(?:[^"\\]|\\.)*"),'
    r'"Topic":(?P<topic>"(?:[^"\\]|\\.)*"),"CreateTime":(?P<create>-?\d+),'
    r'"ConsumedTime":(?P<consumed>-?\d+),"DelayTime":(?P<delay>-?\d+),"Status":(?P<status>-?\d+)\}\n'
)


async def login(
    session: aiohttp.ClientSession, url: str, key: str = SECRET
) -> aiohttp.ClientWebSocketResponse:
    """Connect and complete the handshake; returns the open WebSocket."""
    ws = await session.ws_connect(url, autoping=True)
    assert await ws.receive_str(timeout=5) == PROMPT
    await ws.send_str(key)
    assert await ws.receive_str(timeout=5) == MATCHED
    return ws


async def producer(
    session: aiohttp.ClientSession, broker: BrokerProcess, topic: str, pid: str = "p1"
) -> aiohttp.ClientWebSocketResponse:
    return await login(session, f"{broker.ws}/Producers/Conn/{topic}/{pid}")


async def consumer(
    session: aiohttp.ClientSession, broker: BrokerProcess, topic: str, cid: str = "c1"
) -> aiohttp.ClientWebSocketResponse:
    return await login(session, f"{broker.ws}/Consumers/Conn/{topic}/{cid}")


def frame(data: str, delay: int | None = 0) -> str:
    """A producer frame exactly like the Go client's (JSON plus a trailing newline)."""
    body: dict[str, Any] = {"MessageData": data}
    if delay is not None:
        body["DelayTime"] = delay
    return orjson.dumps(body).decode() + "\n"


async def publish(ws: aiohttp.ClientWebSocketResponse, data: str, delay: int = 0) -> None:
    """Send one message and require the `ok` reply."""
    await ws.send_str(frame(data, delay))
    reply = await ws.receive(timeout=5)
    assert reply.type is aiohttp.WSMsgType.TEXT, reply
    assert reply.data == "ok", reply.data


async def recv_push(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> dict[str, Any]:
    """Receive one pushed message, checking its exact wire form (docs/protocol.md
    "Consumer session")."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    raw: str = msg.data
    assert PUSH_RE.fullmatch(raw), raw
    obj: dict[str, Any] = orjson.loads(raw)
    return obj


async def recv_many(
    ws: aiohttp.ClientWebSocketResponse, n: int, timeout: float = 5
) -> list[dict[str, Any]]:
    return [await recv_push(ws, timeout) for _ in range(n)]


async def expect_silence(ws: aiohttp.ClientWebSocketResponse, timeout: float = 0.3) -> None:
    """Nothing (no data frame, no close) arrives within ``timeout``."""
    try:
        msg = await ws.receive(timeout=timeout)
    except TimeoutError:
        return
    raise AssertionError(f"expected nothing, got {msg!r}")


async def api_raw(
    session: aiohttp.ClientSession,
    broker: BrokerProcess,
    path: str,
    key: str | None = SECRET,
    multipart: bool = False,
    **fields: Any,
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    """POST a form to an API route; returns (status, body, response)."""
    headers = {} if key is None else {"secretKey": key}
    data: aiohttp.FormData | dict[str, str]
    if multipart:
        data = aiohttp.FormData(default_to_multipart=True)
        for name, value in fields.items():
            data.add_field(name, str(value))
    else:
        data = {name: str(value) for name, value in fields.items()}
    async with session.post(f"{broker.http}{path}", data=data, headers=headers) as resp:
        body = await resp.read()
        return resp.status, body, resp


async def api(
    session: aiohttp.ClientSession, broker: BrokerProcess, path: str, **fields: Any
) -> Any:
    """POST with the right key; require HTTP 200 and return the decoded JSON."""
    status, body, _ = await api_raw(session, broker, path, **fields)
    assert status == 200, (status, body)
    return orjson.loads(body)


async def http_send(
    session: aiohttp.ClientSession,
    broker: BrokerProcess,
    topic: str,
    data: str,
    delay: int | str = 0,
) -> str:
    """Publish over HTTP; returns the MessageCode."""
    reply = await api(
        session, broker, "/Producer/Send", messageData=data, topic=topic, delayTime=delay
    )
    assert reply["code"] == 0, reply
    code: str = reply["msg"]
    return code


async def get_message(
    session: aiohttp.ClientSession, broker: BrokerProcess, code: str
) -> dict[str, Any]:
    reply = await api(session, broker, "/Console/GetMessage", messageCode=code)
    assert reply["code"] == 0, reply
    data: dict[str, Any] = reply["data"]
    return data


async def count_all(session: aiohttp.ClientSession, broker: BrokerProcess) -> int:
    reply = await api(session, broker, "/Console/CountMessage")
    count: int = reply["data"]["all"]
    return count


async def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Poll an async predicate until true (for server state that has no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await predicate():
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop the TCP connection without a close frame (a crashed or unplugged client)."""
    conn = ws._response.connection
    assert conn is not None and conn.transport is not None
    conn.transport.abort()


def local_time(t: float) -> str:
    """A GetMessageList time bound: Go's `2006-01-02 15:04:05` layout, local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


async def wait_status(
    session: aiohttp.ClientSession,
    broker: BrokerProcess,
    code: str,
    status: int,
    timeout: float = 5.0,
) -> None:
    """Wait until GetMessage reports ``status`` for ``code`` (acks get no reply to await)."""

    async def reached() -> bool:
        current: int = (await get_message(session, broker, code))["Status"]
        return current == status

    await wait_for(reached, timeout)

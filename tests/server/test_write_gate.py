"""The write gate (server/runtime.py refuse_writes): one place decides whether producer
writes are accepted, and every entry obeys it — both WebSocket engines and HTTP Send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from kapokmq.config import Config
from kapokmq.server.app import build_app
from kapokmq.server.main import listen
from kapokmq.server.runtime import BrokerRuntime
from tests.compat.wsclient import MATCHED, PROMPT, frame
from tests.harness import SECRET


class InProcess:
    def __init__(self, runtime: BrokerRuntime, port: int) -> None:
        self.runtime = runtime
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"


@pytest.fixture(params=["picows", "aiohttp"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[InProcess]:
    config = Config()
    config.server.port = 0
    config.server.wsEngine = request.param
    runtime = BrokerRuntime(config)
    runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
    await runner.setup()
    server = await listen(runtime, runner, None)
    try:
        yield InProcess(runtime, server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await runner.cleanup()
        runtime.close()


async def _producer(http: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{base}/Producers/Conn/gated/p1")
    assert await ws.receive_str(timeout=5) == PROMPT
    await ws.send_str(SECRET)
    assert await ws.receive_str(timeout=5) == MATCHED
    return ws


async def _send_http(http: aiohttp.ClientSession, base: str) -> dict[str, object]:
    async with http.post(
        f"{base}/Producer/Send",
        headers={"secretKey": SECRET},
        data={"messageData": "m", "topic": "gated", "delayTime": "0"},
    ) as resp:
        assert resp.status == 200
        answer: dict[str, object] = orjson.loads(await resp.read())
        return answer


async def test_refused_writes_answer_errors_and_nothing_is_stored(served: InProcess) -> None:
    runtime = served.runtime
    async with aiohttp.ClientSession() as http:
        ws = await _producer(http, served.ws)
        runtime.refuse_writes("storage", "storage unavailable: test", "storage unavailable: x")
        runtime.refuse_writes("slave", "this broker is a slave of m", "slave of m")
        await ws.send_str(frame("a"))
        await ws.send_str(frame("b"))
        for _ in range(2):  # one reply per frame, in order; the connection stays open
            assert await ws.receive_str(timeout=5) == "error: storage unavailable: test"
        assert await _send_http(http, served.http) == {
            "code": -1,
            "msg": "storage unavailable: x",
        }
        runtime.accept_writes("storage")  # the other source still refuses
        await ws.send_str(frame("c"))
        assert await ws.receive_str(timeout=5) == "error: this broker is a slave of m"
        assert runtime.broker.store.unconsumed() == 0
        runtime.accept_writes("slave")
        await ws.send_str(frame("d"))
        assert await ws.receive_str(timeout=5) == "ok"
        answer = await _send_http(http, served.http)
        assert answer["code"] == 0
        await asyncio.wait_for(ws.close(), 5)
    assert runtime.broker.store.unconsumed() == 2

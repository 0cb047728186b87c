"""POST /Producer/SendBatch (docs/protocol.md): many Sends in one request, each item by
Send's rules (server/send.py), one answer with every item's code, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from kapokmq.config import Config
from kapokmq.model import code_key
from kapokmq.server.app import build_app
from kapokmq.server.main import listen
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.send import MAX_BATCH
from tests.harness import SECRET
from tests.server.test_session import use_ticket

KEY_MISMATCH = {"code": -1, "msg": "Secret key matching error"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[BrokerRuntime, str]]:
    config = Config()
    config.server.port = 0
    runtime = BrokerRuntime(config)
    runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
    await runner.setup()
    server = await listen(runtime, runner, None)
    try:
        yield runtime, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await runner.cleanup()
        runtime.close()


async def batch(base: str, body: bytes, key: str | None = SECRET) -> Any:
    headers = {"secretKey": key} if key is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/Producer/SendBatch", data=body, headers=headers) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        return orjson.loads(await resp.read())


ITEMS = [
    {"topic": "b", "messageData": "one", "delayTime": 0},
    {"topic": "b", "messageData": "", "delayTime": 0},
    {"topic": "b", "messageData": "two", "delayTime": "x"},
    {"topic": "b", "messageData": "three", "delayTime": "5"},
    {"topic": "b", "messageData": ["no"], "delayTime": 0},
    "not an object",
    {"topic": "b", "messageData": "four"},
]
EXPECTED = [
    "ok",
    "Required data cannot be empty",
    "delayTime must be an integer, got 'x'",
    "ok",
    "messageData must be a string or an integer",
    "each message must be a JSON object",
    "delayTime is required and must be an integer",
]


@pytest.mark.parametrize("shape", ["array", "ndjson"])
async def test_every_item_gets_its_own_answer_in_order(
    served: tuple[BrokerRuntime, str], shape: str
) -> None:
    runtime, base = served
    if shape == "array":
        body = orjson.dumps(ITEMS)
    else:
        body = b"\n".join(orjson.dumps(item) for item in ITEMS) + b"\n\n"
    answer = await batch(base, body)
    assert list(answer) == ["code", "data"] and answer["code"] == 0
    got = ["ok" if a["code"] == 0 else a["msg"] for a in answer["data"]]
    assert got == EXPECTED
    stored = [
        runtime.broker.store.get(code_key(a["msg"])) for a in answer["data"] if a["code"] == 0
    ]
    assert [(m.data, m.delay_time) for m in stored if m is not None] == [("one", 0), ("three", 5)]


async def test_whole_request_errors(served: tuple[BrokerRuntime, str]) -> None:
    runtime, base = served
    assert await batch(base, orjson.dumps(ITEMS), key="wrong") == KEY_MISMATCH
    assert await batch(base, orjson.dumps(ITEMS), key=None) == KEY_MISMATCH
    for body in (b"[{", b'{"topic": "t"} x', b"[1] [2]"):
        answer = await batch(base, body)
        assert answer["code"] == -1 and answer["msg"].startswith("cannot parse the batch"), body
    assert await batch(base, b'"just a string"') == {
        "code": 0,
        "data": [{"code": -1, "msg": "each message must be a JSON object"}],
    }
    many = orjson.dumps([{"topic": "t", "messageData": "m", "delayTime": 0}] * (MAX_BATCH + 1))
    answer = await batch(base, many)
    assert answer == {"code": -1, "msg": f"a batch holds at most {MAX_BATCH} messages, got 10001"}
    too_big = b"[" + b'"' + b"x" * (4 << 20) + b'"]'  # over 3 x 1 MiB + 64 KiB
    answer = await batch(base, too_big)
    assert answer["code"] == -1 and "larger than" in answer["msg"]
    assert runtime.broker.store.unconsumed() == 0
    assert await batch(base, b"[]") == {"code": 0, "data": []}


async def test_write_gate_and_durable_failure_per_item(served: tuple[BrokerRuntime, str]) -> None:
    runtime, base = served
    body = orjson.dumps([{"topic": "g", "messageData": "m", "delayTime": 0}] * 2)
    runtime.refuse_writes("slave", "slave of m", "slave of m")
    answer = await batch(base, body)
    assert answer["data"] == [{"code": -1, "msg": "slave of m"}] * 2
    runtime.accept_writes("slave")
    disk: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    use_ticket(runtime, lambda: disk)
    pending = asyncio.ensure_future(batch(base, body))
    await asyncio.sleep(0.2)  # nothing may come back before the disk has answered
    assert not pending.done()
    disk.set_exception(OSError("storage unavailable: EIO"))
    answer = await asyncio.wait_for(pending, 5)
    assert answer["data"] == [{"code": -1, "msg": "storage unavailable: EIO"}] * 2


async def test_items_take_send_s_ttl_and_message_id(served: tuple[BrokerRuntime, str]) -> None:
    runtime, base = served
    items = [
        {"topic": "d", "messageData": "first", "delayTime": 0, "messageId": "o-1", "ttl": 60},
        {"topic": "d", "messageData": "repeat", "delayTime": 0, "messageId": "o-1"},
        {"topic": "d", "messageData": "bad", "delayTime": 0, "ttl": -1},
    ]
    first, repeat, bad = (await batch(base, orjson.dumps(items)))["data"]
    assert repeat == first and first["code"] == 0  # a repeat answers the first's code
    assert bad == {"code": -1, "msg": "ttl must be a whole number of seconds >= 0"}
    assert runtime.broker.lifetimes.ttl(code_key(first["msg"])) == 60
    assert runtime.broker.store.unconsumed() == 1

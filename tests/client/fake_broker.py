"""A tiny in-process broker speaking docs/protocol.md, for client unit tests.

Only what the client needs: the key handshake, producer replies (with a hook to force
`error:` replies), point-to-point push with acks, and two HTTP routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

PROMPT = "Please enter the secret key"
NO_REPLY = "<no reply>"  # a reply_hook result: swallow the frame silently
DROP = "<drop>"  # a reply_hook result: close the connection instead of replying
TOO_BIG = "<too big>"  # a reply_hook result: close 1009, as the broker above mq.maxMessageBytes
# a reply_hook result: store the message, answer it with the next frame's reply (as the
# broker answers a read's frames together), never if that one drops the connection
HOLD = "<hold>"


class FakeBroker:
    def __init__(self, secret_key: str = "test") -> None:
        self.secret_key = secret_key
        self.messages: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, asyncio.Queue[str]] = {}
        self.received_frames: list[str] = []
        self.acks: list[str] = []
        # Called with each producer frame; returns the reply to send, or None for the default.
        self.reply_hook: Callable[[str], str | None] | None = None
        self.sockets: set[web.WebSocketResponse] = set()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def queue(self, topic: str) -> asyncio.Queue[str]:
        return self.queues.setdefault(topic, asyncio.Queue())

    async def start(self, port: int = 0) -> int:
        app = web.Application()
        app.router.add_get("/Producers/Conn/{topic}/{id}", self._producer)
        app.router.add_get("/Consumers/Conn/{topic}/{id}", self._consumer)
        app.router.add_post("/Producer/Send", self._http_send)
        app.router.add_post("/Console/Ping", self._ping)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _store(self, topic: str, data: str, delay: int) -> str:
        code = hashlib.md5((data + uuid.uuid4().hex).encode()).hexdigest()
        self.messages[code] = {
            "MessageCode": code,
            "MessageData": data,
            "Topic": topic,
            "CreateTime": int(time.time()),
            "ConsumedTime": 0,
            "DelayTime": delay,
            "Status": -1,
        }
        self.queue(topic).put_nowait(code)
        return code

    async def _login(self, request: web.Request) -> web.WebSocketResponse | None:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        for _ in range(5):
            await ws.send_str(PROMPT)
            msg = await ws.receive()
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return None
            key = msg.data if isinstance(msg.data, str) else msg.data.decode()
            if key == self.secret_key:
                await ws.send_str("Secret key matching succeeded")
                return ws
            await ws.send_str("Secret key matching error")
        await ws.close(code=1008, message=b"too many wrong keys")
        return None

    async def _producer(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._login(request)
        if ws is None:
            return web.WebSocketResponse()
        topic = request.match_info["topic"]
        held: list[str] = []
        try:
            async for msg in ws:
                frame = msg.data if msg.type == WSMsgType.TEXT else bytes(msg.data).decode()
                self.received_frames.append(frame)
                reply = self.reply_hook(frame) if self.reply_hook else None
                if reply is None or reply == HOLD:
                    try:
                        body = orjson.loads(frame)
                        self._store(topic, body["MessageData"], body.get("DelayTime", 0))
                        answer = "ok"
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        answer = "error: not a message"
                    if reply == HOLD:
                        held.append(answer)
                        continue
                    reply = answer
                if reply in (DROP, TOO_BIG):
                    await ws.close(code=1009 if reply == TOO_BIG else 1011)
                    break
                for answer in held:
                    await ws.send_str(answer)
                held.clear()
                if reply != NO_REPLY:
                    await ws.send_str(reply)
        finally:
            self.sockets.discard(ws)
        return ws

    async def _consumer(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self._login(request)
        if ws is None:
            return web.WebSocketResponse()
        queue = self.queue(request.match_info["topic"])

        async def push() -> None:
            while True:
                code = await queue.get()
                payload = orjson.dumps(self.messages[code]) + b"\n"
                await ws.send_str(payload.decode())

        pusher = asyncio.create_task(push())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data in self.messages:
                    self.acks.append(msg.data)
                    self.messages[msg.data]["Status"] = 1
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            self.sockets.discard(ws)
        return ws

    def _key_ok(self, request: web.Request) -> bool:
        return request.headers.get("secretKey") == self.secret_key

    async def _http_send(self, request: web.Request) -> web.Response:
        if not self._key_ok(request):
            return web.json_response({"code": -1, "msg": "Secret key matching error"})
        form = await request.post()
        data, topic = str(form.get("messageData", "")), str(form.get("topic", ""))
        if not data or not topic:
            return web.json_response({"code": -1, "msg": "Required data cannot be empty"})
        return web.json_response({"code": 0, "msg": self._store(topic, data, 0)})

    async def _ping(self, request: web.Request) -> web.Response:
        if not self._key_ok(request):
            return web.json_response({"code": -1, "msg": "Secret key matching error"})
        return web.json_response({"code": 0})

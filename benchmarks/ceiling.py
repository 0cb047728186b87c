"""Transport ceiling: bare servers that speak just enough of the protocol for the load
generator and do no broker work at all.

    python -m benchmarks.ceiling {aiohttp,picows,http-httptools,http-aiohttp} [PORT]

HTTP (the wrk scenario): ``http-httptools`` parses each request with httptools, as the
broker's lean Send path does, and ``http-aiohttp`` is a bare aiohttp route; both answer
every request with the broker's Send answer (same headers, same size), in one write per
read.

WebSocket:
Producer connections get the handshake and one `ok` per frame; every producer frame is
relayed to a consumer connection (round-robin) as a constant push frame of the broker's
size, and consumer acks are read and dropped. Writes are batched per loop iteration like
the broker's. The broker's figures divided by these show what our own code costs on top
of the transport. Prints "listening on http://127.0.0.1:PORT" when ready.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiohttp import WSMsgType, web

from kapokmq.frames import OK_FRAME, text_frame

PROMPT = b"Please enter the secret key"
MATCHED = b"Secret key matching succeeded"
# a push of a 100-byte payload as the broker frames it (DESIGN A1), spelled out so the
# relay runs against any checkout's src (benchmarks.ab)
PUSH_FRAME = text_frame(
    b'{"MessageCode":"%s","MessageData":"%s","Topic":"bench","CreateTime":0,'
    b'"ConsumedTime":0,"DelayTime":0,"Status":-1}\n' % (b"0" * 32, b"0" * 10 + b"x" * 90)
)


class Outbox:
    """Frames for one connection, written in one call at the end of the loop iteration."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        if not self.frames:
            self.loop.call_soon(self.flush)
        self.frames.append(frame)

    def flush(self) -> None:
        if self.frames and not self.transport.is_closing():
            self.transport.write(b"".join(self.frames))
        self.frames.clear()


class Relay:
    def __init__(self) -> None:
        self.consumers: list[Outbox] = []
        self.rr = 0

    def push(self) -> None:
        consumers = self.consumers
        if consumers:
            self.rr = (self.rr + 1) % len(consumers)
            consumers[self.rr].send(PUSH_FRAME)


RELAY = Relay()


# ------------------------------------------------------------------------------- aiohttp
async def aiohttp_handshake(ws: web.WebSocketResponse) -> None:
    await ws.send_str(PROMPT.decode())
    await ws.receive()
    await ws.send_str(MATCHED.decode())


async def aiohttp_producer(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    await aiohttp_handshake(ws)
    replies = Outbox(request.transport, asyncio.get_running_loop())
    while True:
        msg = await ws.receive()
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            break
        replies.send(OK_FRAME)
        RELAY.push()
    return ws


async def aiohttp_consumer(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    await aiohttp_handshake(ws)
    box = Outbox(request.transport, asyncio.get_running_loop())
    RELAY.consumers.append(box)
    try:
        while True:
            msg = await ws.receive()
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
    finally:
        RELAY.consumers.remove(box)
    return ws


async def serve_aiohttp(port: int) -> None:
    app = web.Application()
    app.router.add_get("/Producers/Conn/{topic}/{id}", aiohttp_producer)
    app.router.add_get("/Consumers/Conn/{topic}/{id}", aiohttp_consumer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server: Any = site._server
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


# ------------------------------------------------------------------------------- picows
async def serve_picows(port: int) -> None:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    loop = asyncio.get_running_loop()
    close = WSMsgType.CLOSE  # read per frame: a local, as the broker's own adapter does

    class Conn(WSListener):
        def __init__(self, producer: bool) -> None:
            self.producer = producer
            self.authed = False
            self.box: Outbox | None = None
            self.oks: list[bytes] = []

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.box = Outbox(transport.underlying_transport, loop)
            transport.send(WSMsgType.TEXT, PROMPT)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            if self.box in RELAY.consumers:
                RELAY.consumers.remove(self.box)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is close:
                transport.disconnect()
            elif not self.authed:
                self.authed = True
                transport.send(WSMsgType.TEXT, MATCHED)
                if not self.producer:
                    assert self.box is not None
                    RELAY.consumers.append(self.box)
            elif self.producer:
                # replies go out once per received buffer, like the broker's per-iteration batch
                self.oks.append(OK_FRAME)
                RELAY.push()
                if frame.last_in_buffer:
                    transport.underlying_transport.write(b"".join(self.oks))
                    self.oks.clear()

    def factory(request: WSUpgradeRequest) -> Conn:
        return Conn(request.path.startswith(b"/Producers"))

    server = await ws_create_server(factory, "127.0.0.1", port)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


# ------------------------------------------------------------------------------- HTTP
def send_answer() -> bytes:
    """An answer of the broker's size and headers (built here: it runs against old commits)."""
    from aiohttp.http import SERVER_SOFTWARE

    from kapokmq.httpbase import CORS_HEADERS

    body = b'{"code":0,"msg":"%s"}' % (b"0" * 32)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        **CORS_HEADERS,
        "Content-Length": str(len(body)),
        "Date": "Tue, 01 Dec 2026 00:00:00 GMT",
        "Server": SERVER_SOFTWARE,
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body


async def serve_http_httptools(port: int) -> None:
    import httptools

    answer = send_answer()

    class Conn(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)
            self.answers = 0

        def on_message_complete(self) -> None:
            self.answers += 1

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)
            if self.answers:
                self.transport.write(answer * self.answers)
                self.answers = 0

    server = await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", port)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


async def serve_http_aiohttp(port: int) -> None:
    body = send_answer().partition(b"\r\n\r\n")[2]

    async def send(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_post("/Producer/Send", send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server: Any = site._server
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


SERVERS = {
    "aiohttp": serve_aiohttp,
    "picows": serve_picows,
    "http-httptools": serve_http_httptools,
    "http-aiohttp": serve_http_aiohttp,
}


def main() -> None:
    import uvloop

    kind = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    uvloop.run(SERVERS[kind](port))


if __name__ == "__main__":
    main()

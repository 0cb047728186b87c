"""Transport ceiling: a bare aiohttp WebSocket server speaking just enough of the protocol
(handshake, `ok` per producer frame, batched like the broker) for the load generator.

    python -m benchmarks.ceiling PORT

The broker's figures divided by this server's show what our own code costs.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import WSMsgType, web

from kapokmq.server.frames import OK_FRAME, ReplyWriter

PROMPT = "Please enter the secret key"
MATCHED = "Secret key matching succeeded"


async def producer(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    await ws.send_str(PROMPT)
    await ws.receive()
    await ws.send_str(MATCHED)
    replies = ReplyWriter(request.transport, asyncio.get_running_loop())
    while True:
        msg = await ws.receive()
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            break
        replies.send(OK_FRAME)
    replies.flush()
    return ws


def main() -> None:
    import uvloop

    app = web.Application()
    app.router.add_get("/Producers/Conn/{topic}/{id}", producer)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()

"""The aiohttp application: one port for WebSocket clients, the HTTP API and the console."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from kapokmq.httpbase import cors, json_response, origin_rule
from kapokmq.server import http_api
from kapokmq.server.keys import RUNTIME
from kapokmq.server.metrics import CONTENT_TYPE, MetricsPage
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.session import SyncFeed
from kapokmq.server.ws_aiohttp import SYNC_FEED, sync_endpoint
from kapokmq.server.ws_aiohttp import endpoint as websocket_endpoint

METRICS = web.AppKey("metrics", MetricsPage)
log = logging.getLogger(__name__)
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# the browser client (docs/client.md, "Browser client"), served from the broker's own origin
BROWSER_CLIENT = Path(__file__).resolve().parent.parent / "client" / "kapokmq.js"


async def console_index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(CONSOLE_DIR / "index.html")


async def browser_client(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        BROWSER_CLIENT, headers={"Content-Type": "text/javascript; charset=utf-8"}
    )


async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status":"ok"}``; 503 ``{"status":"degraded","writes":<reason>}`` while writes
    are refused for a fault, with ``"storage":<reason>`` while storage fails
    (docs/durability.md "When the disk fails"; sync.ack 1 without its peer:
    docs/protocol.md "Master-slave sync"). A following slave is healthy."""
    runtime = request.app[RUNTIME]
    storage = runtime.storage_health
    fault = storage.fault if storage is not None else None
    refusal = runtime.degraded()
    if fault is None and refusal is None:
        return json_response({"status": "ok", "backlog": runtime.broker.backlog})
    body: dict[str, object] = {"status": "degraded"}
    if fault is not None:
        body["storage"] = fault
    if refusal is not None:
        body["writes"] = refusal.http_text
    body["backlog"] = runtime.broker.backlog
    response = json_response(body)
    response.set_status(503)
    return response


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; wants the console key (``secretKey`` header or ``Authorization:
    Bearer``, as Prometheus' ``authorization`` setting sends it) unless
    server.metricsPublic is 1."""
    config = request.app[RUNTIME].config
    if not config.server.metricsPublic and not await http_api.key_accepted(
        request, http_api.console_key(config), bearer=True
    ):
        wanted = "the console key (mq.consoleKey)" if config.mq.consoleKey else "the secret key"
        return web.Response(
            status=401,
            text=f"401 Unauthorized: /metrics wants {wanted}\n",
            headers={"WWW-Authenticate": 'Bearer realm="kapokmq"'},
        )
    body = await request.app[METRICS].body()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def build_app(runtime: BrokerRuntime, sync_feed: SyncFeed | None = None) -> web.Application:
    server = runtime.config.server
    app = web.Application(
        middlewares=[cors, origin_rule(server.allowedOrigins, runtime.config.mq.secretKey, log)],
        # a form field's bytes may each become %XX: a MessageData of mq.maxMessageBytes
        # must fit urlencoded too (multipart and WebSocket frames carry it as it is)
        client_max_size=3 * runtime.config.mq.maxMessageBytes + 65536,
    )
    app[RUNTIME] = runtime
    app[METRICS] = MetricsPage(runtime)
    app.router.add_get("/{role:Producers|Consumers}/Conn/{topic}/{id}", websocket_endpoint)
    if sync_feed is not None:  # a master (docs/protocol.md "Master-slave sync")
        app[SYNC_FEED] = sync_feed
        app.router.add_get("/Sync/Conn", sync_endpoint)
    for path, handler in http_api.CONSOLE_ROUTES.items():
        app.router.add_post(path, handler)
    app.router.add_get("/", console_index)
    app.router.add_static("/view/", CONSOLE_DIR, show_index=False)
    app.router.add_get("/client/kapokmq.js", browser_client)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app

"""Start and stop a broker process: config in, listening socket out, clean exit on signals."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import ssl

from aiohttp import web

from kapokmq.cluster.node import cluster_node_for
from kapokmq.cluster.replication import ReplicationHub, SlaveLink, serves_sync
from kapokmq.config import Config, ConfigError
from kapokmq.server.app import build_app
from kapokmq.server.banner import log_banner
from kapokmq.server.http_lean import LeanHttp
from kapokmq.server.http_lean import close_all as close_http
from kapokmq.server.keys import NODES
from kapokmq.server.listener import FirstRequestRouter
from kapokmq.server.origins import origin_allowed
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.session import close_all as close_websockets
from kapokmq.server.ws_picows import websocket_protocols
from kapokmq.storage import StorageError, open_storage

log = logging.getLogger("kapokmq")


def tune_gc() -> None:
    """Collect young objects less often: a broker holds many long-lived, acyclic messages,
    and the default thresholds spend a large share of the hot path re-scanning them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def listen(
    runtime: BrokerRuntime, runner: web.AppRunner, ssl_context: ssl.SSLContext | None
) -> asyncio.Server:
    """The main port: WebSocket clients on picows (unless server.wsEngine is aiohttp),
    HTTP Send on the lean path (server/http_lean.py), everything else on aiohttp
    (server/listener.py). With server.wsEngine aiohttp, aiohttp serves it all, after the
    same first-request router (its head treated alike: a raw UTF-8 path, the 30 s limit)."""
    config = runtime.config
    http = runner.server
    assert http is not None
    origin_ok = functools.partial(origin_allowed, config)
    if config.server.wsEngine == "picows":
        websocket = websocket_protocols(runtime)

        def lean_http() -> asyncio.BaseProtocol:
            return LeanHttp(runtime, http)

        def protocol() -> asyncio.BaseProtocol:
            return FirstRequestRouter(websocket, lean_http, origin_ok)

    else:

        def protocol() -> asyncio.BaseProtocol:
            return FirstRequestRouter(no_websocket, http, origin_ok)

    return await runtime.loop.create_server(
        protocol,
        config.server.addr,
        config.server.port,
        ssl=ssl_context,
        reuse_address=True,
    )


def no_websocket(path: str, head: bytes) -> None:
    """server.wsEngine aiohttp: every upgrade stays with aiohttp."""


def tls_context(config: Config) -> ssl.SSLContext | None:
    """https/wss when server.tlsCert and server.tlsKey are set (README "Configuration")."""
    if not config.server.tlsCert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.server.tlsCert, config.server.tlsKey)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"kapokmq: cannot load server.tlsCert/tlsKey: {exc}") from None
    return context


def start_slave(runtime: BrokerRuntime) -> SlaveLink | None:
    """Follow a master when sync.isSync and sync.isSlave are set (docs/protocol.md
    "Master-slave sync")."""
    sync = runtime.config.sync
    if not (sync.isSync and sync.isSlave):
        return None
    link = SlaveLink(runtime, runtime.config)
    runtime.broker.set_paused(True)  # until we know whether the master is alive
    link.start()
    return link


async def run_broker(config: Config, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or until ``stop`` is set)."""
    stop = stop or asyncio.Event()
    ssl_context = tls_context(config)
    tune_gc()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runtime = BrokerRuntime(config)
    try:
        storage = open_storage(runtime)  # recovery happens here, before we listen
    except StorageError as exc:
        raise SystemExit(f"kapokmq: storage: {exc}") from None
    # a master's hub from the start: under sync.ack 1 it refuses writes until a slave is in
    app = build_app(runtime, ReplicationHub(runtime) if serves_sync(config) else None)
    try:
        cluster = cluster_node_for(config)
    except ConfigError as exc:
        if storage is not None:
            await storage.close()
        raise SystemExit(f"kapokmq: configuration error: {exc}") from None
    if cluster is not None:
        app[NODES] = cluster.nodes
        runtime.cluster_joined(cluster.refused)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        server = await listen(runtime, runner, ssl_context)
    except OSError as exc:
        await runner.cleanup()
        if storage is not None:
            await storage.close()
        raise SystemExit(
            f"kapokmq: cannot listen on {config.server.addr}:{config.server.port}: {exc}"
        ) from None
    port: int = server.sockets[0].getsockname()[1]
    if cluster is not None:
        try:
            await cluster.start(port)
        except OSError as exc:
            await runner.cleanup()
            if storage is not None:
                await storage.close()
            raise SystemExit(
                f"kapokmq: cannot bind the gossip port "
                f"{config.server.addr}:{config.cluster.gossipPort}: {exc}"
            ) from None
    slave = start_slave(runtime)
    gossip_port = None if cluster is None else cluster.gossip_port
    log_banner(config, port, tls=ssl_context is not None, gossip_port=gossip_port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        if cluster is not None:
            await cluster.stop()
        if slave is not None:
            await slave.close()
        server.close()
        close_websockets(runtime)
        close_http(runtime)
        await runner.cleanup()
        if storage is not None:
            await storage.close()  # final flush and snapshot, after the last client is gone
        runtime.close()

"""Start and stop a broker process: config in, listening socket out, clean exit on signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import ipaddress
import logging
import signal
import ssl

from aiohttp import web

from kapokmq.cluster.node import cluster_node_for
from kapokmq.cluster.replication import SlaveLink
from kapokmq.config import Config
from kapokmq.server.app import build_app
from kapokmq.server.keys import NODES
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.storage import StorageError, open_storage

log = logging.getLogger("kapokmq")


def is_loopback(addr: str) -> bool:
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def tune_gc() -> None:
    """Collect young objects less often: a broker holds many long-lived, acyclic messages,
    and the default thresholds spend a large share of the hot path re-scanning them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def bound_port(site: web.TCPSite, configured: int) -> int:
    """The real port (differs from the configured one when that is 0)."""
    server = site._server
    sockets = getattr(server, "sockets", None)
    if sockets:
        port: int = sockets[0].getsockname()[1]
        return port
    return configured


def tls_context(config: Config) -> ssl.SSLContext | None:
    """https/wss when server.tlsCert and server.tlsKey are set (B8)."""
    if not config.server.tlsCert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.server.tlsCert, config.server.tlsKey)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"kapokmq: cannot load server.tlsCert/tlsKey: {exc}") from None
    return context


def start_slave(runtime: BrokerRuntime) -> SlaveLink | None:
    """Follow a master when sync.isSync and sync.isSlave are set (DESIGN A7)."""
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
    if config.server.fastPort >= 0 and importlib.util.find_spec("picows") is None:
        raise SystemExit(
            "kapokmq: server.fastPort needs picows: pip install 'kapokmq[fast]' (or picows)"
        )
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
    app = build_app(runtime)
    cluster = cluster_node_for(config)
    if cluster is not None:
        app[NODES] = cluster.nodes
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(
        runner, config.server.addr, config.server.port, reuse_address=True, ssl_context=ssl_context
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if storage is not None:
            await storage.close()
        raise SystemExit(
            f"kapokmq: cannot listen on {config.server.addr}:{config.server.port}: {exc}"
        ) from None
    port = bound_port(site, config.server.port)
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
    if not is_loopback(config.server.addr) and config.mq.secretKey == "test":
        log.warning(
            "!!! listening on %s with the default secret key 'test': anyone who can reach "
            "this port can read and write your queues; set mq.secretKey !!!",
            config.server.addr,
        )
    fast_server = None
    if config.server.fastPort >= 0:
        from kapokmq.server.fast_ws import start_fast_listener  # picows is optional

        try:
            fast_server = await start_fast_listener(
                runtime, config.server.addr, config.server.fastPort, ssl_context
            )
        except OSError as exc:
            await runner.cleanup()
            if storage is not None:
                await storage.close()
            raise SystemExit(
                f"kapokmq: cannot listen on {config.server.addr}:{config.server.fastPort} "
                f"(server.fastPort): {exc}"
            ) from None
        fast_port = fast_server.sockets[0].getsockname()[1]
        log.info(
            "fast WebSocket listener (picows) on %s://%s:%d for producers and consumers",
            "wss" if ssl_context is not None else "ws",
            config.server.addr,
            fast_port,
        )
    slave = start_slave(runtime)
    mode = "publish/subscribe" if config.mq.pushType == 2 else "point-to-point"
    scheme = "https" if ssl_context is not None else "http"
    log.info(
        "kapokmq listening on %s://%s:%d (pushType %s)", scheme, config.server.addr, port, mode
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        if cluster is not None:
            await cluster.stop()
        if slave is not None:
            await slave.close()
        if fast_server is not None:
            fast_server.close()
        await runner.cleanup()
        if storage is not None:
            await storage.close()  # final flush and snapshot, after the last client is gone
        runtime.close()

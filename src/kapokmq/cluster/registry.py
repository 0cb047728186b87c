"""`kapokmq registry`: the Serena-compatible registry (docs/cluster.md).

A gossip node named ``r:{addr}:{httpPort}`` that brokers join, and an HTTP endpoint
``POST /Registry/GetNodes`` (header ``secretKey``) listing the live brokers, with the
broker's CORS headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from kapokmq.cluster.gossip_addr import advertise_for, gossip_options, warn_if_unencrypted
from kapokmq.cluster.nodes import broker_nodes, registry_name
from kapokmq.cluster.settings import RegistryConfig
from kapokmq.config import ConfigError
from kapokmq.gossip import GossipConfig, Memberlist, NodeEvent
from kapokmq.guard import KeyGuard
from kapokmq.httpbase import (
    KEY_MISMATCH,
    bound_port,
    cors,
    is_loopback,
    json_response,
    key_matches,
    origin_rule,
)

log = logging.getLogger("kapokmq.registry")


@dataclass
class Registry:
    """What the HTTP handlers need; ``gossip`` is set once the HTTP port is known."""

    secret_key: str
    gossip: Memberlist | None = None
    # wrong keys per source address, throttled as on a broker (docs/protocol.md "HTTP API")
    key_guard: KeyGuard = field(default_factory=lambda: KeyGuard(time.monotonic))

    def nodes(self) -> list[dict[str, str]]:
        return [] if self.gossip is None else broker_nodes(self.gossip.members())


REGISTRY = web.AppKey("registry", Registry)


async def get_nodes(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    if not key_matches(request.headers.get("secretKey"), registry.secret_key):
        delay = registry.key_guard.wrong_key(request.remote or "")
        if delay:
            await asyncio.sleep(delay)
        return json_response(KEY_MISMATCH)
    return json_response(registry.nodes())


async def healthz(request: web.Request) -> web.Response:
    gossip = request.app[REGISTRY].gossip
    members = 0 if gossip is None else gossip.num_members()
    refused = {} if gossip is None else gossip.stats.as_dict()
    return json_response({"status": "ok", "members": members, "gossipRefused": refused})


def build_registry_app(registry: Registry, allowed_origins: Sequence[str] = ()) -> web.Application:
    """With the default key a foreign web page gets 403, as on a broker (docs/cluster.md)."""
    rule = origin_rule(allowed_origins, registry.secret_key, log)
    app = web.Application(middlewares=[cors, rule])
    app[REGISTRY] = registry
    app.router.add_post("/Registry/GetNodes", get_nodes)
    app.router.add_get("/healthz", healthz)
    return app


def gossip_config(config: RegistryConfig, http_port: int) -> GossipConfig:
    addr = config.server.addr
    return GossipConfig.lan(
        registry_name(addr, http_port),
        bind_addr=addr,
        bind_port=config.registry.gossipPort,
        advertise_addr=advertise_for(addr),
        **gossip_options(config.registry, "registry"),
    )


def log_membership(event: NodeEvent) -> None:
    member = event.member
    log.info(
        "member %s %s (%s:%d, %s)",
        member.name,
        event.kind,
        member.addr,
        member.port,
        member.state,
    )


async def run_registry(config: RegistryConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or until ``stop`` is set); leave the cluster on the way out."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    addr = config.server.addr
    registry = Registry(config.registry.secretKey)
    runner = web.AppRunner(
        build_registry_app(registry, config.server.allowedOrigins),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, addr, config.server.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(
            f"kapokmq registry: cannot listen on {addr}:{config.server.port}: {exc}"
        ) from None
    port = bound_port(site, config.server.port)
    try:
        gossip = Memberlist(gossip_config(config, port))
    except ConfigError as exc:
        await runner.cleanup()
        raise SystemExit(f"kapokmq registry: {exc}") from None
    try:
        await gossip.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(
            f"kapokmq registry: cannot bind gossip on {addr}:{config.registry.gossipPort}: {exc}"
        ) from None
    registry.gossip = gossip
    gossip.add_listener(log_membership)
    warn_if_unencrypted({"keyring": gossip.config.keyring}, addr, "registry")
    if not is_loopback(addr) and config.registry.secretKey == "test":
        log.warning(
            "!!! registry listening on %s with the default secret key 'test'; "
            "set registry.secretKey !!!",
            addr,
        )
    gaddr, gport = gossip.address
    log.info(
        "kapokmq registry %s listening on http://%s:%d (gossip %s:%d)",
        gossip.name,
        addr,
        port,
        gaddr,
        gport,
    )
    try:
        await stop.wait()
    finally:
        log.info("registry shutting down")
        with contextlib.suppress(Exception):
            await gossip.leave(timeout=2.0)
        await gossip.shutdown()
        await runner.cleanup()

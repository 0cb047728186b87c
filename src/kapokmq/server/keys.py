"""Typed keys for what the aiohttp application carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from kapokmq.server.runtime import BrokerRuntime

RUNTIME = web.AppKey("runtime", BrokerRuntime)
# Set by cluster mode: returns the live broker nodes as GetNodes reports them.
NodesProvider = Callable[[], list[dict[str, Any]]]
NODES: web.AppKey[NodesProvider] = web.AppKey("nodes")

"""What every HTTP service of the package shares, the broker (server/) and the registry
(cluster/registry.py): CORS as the original answers it (docs/protocol.md "HTTP API"),
JSON answers, the constant-time key check, and where a service really listens.

A leaf: it imports nothing of the package but model.py and login.py, so cluster/ uses it
without depending on server/.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kapokmq.login import MISMATCH
from kapokmq.model import dumps

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEY_MISMATCH = {"code": -1, "msg": MISMATCH}

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Content-Type,AccessToken,X-CSRF-Token, Authorization, Token, secretKey"
    ),
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Expose-Headers": (
        "Content-Length, Access-Control-Allow-Origin, Access-Control-Allow-Headers, Content-Type"
    ),
    "Access-Control-Allow-Credentials": "true",
}


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS on every answer; any OPTIONS is 204; a wrong method is a 404 as in Gin."""
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except web.HTTPMethodNotAllowed:
        response = web.Response(status=404, text="404 page not found")
    except web.HTTPNotFound:
        response = web.Response(status=404, text="404 page not found")
    except web.HTTPException as exc:
        exc.headers.update(CORS_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(CORS_HEADERS)
    return response


def json_response(payload: Any) -> web.Response:
    """Go-shaped JSON (model.dumps: sorted map keys, Go's escapes), always HTTP 200."""
    return web.Response(body=dumps(payload), content_type="application/json", charset="utf-8")


def key_matches(given: str | bytes | None, secret: str) -> bool:
    """Constant-time comparison, so response timing does not leak the key."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, secret.encode())


def is_loopback(addr: str) -> bool:
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def bound_port(site: web.TCPSite, configured: int) -> int:
    """The real port (differs from the configured one when that is 0)."""
    server = site._server
    sockets = getattr(server, "sockets", None)
    if sockets:
        port: int = sockets[0].getsockname()[1]
        return port
    return configured

"""What every HTTP service of the package shares, the broker (server/) and the registry
(cluster/registry.py): CORS as the original answers it (docs/protocol.md "HTTP API"), the
Origin rule (docs/protocol.md "Origins"), JSON answers, the constant-time key check, and
where a service really listens.

A leaf: it imports nothing of the package but model.py and login.py, so cluster/ uses it
without depending on server/.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
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


DEFAULT_KEY = "test"
FORBIDDEN_TEXT = "403 Forbidden: this Origin may not use the broker (server.allowedOrigins)\n"


def origin_allowed(
    allowed: Sequence[str], secret: str, origin: str | None, host: str | None
) -> bool:
    """The Origin rule, for a request that carries ``Origin`` (clients that are not
    browsers send none and are never affected): with ``server.allowedOrigins`` (``*``:
    all) the service's own origin and the listed ones; with no list and the default key
    only its own origin (the page it served); with no list and a key of one's own, every
    origin, as the original. The default key and an empty one are both well known
    (docs/protocol.md "Origins"). "Its own origin" is the one whose host[:port] is ``Host``."""
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if "*" in allowed:
        return True
    if host is not None:
        _, _, netloc = origin.partition("://")
        if netloc == host.strip().lower():
            return True
    if allowed:
        return origin in {a.lower().rstrip("/") for a in allowed}
    return secret not in (DEFAULT_KEY, "")


def origin_rule(allowed: Sequence[str], secret: str, log: logging.Logger) -> Any:
    """A middleware answering 403 to a page the Origin rule refuses; put it inside
    ``cors``, so preflights stay 204 and the 403 carries the CORS headers. ``/healthz``
    is public whatever the page (it changes nothing and tells nothing secret: a status
    page of another origin may poll it)."""

    @web.middleware
    async def rule(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and request.path != "/healthz"
            and not origin_allowed(allowed, secret, origin, request.headers.get("Host"))
        ):
            log.info(
                "refused %s %s from Origin %r (server.allowedOrigins)",
                request.method,
                request.path,
                origin,
            )
            return web.Response(status=403, text=FORBIDDEN_TEXT)
        return await handler(request)

    return rule


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

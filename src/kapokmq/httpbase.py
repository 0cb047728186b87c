"""What every HTTP service of the package shares, the broker (server/) and the registry
(cluster/registry.py): CORS as the original answers it (docs/protocol.md "HTTP API"), the
Origin rule (docs/protocol.md "Origins"), JSON answers, the constant-time key check,
where a service really listens, and logging refused requests without a flood.

A leaf: it imports nothing of the package but model.py and login.py, so cluster/ uses it
without depending on server/.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

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
                "refused %s %.200s from %s: Origin %.200r (server.allowedOrigins)",
                request.method,
                request.path,
                request.remote,
                origin,
                extra={REFUSED_FROM: request.remote},  # rate-limited (RefusedRequests)
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


# ``extra`` of a log line about a client's request refused for its own fault (the address):
# RefusedRequests rate-limits it like aiohttp's (installed by service.configure_logging)
REFUSED_FROM = "refused_from"


class RefusedRequests(logging.Filter):
    """On the log handler (service.configure_logging): a refused request is the client's
    doing, and a stranger's loop of them must not flood the log (README "Observability").
    aiohttp logs each request its parser refuses (answered 400: a header line over 8 KiB, a
    bad request line, no Host...) as an ERROR with a traceback on ``aiohttp.server``; that
    becomes one INFO line naming the address and the reason. The Origin rule's refusals
    carry the address as ``extra={REFUSED_FROM: address}``. Either kind is written at most
    once per address every ``interval`` seconds; the next line from that address counts
    those left out. Other records, a handler's own exception with its traceback among
    them, pass unchanged.

    At most ``max_peers`` addresses are tracked (bounded memory, and at most that many
    lines an interval however many addresses send); what is left out beyond them is
    counted on the next line written."""

    def __init__(
        self,
        interval: float = 60.0,
        max_peers: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.max_peers = max_peers
        self.clock = clock
        # address -> [time of its last line, refusals left out since], oldest line first
        self.peers: OrderedDict[str, list[float]] = OrderedDict()
        self.untracked = 0  # left out for addresses no longer (or never) tracked

    def filter(self, record: logging.LogRecord) -> bool:
        peer = getattr(record, REFUSED_FROM, None)
        exc = record.exc_info[1] if record.exc_info else None
        if peer is None:
            if record.name != "aiohttp.server" or not isinstance(exc, HttpProcessingError):
                return True
            args = record.args if isinstance(record.args, tuple) else ()
            peer = args[0] if args else None  # aiohttp: "Error handling request from %s"
        peer = str(peer or "?")
        notes = self._admit(peer)
        if notes is None:
            return False
        if getattr(record, REFUSED_FROM, None) is None:  # aiohttp's
            reason = " ".join(str(getattr(exc, "message", "") or exc).split())[:200]
            line = f"refused a malformed HTTP request from {peer}: {type(exc).__name__}: {reason}"
            record.levelno = min(record.levelno, logging.INFO)
            record.levelname = logging.getLevelName(record.levelno)
            record.exc_info = record.exc_text = record.stack_info = None
        else:
            line = record.getMessage()
        record.msg, record.args = line + notes, ()
        return True

    def _admit(self, peer: str) -> str | None:
        """None if ``peer`` had its line within the interval (counted), else the note on
        what was left out since, for the line to write now ("" if nothing)."""
        now = self.clock()
        entry = self.peers.get(peer)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return None
        left_out = int(entry[1]) if entry is not None else 0
        if entry is None and len(self.peers) >= self.max_peers:
            oldest = next(iter(self.peers.values()))
            if now - oldest[0] < self.interval:  # every tracked address had its line
                self.untracked += 1
                return None
            self.untracked += int(self.peers.popitem(last=False)[1][1])
        self.peers[peer] = [now, 0]
        self.peers.move_to_end(peer)
        notes = []
        if left_out:
            notes.append(f"{left_out} more from {peer} not logged")
        if self.untracked:
            notes.append(f"{self.untracked} more from other addresses not logged")
            self.untracked = 0
        return f" ({'; '.join(notes)})" if notes else ""

"""Which web pages may talk to the broker: the ``Origin`` rule (docs/protocol.md, "Origins").

A browser adds ``Origin`` to every cross-site API request and WebSocket upgrade, and any
page the operator opens could otherwise drive a broker that still has the default key
``test``. The rule, for a request that carries ``Origin`` (clients that are not browsers
send none and are never affected):

* ``server.allowedOrigins`` lists origins (``*``: all): the broker's own origin and the
  listed ones are allowed, any other gets HTTP 403;
* no list and the default key: only the broker's own origin (its console);
* no list and a key of one's own: every origin, as the original.

"The broker's own origin" is the one whose host[:port] is the request's ``Host``: the
console page the broker served. Checked by the listener for the WebSocket upgrades it
hands to picows and by the aiohttp middleware for everything else; the rule itself is
``httpbase.origin_allowed`` (the registry applies it too).
"""

from __future__ import annotations

from kapokmq import httpbase
from kapokmq.config import Config
from kapokmq.httpbase import CORS_HEADERS, FORBIDDEN_TEXT

FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"


def origin_allowed(config: Config, origin: str | None, host: str | None) -> bool:
    return httpbase.origin_allowed(config.server.allowedOrigins, config.mq.secretKey, origin, host)


def forbidden_response() -> bytes:
    """The whole 403 answer, for a connection the listener refuses before any engine;
    with the CORS headers, as aiohttp's 403 has them (docs/protocol.md "Origins")."""
    body = FORBIDDEN_TEXT.encode()
    cors = "".join(f"{name}: {value}\r\n" for name, value in CORS_HEADERS.items()).encode()
    return (
        FORBIDDEN
        + cors
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (
            len(body),
            body,
        )
    )

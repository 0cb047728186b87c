"""Where a producer or consumer WebSocket's topic and client id come from: its request
path, ``/Producers/Conn/{topic}/{id}`` or ``/Consumers/Conn/{topic}/{id}``
(docs/protocol.md "WebSocket sessions").

Both engines read it here, from the raw path, so one URL names one topic whichever engine
serves it: a percent-escape that is not UTF-8 (``%FF``) becomes U+FFFD on both (aiohttp's
own match_info would keep it as ``%FF``).
"""

from __future__ import annotations

from urllib.parse import unquote


def client_route(path: str) -> tuple[str, str, str] | None:
    """(``Producers`` or ``Consumers``, topic, client id) of a raw request path (query
    ignored), or None when it is not one of the two paths."""
    parts = path.split("?", 1)[0].split("/")
    # "", "Producers"|"Consumers", "Conn", topic, id
    if len(parts) != 5 or parts[0] or parts[2] != "Conn" or not parts[3] or not parts[4]:
        return None
    if parts[1] not in ("Producers", "Consumers"):
        return None
    return parts[1], unquote(parts[3]), unquote(parts[4])

"""KapokMQ client: asyncio Producer and Consumer over WebSocket, the HTTP API, and errors.

The synchronous wrappers live in `kapokmq.client.sync`.
"""

from kapokmq.client.backoff import Backoff
from kapokmq.client.connection import DEFAULT_SECRET_KEY, DEFAULT_URL
from kapokmq.client.consumer import Consumer
from kapokmq.client.errors import (
    ApiError,
    AuthenticationError,
    ClientClosedError,
    ConnectionLostError,
    KapokMQError,
    ProtocolError,
    SendError,
)
from kapokmq.client.http import ConsoleClient, send_http
from kapokmq.client.message import Message, MessageStatus
from kapokmq.client.producer import Producer

__all__ = [
    "DEFAULT_SECRET_KEY",
    "DEFAULT_URL",
    "ApiError",
    "AuthenticationError",
    "Backoff",
    "ClientClosedError",
    "ConnectionLostError",
    "ConsoleClient",
    "Consumer",
    "KapokMQError",
    "Message",
    "MessageStatus",
    "Producer",
    "ProtocolError",
    "SendError",
    "send_http",
]

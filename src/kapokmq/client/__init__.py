"""KapokMQ client: asyncio Producer and Consumer over WebSocket, the HTTP API, and errors;
ClusterProducer and ClusterConsumer use every broker a registry lists (docs/cluster.md).

The synchronous wrappers live in `kapokmq.client.sync`.
"""

from kapokmq.client.backoff import Backoff
from kapokmq.client.cluster import ClusterConsumer, ClusterProducer, NodeInfo, fetch_nodes
from kapokmq.client.connection import DEFAULT_SECRET_KEY, DEFAULT_URL
from kapokmq.client.consumer import Consumer
from kapokmq.client.errors import (
    ApiError,
    ApiKeyError,
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
    "ApiKeyError",
    "AuthenticationError",
    "Backoff",
    "ClientClosedError",
    "ClusterConsumer",
    "ClusterProducer",
    "ConnectionLostError",
    "ConsoleClient",
    "Consumer",
    "KapokMQError",
    "Message",
    "MessageStatus",
    "NodeInfo",
    "Producer",
    "ProtocolError",
    "SendError",
    "fetch_nodes",
    "send_http",
]

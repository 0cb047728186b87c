"""Messages, client records and their wire encodings (DESIGN A1, A5).

The original server serialises with Go's encoding/json, so our JSON must look the same:
compact, struct fields in declaration order, map keys sorted, and the HTML-sensitive
characters ``< > &`` (plus U+2028/U+2029) escaped as ``\\u003c`` and friends.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson


class Status(IntEnum):
    """Message status as stored and reported by the console (2 is our addition)."""

    WAITING = -1
    DELAYED = 0
    CONSUMED = 1
    DEAD = 2


class Message:
    """One stored message.

    The wire fields mirror the original's struct; the rest is scheduling state owned by the
    core. ``holder`` is the consumer a point-to-point message is in flight to (or the
    ``FANOUT`` marker in pub/sub); ``None`` means it sits in its topic's ready queue.
    ``pushed_at`` drives redelivery: unacked ``pushRetryTime`` seconds after it, it goes again.
    """

    __slots__ = (
        "arrival",
        "attempts",
        "code",
        "consumed_time",
        "create_time",
        "data",
        "delay_time",
        "holder",
        "pushed_at",
        "removed",
        "status",
        "topic",
    )

    def __init__(
        self,
        code: str,
        data: str,
        topic: str,
        create_time: int,
        delay_time: int,
        status: Status,
        arrival: float,
        consumed_time: int = 0,
    ) -> None:
        self.code = code
        self.data = data
        self.topic = topic
        self.create_time = create_time
        self.consumed_time = consumed_time
        self.delay_time = delay_time
        self.status = status
        self.arrival = arrival
        self.attempts = 0
        self.holder: object | None = None
        self.pushed_at = 0.0  # time of the latest push (or pub/sub fan-out)
        self.removed = False

    def __repr__(self) -> str:
        return (
            f"Message({self.code}, topic={self.topic!r}, status={self.status.name}, "
            f"delay={self.delay_time}, attempts={self.attempts})"
        )

    def to_dict(self, with_data: bool = True) -> dict[str, Any]:
        """The message as the original's JSON object (field order matters)."""
        return {
            "MessageCode": self.code,
            "MessageData": self.data if with_data else "",
            "Topic": self.topic,
            "CreateTime": self.create_time,
            "ConsumedTime": self.consumed_time,
            "DelayTime": self.delay_time,
            "Status": int(self.status),
        }


@dataclass(slots=True)
class ClientInfo:
    """A connected producer or consumer as the console lists it."""

    client_id: str
    topic: str
    ip: str
    join_time: int

    def as_consumer(self) -> dict[str, Any]:
        return {
            "ConsumerId": self.client_id,
            "Topic": self.topic,
            "ConsumerIp": self.ip,
            "JoinTime": self.join_time,
        }

    def as_producer(self) -> dict[str, Any]:
        return {
            "ProducerId": self.client_id,
            "Topic": self.topic,
            "ProducerIp": self.ip,
            "JoinTime": self.join_time,
        }


_GO_HTML = re.compile(rb"[<>&]|\xe2\x80[\xa8\xa9]")
_GO_HTML_ESCAPES = {
    b"<": b"\\u003c",
    b">": b"\\u003e",
    b"&": b"\\u0026",
    b"\xe2\x80\xa8": b"\\u2028",
    b"\xe2\x80\xa9": b"\\u2029",
}


def go_escape(encoded: bytes) -> bytes:
    """Apply Go's HTML-safe escaping to already-encoded JSON (a no-op for most payloads)."""
    if _GO_HTML.search(encoded) is None:
        return encoded
    return _GO_HTML.sub(lambda m: _GO_HTML_ESCAPES[m.group(0)], encoded)


def dumps(obj: Any) -> bytes:
    """Encode JSON the way the original's HTTP handlers do (compact, Go-escaped)."""
    return go_escape(orjson.dumps(obj))


def json_string(value: str) -> bytes:
    """A JSON string literal, Go-escaped; invalid surrogates become U+FFFD like Go."""
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        encoded = orjson.dumps(value)
    # cheap C-level membership tests first; the regex only runs when something matches
    if "<" in value or ">" in value or "&" in value or not value.isascii():
        return go_escape(encoded)
    return encoded


_topic_json: dict[str, bytes] = {}


def topic_json(topic: str) -> bytes:
    """Encoded topic names, cached: there are few topics and many messages."""
    encoded = _topic_json.get(topic)
    if encoded is None:
        if len(_topic_json) > 10_000:
            _topic_json.clear()
        encoded = _topic_json[topic] = json_string(topic)
    return encoded


def encode_push(msg: Message) -> bytes:
    """The frame pushed to a consumer: A1's JSON plus Go's trailing newline.

    A push is always a copy of a waiting message, so Status is -1 and ConsumedTime 0 even
    if another subscriber acknowledged it meanwhile.
    """
    return b'{"MessageCode":"%s","MessageData":%s,"Topic":%s,"CreateTime":%d,' % (
        msg.code.encode(),
        json_string(msg.data),
        topic_json(msg.topic),
        msg.create_time,
    ) + b'"ConsumedTime":0,"DelayTime":%d,"Status":-1}\n' % (msg.delay_time,)


class CodeGenerator:
    """Unique 32-hex message codes: a random 64-bit prefix and a 64-bit counter.

    Cheaper than hashing each payload (the original md5's data + uuid) and unique across
    restarts because the prefix is drawn fresh from the OS at start.
    """

    __slots__ = ("_base", "_counter")

    def __init__(self) -> None:
        self._base = int.from_bytes(os.urandom(8), "big") << 64
        self._counter = itertools.count(int.from_bytes(os.urandom(3), "big") << 24)

    def __call__(self) -> str:
        return "%032x" % (self._base + next(self._counter))

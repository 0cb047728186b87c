"""The message a consumer receives, typed; wire JSON (docs/protocol.md "Consumer session")
mapped field by field."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kapokmq.client.errors import ProtocolError

AckFunc = Callable[[str], Awaitable[None]]

# Wire key -> attribute, in the order the broker writes them.
WIRE_FIELDS: tuple[tuple[str, str], ...] = (
    ("MessageCode", "message_code"),
    ("MessageData", "message_data"),
    ("Topic", "topic"),
    ("CreateTime", "create_time"),
    ("ConsumedTime", "consumed_time"),
    ("DelayTime", "delay_time"),
    ("Status", "status"),
)


class MessageStatus(enum.IntEnum):
    """Values of the `Status` field; plain ints on the wire."""

    WAITING = -1
    DELAYED = 0
    CONSUMED = 1
    DEAD = 2


async def _no_ack(code: str) -> None:
    return None


@dataclass(slots=True, eq=False)
class Message:
    """One delivered message. ``await msg.ack()`` tells the broker it was handled."""

    message_code: str
    message_data: str
    topic: str
    create_time: int
    consumed_time: int
    delay_time: int
    status: int
    _ack: AckFunc = field(default=_no_ack, repr=False)
    acked: bool = field(default=False, repr=False)

    async def ack(self) -> None:
        """Acknowledge the message (sends its MessageCode). A second call does nothing,
        unless the first failed (e.g. ConnectionLostError: no connection within the
        consumer's ack_timeout), so it may be retried."""
        if self.acked:
            return
        self.acked = True
        try:
            await self._ack(self.message_code)
        except BaseException:
            self.acked = False
            raise

    def to_wire(self) -> dict[str, Any]:
        """The message as the broker sent it: wire key names, wire order."""
        return {wire: getattr(self, attr) for wire, attr in WIRE_FIELDS}

    def to_json(self) -> str:
        """Compact wire JSON (no trailing newline)."""
        return orjson.dumps(self.to_wire()).decode()

    @classmethod
    def from_wire(cls, frame: str | bytes, ack: AckFunc = _no_ack) -> Message:
        """Parse one pushed frame; raises ProtocolError when it is not a message object."""
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"consumer frame is not JSON: {frame[:80]!r}") from exc
        if not isinstance(obj, dict):
            raise ProtocolError(f"consumer frame is not a JSON object: {frame[:80]!r}")
        get = obj.get
        code, data, topic = get("MessageCode"), get("MessageData"), get("Topic")
        created, consumed = get("CreateTime", 0), get("ConsumedTime", 0)
        delay, status = get("DelayTime", 0), get("Status", 0)
        if (
            type(code) is not str
            or type(data) is not str
            or type(topic) is not str
            or type(created) is not int
            or type(consumed) is not int
            or type(delay) is not int
            or type(status) is not int
        ):
            raise ProtocolError(f"consumer frame is not a message: {frame[:120]!r}")
        return cls(code, data, topic, created, consumed, delay, status, ack)

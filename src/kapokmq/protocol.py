"""Producer frames: parse ``{"MessageData": "...", "DelayTime": 0}`` like Go's encoding/json.

Keys match case-insensitively (the last matching key wins), unknown keys are ignored, a
missing or null field keeps its zero value, and ``null`` or ``{}`` is an empty message.
Anything else is a ``FrameError`` whose text becomes the ``error: ...`` reply.
"""

from __future__ import annotations

import orjson

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_CANONICAL = frozenset(("MessageData", "DelayTime"))
EXAMPLE = '{"MessageData":"hello","DelayTime":0}'


class FrameError(ValueError):
    """A producer frame the broker cannot store; the message says why."""


def _loads(raw: str | bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(raw, bytes):
            # Go replaces invalid UTF-8 with U+FFFD rather than rejecting the frame
            try:
                return orjson.loads(raw.decode("utf-8", "replace"))
            except orjson.JSONDecodeError:
                pass
        if not raw.strip():
            raise FrameError(f"empty frame; expected a JSON object like {EXAMPLE}") from None
        raise FrameError(f"invalid JSON ({exc.msg}); expected {EXAMPLE}") from None


def parse_send_frame(raw: str | bytes) -> tuple[str, int]:
    """Return (MessageData, DelayTime) or raise FrameError."""
    obj = _loads(raw)
    if obj is None:
        return "", 0
    if not isinstance(obj, dict):
        raise FrameError(f"expected a JSON object like {EXAMPLE}, got {type(obj).__name__}")
    if obj.keys() <= _CANONICAL:  # the Go client's exact spelling: skip the key folding
        data = obj.get("MessageData", "")
        delay = obj.get("DelayTime", 0)
        if type(data) is str and type(delay) is int and INT64_MIN <= delay <= INT64_MAX:
            return data, delay
    data = ""
    delay = 0
    for key, value in obj.items():
        lowered = key.lower()
        if lowered == "messagedata":
            if value is None:
                continue
            if not isinstance(value, str):
                raise FrameError(f"MessageData must be a string, got {_json_type(value)}")
            data = value
        elif lowered == "delaytime":
            if value is None:
                continue
            if type(value) is not int:
                raise FrameError(
                    f"DelayTime must be an integer number of seconds, got {_json_type(value)}"
                )
            if not INT64_MIN <= value <= INT64_MAX:
                raise FrameError("DelayTime is out of the 64-bit integer range")
            delay = value
    return data, delay


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__

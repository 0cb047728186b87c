"""Producer frames: parse ``{"MessageData": "...", "DelayTime": 0}`` like Go's encoding/json.

Keys match case-insensitively as Go folds them (``ſ``, the long s, is an ``s`` too; the last
matching key wins), unknown keys are ignored, a missing or null field keeps its zero value,
and ``null`` or ``{}`` is an empty message.
Anything else is a ``FrameError`` whose text becomes the ``error: ...`` reply.

Our optional keys ``TTL`` and ``MessageId`` (docs/protocol.md, "Producer session") follow
the same rules; a frame that has one parses to a ``SendItem`` of three, with ``Extras``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, NamedTuple

import msgspec
import orjson

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_CANONICAL = frozenset(("MessageData", "DelayTime"))
EXAMPLE = '{"MessageData":"hello","DelayTime":0}'
MAX_MESSAGE_ID_BYTES = 128


class Extras(NamedTuple):
    """What a producer may add to a message beyond data and delay: a TTL in seconds
    (0 = none, the topic's default applies) and a dedup id ("" = none). A tuple: a
    frozen dataclass cost ~0.6 us to build, per frame that has one."""

    ttl: int = 0
    message_id: str = ""


# (MessageData, DelayTime), plus Extras when the frame had TTL or MessageId
SendItem = tuple[str, int] | tuple[str, int, Extras]


class FrameError(ValueError):
    """A producer frame the broker cannot store; the message says why."""


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _loads(raw: str | bytes) -> tuple[object, bool]:
    """Decode a frame; returns (value, lenient) where lenient means strings may hold lone
    surrogates (only when orjson refused a document that Go's encoding/json accepts)."""
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError as exc:
        first_error = exc
    # Go replaces invalid UTF-8 with U+FFFD rather than rejecting the frame
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not text.strip():
        raise FrameError(f"empty frame; expected a JSON object like {EXAMPLE}")
    # orjson is stricter than Go in two ways that valid frames can hit: numbers beyond
    # float64 range (1e400, fine in an ignored key) and lone surrogate escapes ("\ud800",
    # which Go decodes as U+FFFD). The stdlib parser accepts both; it is only the slow path.
    try:
        return json.loads(text, parse_constant=_reject_constant), True
    except (ValueError, RecursionError):
        raise FrameError(f"invalid JSON ({first_error.msg}); expected {EXAMPLE}") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Frame(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The Go client's frame and ours with the optional keys, exactly spelled; a missing
    key is its zero value (as in Go), duplicates: the last wins (as in Go); anything
    unusual (other spellings, other types, unknown keys, a DelayTime out of the 64-bit
    range) takes the general path. Not tracked by the garbage collector: it holds a str
    and ints only (~500 instructions less per frame, callgrind)."""

    MessageData: str = ""
    DelayTime: Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)] = 0
    TTL: int = 0
    MessageId: str = ""


_decode_frame = msgspec.json.Decoder(_Frame).decode


def parse_send_frame(raw: str | bytes) -> SendItem:
    """Return (MessageData, DelayTime[, Extras]) or raise FrameError."""
    items, error = parse_send_frames([raw])
    if error is not None:
        raise error
    return items[0]


def parse_send_frames(
    raws: list[bytes] | list[str] | list[str | bytes], start: int = 0
) -> tuple[list[SendItem], FrameError | None]:
    """``parse_send_frame`` for ``raws[start:]``, in order, up to the first frame that
    is not a message: the items before it and its error (None if every frame parsed).

    One call per read of a producer rather than one per frame (server/session.py), so the
    common frame costs one msgspec decode and a tuple in this loop."""
    items: list[SendItem] = []
    append = items.append
    decode = _decode_frame
    try:
        for raw in raws[start:] if start else raws:
            # fast path: msgspec decodes what the Go client sends, {"MessageData":"...",
            # "DelayTime":<int>}, with or without our keys, straight into fields (one
            # decoder: a second one tried first cost a raised error, ~1.3 us, per frame
            # with TTL/MessageId)
            try:
                frame = decode(raw)
            except (msgspec.DecodeError, ValueError):
                append(_parse_general(raw))
                continue
            if frame.TTL or frame.MessageId:
                append(_with_extras(frame, raw))
            else:
                append((frame.MessageData, frame.DelayTime))
    except FrameError as exc:
        return items, exc
    return items, None


def _with_extras(frame: _Frame, raw: str | bytes) -> SendItem:
    """A frame the fast decoder read that has TTL or MessageId (or an out-of-range
    DelayTime, which the general path words as an error)."""
    delay, ttl, message_id = frame.DelayTime, frame.TTL, frame.MessageId
    if (
        INT64_MIN <= delay <= INT64_MAX
        and 0 <= ttl <= INT64_MAX
        and len(message_id.encode("utf-8", "surrogatepass")) <= MAX_MESSAGE_ID_BYTES
    ):
        if not ttl and not message_id:
            return frame.MessageData, delay
        return frame.MessageData, delay, Extras(ttl, message_id)
    return _parse_general(raw)


def _parse_general(raw: str | bytes) -> SendItem:
    """Every frame the fast decoder does not take: other spellings, types, unknown keys,
    errors (with the reason)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _parse_decoded(*_loads(raw))
    return _parse_decoded(obj, False)


def _parse_decoded(obj: object, lenient: bool) -> SendItem:
    if obj is None:
        return "", 0
    if not isinstance(obj, dict):
        raise FrameError(f"expected a JSON object like {EXAMPLE}, got {type(obj).__name__}")
    # the Go client's exact spelling: skip the key folding (not for the lenient slow path,
    # whose strings may hold lone surrogates that must become U+FFFD below)
    if not lenient and obj.keys() <= _CANONICAL:
        data = obj.get("MessageData", "")
        delay = obj.get("DelayTime", 0)
        if type(data) is str and type(delay) is int and INT64_MIN <= delay <= INT64_MAX:
            return data, delay
    data = ""
    delay = 0
    ttl = 0
    message_id = ""
    for key, value in obj.items():
        lowered = key.lower().replace("\u017f", "s")  # Go folds ſ (long s) to s as well
        if lowered == "messagedata":
            if value is None:
                continue
            if not isinstance(value, str):
                raise FrameError(f"MessageData must be a string, got {_json_type(value)}")
            data = _SURROGATE.sub("\ufffd", value) if lenient else value
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
        elif lowered == "ttl":
            if value is None:
                continue
            if type(value) is not int or value < 0:
                raise FrameError(
                    f"TTL must be a whole number of seconds >= 0, got {_json_type(value)}"
                )
            if value > INT64_MAX:
                raise FrameError("TTL is out of the 64-bit integer range")
            ttl = value
        elif lowered == "messageid":
            if value is None:
                continue
            message_id = _message_id(value, lenient)
    if ttl or message_id:
        return data, delay, Extras(ttl, message_id)
    return data, delay


def _message_id(value: object, lenient: bool) -> str:
    if not isinstance(value, str):
        raise FrameError(f"MessageId must be a string, got {_json_type(value)}")
    return check_message_id(_SURROGATE.sub("\ufffd", value) if lenient else value)


def check_message_id(value: str, name: str = "MessageId") -> str:
    """A dedup id as given (frame key or form field), or FrameError if it is too long."""
    if len(value.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_ID_BYTES:
        raise FrameError(f"{name} is longer than {MAX_MESSAGE_ID_BYTES} bytes")
    return value


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

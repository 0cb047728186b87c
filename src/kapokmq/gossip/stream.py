"""TCP stream messages: push/pull, TCP ping/ack, user messages (sans-I/O).

Streams carry no length prefix, and the peer keeps the connection open
until it has our reply, so the reader must know when a message is complete.
``parse_stream`` answers exactly that: call it on everything received so far
and it returns the message, or ``None`` while more bytes are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgpack

from kapokmq.gossip.codec import (
    Ack,
    CodecError,
    Compress,
    ErrResp,
    MsgType,
    Ping,
    PushNodeState,
    PushPullHeader,
    UserMsgHeader,
    compress_payload,
    decompress_body,
    encode,
    from_wire_map,
    pack,
)

MAX_PUSH_NODES: Final = 1 << 16
MAX_STREAM_BYTES: Final = 20 << 20


@dataclass(slots=True)
class PushPull:
    """A whole push/pull message: header, node table and delegate state."""

    join: bool
    states: list[PushNodeState]
    user_state: bytes = b""


@dataclass(slots=True)
class UserStream:
    """A reliable user message (type 8 over TCP)."""

    payload: bytes


StreamMessage = PushPull | Ping | Ack | ErrResp | UserStream


def encode_push_pull(msg: PushPull) -> bytes:
    header = PushPullHeader(
        nodes=len(msg.states), user_state_len=len(msg.user_state), join=msg.join
    )
    parts = [encode(header)]
    parts.extend(pack(s) for s in msg.states)
    parts.append(msg.user_state)
    return b"".join(parts)


def encode_stream(msg: StreamMessage, *, compress: bool) -> bytes:
    """Serialise one stream message, LZW-wrapped when ``compress`` (as Go does)."""
    if isinstance(msg, PushPull):
        raw = encode_push_pull(msg)
    elif isinstance(msg, UserStream):
        raw = encode(UserMsgHeader(user_msg_len=len(msg.payload))) + msg.payload
    else:
        raw = encode(msg)
    return compress_payload(raw) if compress else raw


def parse_stream(buf: bytes) -> StreamMessage | None:
    """Parse one stream message from ``buf``; ``None`` means "need more bytes"."""
    if len(buf) > MAX_STREAM_BYTES:
        raise CodecError("stream message too large")
    return _parse(buf, nested=False)


def _parse(buf: bytes, *, nested: bool) -> StreamMessage | None:
    if not buf:
        return None
    kind = buf[0]
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=MAX_STREAM_BYTES)
    unpacker.feed(buf[1:])
    try:
        if kind == MsgType.COMPRESS and not nested:
            inner = decompress_body(from_wire_map(Compress, unpacker.unpack()))
            msg = _parse(inner, nested=True)
            if msg is None:
                raise CodecError("truncated compressed stream message")
            return msg
        if kind == MsgType.PUSH_PULL:
            header = from_wire_map(PushPullHeader, unpacker.unpack())
            if header.nodes > MAX_PUSH_NODES or header.user_state_len > MAX_STREAM_BYTES:
                raise CodecError("push/pull header out of range")
            states = [from_wire_map(PushNodeState, unpacker.unpack()) for _ in range(header.nodes)]
            user = _read_exact(unpacker, header.user_state_len)
            if user is None:
                return None
            return PushPull(join=header.join, states=states, user_state=user)
        if kind == MsgType.PING:
            return from_wire_map(Ping, unpacker.unpack())
        if kind == MsgType.ACK:
            return from_wire_map(Ack, unpacker.unpack())
        if kind == MsgType.ERR:
            return from_wire_map(ErrResp, unpacker.unpack())
        if kind == MsgType.USER:
            uheader = from_wire_map(UserMsgHeader, unpacker.unpack())
            payload = _read_exact(unpacker, uheader.user_msg_len)
            return None if payload is None else UserStream(payload)
        if kind == MsgType.ENCRYPT:
            raise CodecError("remote sent an encrypted stream; encryption is not configured")
    except msgpack.OutOfData:
        return None
    except CodecError:
        raise
    except Exception as exc:  # msgpack format errors come in several types
        raise CodecError(f"malformed stream message: {exc}") from exc
    raise CodecError(f"unexpected stream message type {kind}")


def _read_exact(unpacker: msgpack.Unpacker, n: int) -> bytes | None:
    if n == 0:
        return b""
    data: bytes = unpacker.read_bytes(n)
    return data if len(data) == n else None

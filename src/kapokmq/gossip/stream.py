"""TCP stream messages: push/pull, TCP ping/ack, user messages.

Streams carry no length prefix, and the peer keeps the connection open until it has our
reply, so ``read_stream`` parses msgpack values as the bytes arrive and stops when the
message is complete. It also bounds the work one stream can cause (docs/gossip.md,
Bounded work): the bytes read, the node states of a push/pull, the LZW output, and it
decodes and parses in slices, yielding to the event loop in between.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from kapokmq.gossip import lzw
from kapokmq.gossip.codec import (
    Ack,
    B,
    CodecError,
    Compress,
    ErrResp,
    MsgType,
    Ping,
    PushNodeState,
    PushPullHeader,
    UserMsgHeader,
    compress_payload,
    encode,
    from_wire_map,
    lzw_limit,
    pack,
)
from kapokmq.gossip.crypto import Keyring, encryption_version

_CHUNK = 65536
_CODES_PER_SLICE: Final = 16384  # ~5 ms of LZW decoding
_STATES_PER_SLICE: Final = 256  # ~2 ms of parsing and merging


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


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """What a node accepts on a stream: its keyring and the caps of docs/gossip.md."""

    keyring: Keyring | None = None
    verify_incoming: bool = True
    max_bytes: int = 20 << 20
    max_nodes: int = 1024


class StreamBudget:
    """The bytes all incoming streams still being read hold together (docs/gossip.md,
    Bounded work): past ``limit`` the stream holding the most gives way, so streams an
    outsider fills (up to ``max_bytes`` each, 128 at once) can't take gigabytes, and a
    real peer's small stream is never the one closed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.claims: set[Claim] = set()

    def claim(self, abort: Callable[[], None]) -> Claim:
        """A stream's share; ``abort`` closes it when another stream needs the room."""
        claim = Claim(self, abort)
        self.claims.add(claim)
        return claim


class Claim:
    __slots__ = ("abort", "budget", "held")

    def __init__(self, budget: StreamBudget, abort: Callable[[], None]) -> None:
        self.budget = budget
        self.abort = abort
        self.held = 0

    def take(self, n: int) -> None:
        """Count ``n`` more bytes read; CodecError if this stream is the one to give way."""
        budget = self.budget
        if self not in budget.claims:
            return  # released: it was given way and is being closed
        self.held += n
        budget.total += n
        while budget.total > budget.limit:
            biggest = max(budget.claims, key=lambda c: c.held)
            if biggest is self:
                raise CodecError(
                    f"gossip streams being read hold over {budget.limit} bytes; "
                    "the biggest gives way"
                )
            biggest.release()
            biggest.abort()

    def release(self) -> None:
        budget = self.budget
        if self in budget.claims:
            budget.claims.discard(self)
            budget.total -= self.held
            self.held = 0


class _Source:
    """msgpack values and raw bytes from a stream (or, with no reader, from ``data``)."""

    def __init__(
        self,
        reader: asyncio.StreamReader | None,
        deadline: float,
        max_bytes: int,
        data: bytes = b"",
        claim: Claim | None = None,
    ) -> None:
        self._reader = reader
        self._claim = claim
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._unpacker = msgpack.Unpacker(
            raw=True, strict_map_key=False, max_buffer_size=max(max_bytes, len(data), 1)
        )
        self._unpacker.feed(data)
        self._total = len(data)

    async def _more(self) -> None:
        if self._reader is None:
            raise CodecError("truncated stream message")
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError("timed out reading gossip stream")
        async with asyncio.timeout(remaining):
            chunk = await self._reader.read(_CHUNK)
        if not chunk:
            raise ConnectionError("gossip stream closed before a complete message")
        self._total += len(chunk)
        if self._total > self._max_bytes:
            raise CodecError(f"stream message larger than the limit ({self._max_bytes} bytes)")
        if self._claim is not None:
            self._claim.take(len(chunk))
        self._unpacker.feed(chunk)

    async def value(self) -> Any:
        while True:
            try:
                return self._unpacker.unpack()
            except msgpack.OutOfData:
                await self._more()
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                # TypeError: a map key msgpack cannot hash (an array), from a hostile peer
                raise CodecError(f"malformed stream message: {exc}") from exc

    async def raw(self, n: int) -> bytes:
        out = bytearray()
        while True:
            out += self._unpacker.read_bytes(n - len(out))
            if len(out) == n:
                return bytes(out)
            await self._more()


async def read_stream(
    reader: asyncio.StreamReader, timeout: float, policy: StreamPolicy, claim: Claim | None = None
) -> StreamMessage:
    """Read one stream message: decrypt (``[10]``), decompress (``[9]``), parse.

    Raises CodecError for anything a Go node would refuse (memberlist's readStream
    wording where it has one), ConnectionError/TimeoutError for a broken stream.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    src = _Source(reader, deadline, policy.max_bytes, claim=claim)
    kind = (await src.raw(1))[0]
    if kind == MsgType.ENCRYPT:
        if policy.keyring is None:
            raise CodecError("Remote state is encrypted and encryption is not configured")
        size = await src.raw(4)
        (length,) = struct.unpack(">I", size)
        if length > policy.max_bytes:
            raise CodecError(f"Remote node state is larger than limit ({length})")
        payload = await src.raw(length)
        decryption = policy.keyring.decryption(payload, bytes((kind,)) + size)
        while (plain := decryption.step()) is None:
            await asyncio.sleep(0)
        if not plain:
            raise CodecError("empty encrypted stream message")
        kind, src = plain[0], _Source(None, deadline, policy.max_bytes, plain[1:])
    elif policy.keyring is not None and policy.verify_incoming:
        raise CodecError("Encryption is configured but remote state is not encrypted")
    if kind == MsgType.COMPRESS:
        body = _typed(Compress, await src.value())
        inner = await _decompress(body, policy.max_bytes)
        if not inner:
            raise CodecError("empty compressed stream message")
        kind, src = inner[0], _Source(None, deadline, policy.max_bytes, inner[1:])
    return await _parse(kind, src, policy)


async def _decompress(body: Compress, ceiling: int) -> bytes:
    if body.algo != 0:
        raise CodecError(f"unknown compression algorithm {body.algo}")
    data = body.buf or b""
    decoder = lzw.Decoder(data, lzw_limit(len(data), ceiling))
    try:
        while (out := decoder.step(_CODES_PER_SLICE)) is None:
            await asyncio.sleep(0)
    except lzw.LZWError as exc:
        raise CodecError(str(exc)) from exc
    return out


def _typed(cls: type[B], raw: Any) -> B:
    try:
        return from_wire_map(cls, raw)
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"malformed stream message: {exc}") from exc


async def _parse(kind: int, src: _Source, policy: StreamPolicy) -> StreamMessage:
    if kind == MsgType.PUSH_PULL:
        header = _typed(PushPullHeader, await src.value())
        if header.nodes > policy.max_nodes:
            raise CodecError(
                f"push/pull with {header.nodes} nodes, more than the limit ({policy.max_nodes})"
            )
        if header.user_state_len > policy.max_bytes:
            raise CodecError("push/pull user state larger than the limit")
        states: list[PushNodeState] = []
        for i in range(header.nodes):
            states.append(_typed(PushNodeState, await src.value()))
            if i % _STATES_PER_SLICE == _STATES_PER_SLICE - 1:
                await asyncio.sleep(0)
        user = await src.raw(header.user_state_len)
        return PushPull(join=header.join, states=states, user_state=user)
    if kind == MsgType.PING:
        return _typed(Ping, await src.value())
    if kind == MsgType.ACK:
        return _typed(Ack, await src.value())
    if kind == MsgType.ERR:
        return _typed(ErrResp, await src.value())
    if kind == MsgType.USER:
        uheader = _typed(UserMsgHeader, await src.value())
        if uheader.user_msg_len > policy.max_bytes:
            raise CodecError("user message larger than the limit")
        return UserStream(await src.raw(uheader.user_msg_len))
    raise CodecError(f"unexpected stream message type {kind}")


def seal_stream(data: bytes, keyring: Keyring | None, protocol_version: int) -> bytes:
    """Encrypt an encoded stream message when a keyring is in use (else as is)."""
    if keyring is None:
        return data
    return keyring.seal_stream(encryption_version(protocol_version), data)

"""memberlist 0.2.2 wire messages and packet framing (sans-I/O).

Bodies are msgpack maps keyed by Go field names, encoded the way
hashicorp/go-msgpack 0.5 does: keys sorted, strings and byte slices both as
old-spec "raw", ``omitempty`` fields left out. Decoding is lenient where Go is
(missing keys are zero values) and strict where Go is (a string field must be
raw, not bin).
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Final, TypeVar

import msgpack

from kapokmq.gossip import lzw


class MsgType(IntEnum):
    """First byte of every memberlist message."""

    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK = 11
    HAS_CRC = 12
    ERR = 13
    HAS_LABEL = 244


class CodecError(ValueError):
    """A message could not be decoded; Go would drop it too."""


# Field kinds: how a Go type maps to msgpack.
UINT: Final = "uint"
STR: Final = "str"
BYTES: Final = "bytes"  # []byte, may be nil (None)
BOOL: Final = "bool"
VSN: Final = "vsn"  # []uint8 sent as a 6-byte raw string


@dataclass(frozen=True, slots=True)
class _Field:
    go: str
    attr: str
    kind: str
    omitempty: bool = False


class Body:
    """Base class of msgpack message bodies."""

    TYPE: ClassVar[MsgType]
    WIRE: ClassVar[tuple[_Field, ...]]


B = TypeVar("B", bound=Body)


@dataclass(slots=True)
class Ping(Body):
    seq_no: int
    node: str
    source_addr: bytes | None = None
    source_port: int = 0
    source_node: str = ""
    TYPE: ClassVar[MsgType] = MsgType.PING
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("SeqNo", "seq_no", UINT),
        _Field("Node", "node", STR),
        _Field("SourceAddr", "source_addr", BYTES, True),
        _Field("SourcePort", "source_port", UINT, True),
        _Field("SourceNode", "source_node", STR, True),
    )


@dataclass(slots=True)
class IndirectPing(Body):
    seq_no: int
    target: bytes | None
    port: int
    node: str
    nack: bool = False
    source_addr: bytes | None = None
    source_port: int = 0
    source_node: str = ""
    TYPE: ClassVar[MsgType] = MsgType.INDIRECT_PING
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("SeqNo", "seq_no", UINT),
        _Field("Target", "target", BYTES),
        _Field("Port", "port", UINT),
        _Field("Node", "node", STR),
        _Field("Nack", "nack", BOOL),
        _Field("SourceAddr", "source_addr", BYTES, True),
        _Field("SourcePort", "source_port", UINT, True),
        _Field("SourceNode", "source_node", STR, True),
    )


@dataclass(slots=True)
class Ack(Body):
    seq_no: int
    payload: bytes | None = None
    TYPE: ClassVar[MsgType] = MsgType.ACK
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("SeqNo", "seq_no", UINT),
        _Field("Payload", "payload", BYTES),
    )


@dataclass(slots=True)
class Nack(Body):
    seq_no: int
    TYPE: ClassVar[MsgType] = MsgType.NACK
    WIRE: ClassVar[tuple[_Field, ...]] = (_Field("SeqNo", "seq_no", UINT),)


@dataclass(slots=True)
class ErrResp(Body):
    error: str
    TYPE: ClassVar[MsgType] = MsgType.ERR
    WIRE: ClassVar[tuple[_Field, ...]] = (_Field("Error", "error", STR),)


@dataclass(slots=True)
class Suspect(Body):
    incarnation: int
    node: str
    from_: str
    TYPE: ClassVar[MsgType] = MsgType.SUSPECT
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("Incarnation", "incarnation", UINT),
        _Field("Node", "node", STR),
        _Field("From", "from_", STR),
    )


@dataclass(slots=True)
class Alive(Body):
    incarnation: int
    node: str
    addr: bytes | None
    port: int
    meta: bytes | None
    vsn: bytes
    TYPE: ClassVar[MsgType] = MsgType.ALIVE
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("Incarnation", "incarnation", UINT),
        _Field("Node", "node", STR),
        _Field("Addr", "addr", BYTES),
        _Field("Port", "port", UINT),
        _Field("Meta", "meta", BYTES),
        _Field("Vsn", "vsn", VSN),
    )


@dataclass(slots=True)
class Dead(Body):
    incarnation: int
    node: str
    from_: str
    TYPE: ClassVar[MsgType] = MsgType.DEAD
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("Incarnation", "incarnation", UINT),
        _Field("Node", "node", STR),
        _Field("From", "from_", STR),
    )


@dataclass(slots=True)
class PushPullHeader(Body):
    nodes: int
    user_state_len: int
    join: bool
    TYPE: ClassVar[MsgType] = MsgType.PUSH_PULL
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("Nodes", "nodes", UINT),
        _Field("UserStateLen", "user_state_len", UINT),
        _Field("Join", "join", BOOL),
    )


@dataclass(slots=True)
class PushNodeState(Body):
    name: str
    addr: bytes | None
    port: int
    meta: bytes | None
    incarnation: int
    state: int
    vsn: bytes
    TYPE: ClassVar[MsgType] = MsgType.PUSH_PULL
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("Name", "name", STR),
        _Field("Addr", "addr", BYTES),
        _Field("Port", "port", UINT),
        _Field("Meta", "meta", BYTES),
        _Field("Incarnation", "incarnation", UINT),
        _Field("State", "state", UINT),
        _Field("Vsn", "vsn", VSN),
    )


@dataclass(slots=True)
class UserMsgHeader(Body):
    user_msg_len: int
    TYPE: ClassVar[MsgType] = MsgType.USER
    WIRE: ClassVar[tuple[_Field, ...]] = (_Field("UserMsgLen", "user_msg_len", UINT),)


@dataclass(slots=True)
class Compress(Body):
    algo: int
    buf: bytes | None
    TYPE: ClassVar[MsgType] = MsgType.COMPRESS
    WIRE: ClassVar[tuple[_Field, ...]] = (
        _Field("Algo", "algo", UINT),
        _Field("Buf", "buf", BYTES),
    )


# ---------------------------------------------------------------- msgpack


def to_wire_map(body: Body) -> dict[str, Any]:
    """The map go-msgpack would build for ``body`` (sorted, omitempty applied)."""
    out: dict[str, Any] = {}
    for f in body.WIRE:
        value = getattr(body, f.attr)
        if f.omitempty and not value:
            continue
        out[f.go] = value
    return dict(sorted(out.items()))


def pack(body: Body) -> bytes:
    """msgpack body only (no type byte)."""
    data: bytes = msgpack.packb(to_wire_map(body), use_bin_type=False)
    return data


def encode(body: Body) -> bytes:
    """Type byte followed by the msgpack body."""
    return bytes((body.TYPE,)) + pack(body)


def _convert(f: _Field, value: Any) -> Any:
    if f.kind == UINT:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CodecError(f"{f.go}: expected unsigned int, got {value!r}")
        return value
    if f.kind == STR:
        if value is None:
            return ""
        if not isinstance(value, bytes):
            raise CodecError(f"{f.go}: expected raw string, got {type(value).__name__}")
        return value.decode("utf-8", errors="replace")
    if f.kind == BYTES:
        if value is None or isinstance(value, bytes):
            return value
        raise CodecError(f"{f.go}: expected bytes, got {type(value).__name__}")
    if f.kind == BOOL:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise CodecError(f"{f.go}: expected bool, got {value!r}")
        return value
    # VSN
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        return bytes(value)
    raise CodecError(f"{f.go}: bad version vector {value!r}")


def from_wire_map(cls: type[B], raw: Any) -> B:
    """Build ``cls`` from a decoded msgpack map (keys are bytes, raw=True)."""
    if not isinstance(raw, dict):
        raise CodecError(f"{cls.__name__}: expected map, got {type(raw).__name__}")
    kwargs = {f.attr: _convert(f, raw.get(f.go.encode())) for f in cls.WIRE}
    return cls(**kwargs)


def unpack(cls: type[B], data: bytes) -> B:
    """Decode exactly one msgpack body of type ``cls``."""
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
    unpacker.feed(data)
    try:
        raw = unpacker.unpack()  # Go ignores trailing bytes too.
    except Exception as exc:
        raise CodecError(f"{cls.__name__}: {exc}") from exc
    return from_wire_map(cls, raw)


PACKET_BODIES: Final[dict[int, type[Body]]] = {
    MsgType.PING: Ping,
    MsgType.INDIRECT_PING: IndirectPing,
    MsgType.ACK: Ack,
    MsgType.NACK: Nack,
    MsgType.SUSPECT: Suspect,
    MsgType.ALIVE: Alive,
    MsgType.DEAD: Dead,
    MsgType.ERR: ErrResp,
}

# ---------------------------------------------------------------- framing

COMPOUND_HEADER_OVERHEAD: Final = 2  # type byte + count
COMPOUND_OVERHEAD: Final = 2  # u16 length per part
MAX_COMPOUND_PARTS: Final = 255


def make_compound(msgs: list[bytes]) -> bytes:
    """``[7][n][len u16 BE]*n`` followed by the messages (at most 255)."""
    if not 0 < len(msgs) <= MAX_COMPOUND_PARTS:
        raise ValueError("compound needs 1..255 messages")
    header = bytes((MsgType.COMPOUND, len(msgs)))
    lengths = b"".join(struct.pack(">H", len(m)) for m in msgs)
    return header + lengths + b"".join(msgs)


def split_compound(buf: bytes) -> list[bytes]:
    """Parts of a compound body (after the type byte); truncation keeps what fits."""
    if not buf:
        raise CodecError("missing compound length byte")
    n = buf[0]
    pos = 1
    if len(buf) < pos + 2 * n:
        raise CodecError("truncated compound length slice")
    lengths = struct.unpack_from(f">{n}H", buf, pos)
    pos += 2 * n
    parts: list[bytes] = []
    for length in lengths:
        if pos + length > len(buf):
            break  # Go keeps the parts it could read.
        parts.append(buf[pos : pos + length])
        pos += length
    return parts


def add_crc(buf: bytes) -> bytes:
    """``[12][crc32 IEEE BE][payload]``."""
    return bytes((MsgType.HAS_CRC,)) + struct.pack(">I", zlib.crc32(buf)) + buf


def compress_payload(buf: bytes) -> bytes:
    """``[9]`` + compress{Algo: LZW, Buf: lzw(buf)}."""
    return encode(Compress(algo=0, buf=lzw.compress(buf)))


# LZW output is capped by what a real peer sends: memberlist's LZW shrinks a node table
# about 10x, so more than LZW_RATIO times the input (or LZW_FLOOR for small inputs) is a
# decompression bomb; and never more than the protocol's message size.
LZW_RATIO: Final = 32
LZW_FLOOR: Final = 64 << 10
MAX_PACKET: Final = 65536  # the most a memberlist node reads from one datagram
# A real peer builds packets of at most UDPBufferSize (1400) bytes, about 1,250 codes;
# a packet needing more than this many codes is dropped, so none costs more than ~5 ms.
PACKET_LZW_CODES: Final = 16384


def lzw_limit(compressed: int, ceiling: int) -> int:
    """The most output accepted from ``compressed`` bytes of LZW."""
    return min(ceiling, max(LZW_FLOOR, LZW_RATIO * compressed))


def decompress_body(body: Compress) -> bytes:
    """Decompress a packet's ``[9]`` body, within the packet bounds above."""
    if body.algo != 0:
        raise CodecError(f"unknown compression algorithm {body.algo}")
    data = body.buf or b""
    try:
        out = lzw.Decoder(data, lzw_limit(len(data), MAX_PACKET)).step(PACKET_LZW_CODES)
    except lzw.LZWError as exc:
        raise CodecError(str(exc)) from exc
    if out is None:
        raise CodecError("compressed packet too large")
    return out


def strip_label(buf: bytes) -> bytes:
    """Drop a v0.3+ ``hasLabel`` prefix if present (we never send labels)."""
    if buf and buf[0] == MsgType.HAS_LABEL:
        if len(buf) < 2 or buf[1] == 0 or len(buf) < 2 + buf[1]:
            raise CodecError("truncated label")
        return buf[2 + buf[1] :]
    return buf


def unwrap_packet(buf: bytes) -> list[bytes]:
    """Undo label/CRC/compress/compound layers of a UDP packet.

    Returns the single messages it contains, each still starting with its
    type byte. Raises CodecError on a bad CRC or malformed framing.
    """
    buf = strip_label(buf)
    if len(buf) >= 5 and buf[0] == MsgType.HAS_CRC:
        (crc,) = struct.unpack_from(">I", buf, 1)
        buf = buf[5:]
        if zlib.crc32(buf) != crc:
            raise CodecError("CRC mismatch")
    out: list[bytes] = []
    _flatten(buf, out, depth=0, compressed=False)
    return out


def _flatten(msg: bytes, out: list[bytes], depth: int, compressed: bool) -> bool:
    """Append the single messages of ``msg``; returns whether it held a compressed layer.

    A real peer compresses a packet once, as a whole, so a second compressed layer in one
    packet is refused: nested layers would multiply the LZW bound per packet.
    """
    if depth > 8:
        raise CodecError("message nesting too deep")
    if not msg:
        return compressed
    kind = msg[0]
    if kind == MsgType.COMPOUND:
        for part in split_compound(msg[1:]):
            compressed = _flatten(part, out, depth + 1, compressed)
    elif kind == MsgType.COMPRESS:
        if compressed:
            raise CodecError("more than one compressed layer in a packet")
        _flatten(decompress_body(unpack(Compress, msg[1:])), out, depth + 1, True)
        return True
    else:
        out.append(msg)
    return compressed


# ---------------------------------------------------------------- helpers


def ip_to_bytes(host: str) -> bytes:
    """Raw IP bytes as Go's net.IP; IPv4 as 4 bytes."""
    return ipaddress.ip_address(host).packed


def ip_from_bytes(raw: bytes | None) -> str:
    """Accept 4-byte, 16-byte and IPv4-mapped 16-byte addresses."""
    if not raw:
        return ""
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError as exc:
        raise CodecError(f"bad IP address {raw!r}") from exc
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)

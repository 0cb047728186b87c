"""Messages, client records and their wire encodings (docs/protocol.md "Consumer session",
"HTTP API").

The original server serialises with Go's encoding/json, so our JSON must look the same:
compact, struct fields in declaration order, map keys sorted, and the HTML-sensitive
characters ``< > &`` (plus U+2028/U+2029) escaped as ``\\u003c`` and friends.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import time
from binascii import hexlify as _hexlify
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import islice
from operator import length_hint
from typing import Any

import msgspec
import orjson


class Status(IntEnum):
    """Message status as stored and reported by the console (2 is our addition)."""

    WAITING = -1
    DELAYED = 0
    CONSUMED = 1
    DEAD = 2


Code = int | str
"""A message code inside the broker (``code_key``): the wire's 32 lowercase hex digits as
their 128-bit int, any other code as its string."""

_HEX32 = "%032x"


def code_key(code: str | int) -> Code:
    """A code from the wire or a file as the broker keeps it: 32 lowercase hex digits
    become their int (44 bytes, a 48-byte block, against 81 bytes for the string, a
    96-byte one; docs/performance.md "Session 5"), anything else (uppercase, another
    length, not hex) stays the string it is, so it only ever matches itself, as before."""
    if type(code) is str and len(code) == 32:
        try:
            number = int(code, 16)
        except ValueError:
            return code
        # int() also takes uppercase, a 0x prefix, underscores, Unicode digits...
        if _HEX32 % number == code:
            return number
    return code


def code_keys(codes: Sequence[str | int]) -> list[Code]:
    """``code_key`` of each of a consumer's acks, in C when all are canonical (the usual
    case): ``bytes.fromhex`` plus ``int.from_bytes``, ~65 ns per code against ~265 ns for
    ``int(code, 16)`` with the spelling check (timeit). The checks: every code 32
    characters that are 16 bytes of hex (so no whitespace, which ``fromhex`` skips, and
    no sign, prefix, underscore or non-ASCII digit), and no uppercase letter in any."""
    try:
        raw = list(map(_fromhex, codes))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return list(map(code_key, codes))
    joined = "".join(codes)  # type: ignore[arg-type]
    if (
        len(joined) == 32 * len(codes)
        and all(map(_IS_16, map(len, raw)))
        and joined == joined.lower()  # str.islower is per-character Unicode: ~50x dearer
    ):
        return list(map(_from_bytes, raw))
    return list(map(code_key, codes))


_fromhex = bytes.fromhex
_from_bytes = int.from_bytes
_IS_16 = (16).__eq__


def code_text(code: Code) -> str:
    """A code as the wire and the files spell it (the inverse of ``code_key``)."""
    if isinstance(code, str):
        return code
    return _HEX32 % code


class _Gone:
    def __repr__(self) -> str:
        return "GONE"


GONE: Any = _Gone()
"""``Flight.owner`` of a message removed from the table (``Message.removed``)."""


class Flight:
    """Where a message's delivery stands, shared by every message of one push batch (or
    pub/sub fan-out), so a message holds one reference instead of three fields.

    ``owner``: None (not in flight: queued, delayed, consumed, dead), the consumer session
    a point-to-point message is in flight to, the ``FANOUT`` marker of a fanned-out pub/sub
    message (kept when it is consumed: the other subscribers' copies stay in their windows
    until swept), or ``GONE`` once removed. ``at``: the time of the push (or fan-out) the
    redelivery sweep goes by (core/broker.py ``_sweep``); a removal keeps it
    (``gone``), so a removed message's copies still leave windows on time.
    ``consumed``: the message's ConsumedTime, 0 until it is consumed (a consumed message's
    flight is over: one flight is shared by the messages of one ack, or by those of one
    fan-out acked together), so a message needs no field for it (``Message``).
    The one cycle, session -> in-flight table -> message -> flight -> session, is cut
    when the message leaves the table (its flight becomes ``IDLE``); messages are not
    traced by the cyclic collector, so it could not be.
    """

    __slots__ = ("_gone", "at", "consumed", "owner")

    def __init__(self, owner: object, at: float, consumed: int = 0) -> None:
        self.owner = owner
        self.at = at
        self.consumed = consumed
        self._gone: Flight | None = None

    def __repr__(self) -> str:
        return f"Flight({self.owner!r}, {self.at}, {self.consumed})"

    def gone(self) -> Flight:
        """This flight's twin for a removed message: owner ``GONE``, the same times."""
        twin = self._gone
        if twin is None:
            twin = self._gone = Flight(GONE, self.at, self.consumed)
        return twin

    def landed(self, consumed: int) -> Flight:
        """This flight for a message consumed at ``consumed``: the same owner and time
        (a pub/sub message's copies stay in the other subscribers' windows)."""
        return Flight(self.owner, self.at, consumed)


IDLE = Flight(None, 0.0)
"""The flight of a message that is not in flight and was never pushed since it was
queued (the default)."""


class Message(msgspec.Struct, gc=False, eq=False):
    """One stored message, in eight fields: an 80-byte block (docs/performance.md
    "Session 7: memory").

    The wire fields mirror the original's struct, two of them derived: CreateTime is the
    whole second of ``arrival`` (a published message's CreateTime is ``int(now)`` of the
    ``now`` that is its arrival; a record whose CreateTime is another second takes
    arrival = CreateTime: ``new_message``), ConsumedTime is kept by its ``flight``. The
    rest is scheduling state owned by the core: ``flight``, where its delivery stands
    (``Flight``: who holds it since when, that it was removed, when it was consumed), one
    field for what were four (``holder``, ``pushed_at``, ``removed``, ``consumed_time``,
    still readable as properties).

    The payload is kept as ``body``: its JSON string literal without the quotes, escaped
    as the push frame spells it (``body_of``), so a push splices it instead of encoding
    the text again, and a 100-byte payload is a 144-byte ``bytes`` block instead of a
    160-byte ``str`` one (docs/performance.md "Session 7: memory"). ``data`` gives the
    text back (console, HTTP reads, replication, files).

    A msgspec Struct rather than a ``__slots__`` class because it can opt out of the
    cyclic garbage collector (``gc=False``): a broker holds up to millions of messages,
    and with ordinary objects each young-generation collection re-walked tens of
    thousands of them, a 20-30 ms pause every couple of seconds at 20k msg/s (the p99
    latency of issue 7). A message never closes a reference cycle that only the cyclic
    collector could break: a point-to-point message's ``flight`` names its session only
    while it sits in that session's in-flight table.
    Identity equality (``eq=False``): two messages are never "the same" by value.
    Creation is also about 3x cheaper (157 vs 500 ns) and 16 bytes smaller.

    The files keep the original's fields (docs/durability.md "Files": ADD ``[1, code,
    topic, data, create_time, consumed_time, delay_time, status, arrival, attempts]``);
    ``new_message`` builds a message from those values (storage/format.py ``AddRecord``).
    """

    code: int | str  # a Code: see code_key
    topic: str
    body: bytes  # body_of(the payload)
    delay_time: int
    status: Status
    arrival: float  # when it was published (the broker's clock); CreateTime its second
    attempts: int = 0
    flight: Flight = IDLE

    @property
    def create_time(self) -> int:
        """CreateTime: unix seconds (DESIGN A1), the whole second of its arrival."""
        return int(self.arrival)

    @property
    def consumed_time(self) -> int:
        """ConsumedTime: unix seconds, 0 unless consumed (kept by its ``flight``)."""
        return self.flight.consumed

    @consumed_time.setter
    def consumed_time(self, value: int) -> None:
        flight = self.flight
        if flight.consumed != value:
            self.flight = flight.landed(value)

    @property
    def data(self) -> str:
        """The payload as text (lone surrogates have become U+FFFD: ``body_of``)."""
        return body_text(self.body)

    @property
    def holder(self) -> object | None:
        """The session a point-to-point message is in flight to, ``FANOUT`` (core/dispatch.py)
        for a fanned-out pub/sub message, None when it is not in flight (or was removed)."""
        owner = self.flight.owner
        return None if owner is GONE else owner

    @property
    def pushed_at(self) -> float:
        """When it was last pushed (pub/sub: fanned out); 0.0 if never since it was queued."""
        return self.flight.at

    @property
    def removed(self) -> bool:
        """Deleted from the table (deleted, expired, consumed with isCleanConsumed)."""
        return self.flight.owner is GONE

    def __repr__(self) -> str:
        return (
            f"Message({code_text(self.code)}, topic={self.topic!r}, status={self.status.name}, "
            f"delay={self.delay_time}, attempts={self.attempts})"
        )

    def stale_at(self) -> int:
        """From when ``mq.isClean`` counts its cleanTime: its creation, or its due time if
        that is later, so a long delay is cleaned cleanTime after it came due, never while
        it waits or right after (README, Configuration)."""
        return self.create_time + max(0, self.delay_time)

    def stale_before(self, cutoff: float) -> bool:
        """Old enough for ``mq.isClean`` to delete it (``cutoff`` is now - cleanTime)."""
        return self.stale_at() < cutoff

    def to_dict(self, with_data: bool = True) -> dict[str, Any]:
        """The message as the original's JSON object (field order matters)."""
        return {
            "MessageCode": code_text(self.code),
            "MessageData": self.data if with_data else "",
            "Topic": self.topic,
            "CreateTime": self.create_time,
            "ConsumedTime": self.consumed_time,
            "DelayTime": self.delay_time,
            "Status": int(self.status),
        }


def new_message(
    code: Code,
    topic: str,
    data: str,
    create_time: int,
    consumed_time: int,
    delay_time: int,
    status: Status,
    arrival: float,
    attempts: int = 0,
) -> Message:
    """A message from the values of an ADD record (docs/durability.md "Files"), the
    payload as text. A CreateTime that is not the whole second of ``arrival`` (a
    hand-made or foreign record; this broker never writes one) wins: the message arrives
    at the start of that second, so its CreateTime reads as before."""
    if int(arrival) != create_time:
        arrival = float(create_time)
    flight = Flight(None, 0.0, consumed_time) if consumed_time else IDLE
    return Message(code, topic, body_of(data), delay_time, status, arrival, attempts, flight)


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


def body_of(data: str) -> bytes:
    """A payload as ``Message.body``: ``json_string(data)`` without its quotes, as an
    exact-size copy (the slice): orjson's own result is over-allocated and shrunk, and
    keeping it would retain far more than its length (docs/performance.md "Session 7:
    memory"). A plain ASCII payload, the common case, goes straight to orjson."""
    if data.isascii() and "<" not in data and ">" not in data and "&" not in data:
        return _orjson_dumps(data)[1:-1]  # ascii: orjson and json_string agree
    return json_string(data)[1:-1]


def bodies_of(data: list[str]) -> list[bytes]:
    """``body_of`` of each payload, in C (a recovery's: thousands at once): one orjson
    call for the list, Go's escapes applied to it, cut at the element boundaries, each
    piece a new exact-size object. The cut is exact when no payload holds a quote: then
    every quote in the encoding is one of the list's own, and ``","`` a boundary."""
    joined = "".join(data)
    if not data or '"' in joined:
        return list(map(body_of, data))
    try:
        encoded = _orjson_dumps(data)
    except orjson.JSONEncodeError:  # a lone surrogate somewhere: one by one
        return list(map(body_of, data))
    # as json_string: the regex only when something can match (it is slow on 64 KiB)
    if "<" in joined or ">" in joined or "&" in joined or not joined.isascii():
        encoded = go_escape(encoded)
    return encoded[2:-2].split(b'","')


def body_text(body: bytes) -> str:
    """``Message.body`` as the text it encodes: without a backslash it is the text's own
    UTF-8 (escaping only ever adds backslash sequences). The backslash is looked for as an
    int (memchr, ~30 ns): Python 3.11's ``bytes.__contains__`` with a bytes needle first
    tries it as an int and builds and drops a TypeError, ~450 ns (docs/performance.md
    "Session 7: WAL")."""
    if 92 not in body:  # ord("\\")
        return body.decode()
    text: str = orjson.loads(b'"%s"' % body)
    return text


_orjson_dumps = orjson.dumps
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
    return b'{"MessageCode":"%s","MessageData":"%s","Topic":%s,"CreateTime":%d,' % (
        code_text(msg.code).encode(),
        msg.body,
        topic_json(msg.topic),
        msg.create_time,
    ) + b'"ConsumedTime":0,"DelayTime":%d,"Status":-1}\n' % (msg.delay_time,)


_CODES_PER_DRAW = 4096
_CUT_DRAW = struct.Struct("16s" * _CODES_PER_DRAW).unpack
HASH_MODULUS = (1 << 61) - 1
"""CPython hashes an int as its value modulo this Mersenne prime (``sys.hash_info.modulus``
on 64-bit builds)."""
RANDOM_BITS = 67  # the most that keep random * HASH_MODULUS + sequence below 2**128
SEQUENCE_EPOCH_NS = 1_577_836_800 * 10**9  # 2020-01-01 UTC: 2**61 ns later is 2093
# a draw as one int of 4,096 16-byte fields, each field (a code) computed in one pass:
_RANDOM_MASK = int.from_bytes(((1 << RANDOM_BITS) - 1).to_bytes(16) * _CODES_PER_DRAW)
_ONES = int.from_bytes((1).to_bytes(16) * _CODES_PER_DRAW)  # 1 in every field
_STEPS = int.from_bytes(b"".join(i.to_bytes(16) for i in range(_CODES_PER_DRAW)))  # 0, 1, ...
_NEXT_DRAW = _CODES_PER_DRAW * _ONES


class _Draw:
    """A ``CodeGenerator``'s current draw: its codes not yet taken, and all its bytes."""

    __slots__ = ("codes", "raw")

    def __init__(self) -> None:
        self.codes: Iterator[int] = iter(())
        self.raw = b""


class CodeGenerator:
    """Unique, unpredictable message codes, kept as ints (``code_key``; 32 lowercase hex
    digits on the wire): ``random * HASH_MODULUS + sequence``, ``RANDOM_BITS`` from the OS
    and a per-process sequence (docs/protocol.md "Consumer session").

    Random so a client cannot guess another's codes (an ack or a console lookup needs the
    code); the sequence because an int's hash is its value modulo ``HASH_MODULUS``, so
    each code hashes to the next number and the message table and the in-flight tables
    fill their slots in order instead of at a random place each, a cache miss per insert
    (docs/performance.md "Session 6: e2e"). A code is unique because ``(random,
    sequence)`` is (its value's quotient and remainder): the sequence starts at the wall
    clock in nanoseconds since ``SEQUENCE_EPOCH_NS`` and takes one number per code, and no
    process makes a code per nanosecond, so every code made before, by this process or an
    earlier one (recovered from disk, replicated from a master), has a smaller sequence
    than a process started after it. Were the clock set back, two codes would still have
    to draw the same 67 random bits (2**-67 a pair).

    The OS is asked for 4,096 codes' worth of bytes at once; they are computed on the
    draw as one int (mask, shift, subtract, add: a few passes in C over 64 KiB) and cut by one
    ``struct`` unpack, no Python loop per code (~0.12 us per code, against ~0.08 us for
    128 random bits alone and ~0.18 us for the arithmetic per code with ``map``; timeit).
    ``next_code`` is the fastest way to call it.
    """

    __slots__ = ("_draw", "next_code", "start")

    def __init__(self, start: int | None = None) -> None:
        if start is None:
            start = time.time_ns() - SEQUENCE_EPOCH_NS
        self.start = start % HASH_MODULUS
        self._draw = _Draw()  # the draw next_code takes from (none before the first)
        self.next_code: Callable[[], Code] = itertools.chain.from_iterable(
            self._draws(self.start, self._draw)
        ).__next__

    @staticmethod
    def _draws(start: int, current: _Draw) -> Iterator[Iterator[int]]:
        size = 16 * _CODES_PER_DRAW
        sequences = start * _ONES + _STEPS  # each field's sequence number in this draw
        while True:
            randoms = int.from_bytes(os.urandom(size)) & _RANDOM_MASK
            # random * HASH_MODULUS as (random << 61) - random: linear passes, no multiply
            codes = (randoms << 61) - randoms + sequences
            sequences += _NEXT_DRAW
            current.raw = raw = codes.to_bytes(size)
            current.codes = draw = iter(list(map(int.from_bytes, _CUT_DRAW(raw))))
            yield draw

    def take(self, n: int) -> tuple[list[Code], bytes]:
        """The next ``n`` codes (those ``next_code`` would give) and their 16 big-endian
        bytes each, as a batch record holds them (storage/format.py ``join_codes``): cut
        from the draw's own bytes, no conversion per code (docs/performance.md
        "Session 9: WAL codes")."""
        current = self._draw
        left = length_hint(current.codes)  # codes not yet taken from this draw
        if n <= left:
            at = len(current.raw) - 16 * left
            return list(islice(current.codes, n)), current.raw[at : at + 16 * n]
        codes: list[Code] = list(current.codes)  # the rest of this draw, then the next's
        parts = [current.raw[len(current.raw) - 16 * left :]]
        while len(codes) < n:
            codes.append(self.next_code())  # the first of the next draw
            more = list(islice(current.codes, n - len(codes)))
            codes += more
            parts.append(current.raw[: 16 + 16 * len(more)])
        return codes, b"".join(parts)

    def __call__(self) -> Code:
        return self.next_code()


def encode_pushes(batch: list[Message]) -> list[bytes]:
    """``text_frame(encode_push(m))`` for every message of a batch.

    Pushes are the broker's hottest output path, so the per-message work is cut to the
    bytes that differ: the payload is spliced as stored (``Message.body``), everything
    after it (Topic, CreateTime, DelayTime and the constant fields) is formatted again
    only when the topic, arrival or DelayTime differs from the previous message's, which
    in a burst is about once per batch; the frame header is cached per length, and each
    frame is one join of its six parts. The bytes are exactly those of the one-message functions.
    """
    frames: list[bytes] = []
    append = frames.append
    join = b"".join  # of a tuple: ~20 ns less than one bytes % formatting per frame
    headers = _FRAME_HEADERS
    topic: str | None = None
    arrival = -1.0
    delay = -1
    tail = b""
    for msg in batch:
        if msg.arrival != arrival or msg.delay_time != delay or msg.topic is not topic:
            topic, arrival, delay = msg.topic, msg.arrival, msg.delay_time
            tail = b'","Topic":%s,"CreateTime":%d,"ConsumedTime":0,' % (
                topic_json(topic),
                int(arrival),  # Message.create_time
            ) + b'"DelayTime":%d,"Status":-1}\n' % (delay,)
        code = msg.code
        if type(code) is int:
            code_encoded = _hexlify(code.to_bytes(16))  # 32 lowercase hex digits
        else:  # a code kept as its string (code_key): a master's or an old file's
            code_encoded = code_text(code).encode()
        body = msg.body
        # {"MessageCode":" + code + ","MessageData":" + body + the rest
        n = 33 + len(code_encoded) + len(body) + len(tail)
        header = headers.get(n)
        if header is None:
            header = _frame_header(n)
            if len(headers) < 4096:
                headers[n] = header
        append(join((header, _CODE_KEY, code_encoded, _DATA_KEY, body, tail)))
    return frames


_CODE_KEY = b'{"MessageCode":"'
_DATA_KEY = b'","MessageData":"'


class PushBatches:
    """``b"".join(encode_pushes(batch))``, encoded once for a batch list delivered to
    several pub/sub subscribers in one dispatch (core/dispatch.py hands equal batches as
    one list object). Only the latest batch is kept: a later dispatch builds new lists,
    so a remembered one is never mistaken for a batch whose DelayTime has changed since.
    """

    __slots__ = ("_batch", "_frames")

    def __init__(self) -> None:
        self._batch: list[Message] | None = None
        self._frames = b""

    def frames(self, batch: list[Message]) -> bytes:
        if batch is self._batch:
            return self._frames
        frames = b"".join(encode_pushes(batch))
        self._batch = batch
        self._frames = frames
        return frames


_FRAME_HEADERS: dict[int, bytes] = {}


def _frame_header(n: int) -> bytes:
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return _FRAME16(0x81, 126, n)
    return _FRAME64(0x81, 127, n)


_FRAME16 = struct.Struct("!BBH").pack
_FRAME64 = struct.Struct("!BBQ").pack

"""On-disk format shared by WAL segments and snapshots (docs/durability.md "Files").

Every file starts with a 32-byte header::

    magic b"KAPOKMQ\\0" | version u16 | kind u16 | seq u64 | created f64 | crc32 u32

Formats 2 to 4 (4 written by this build) follow it with frames::

    magic b"\\xc1KQF" | length u32 | count u32 | body crc32 u32 | header crc32 u32 | body

The header CRC covers the 16 bytes before it, so a reader that lost its place can find
the next frame by looking for the magic and checking 20 bytes, without trusting a length
read from damaged bytes (0xC1 is never produced by msgpack as a type byte and never
occurs in UTF-8). The body is one msgpack array of ``count`` records. A WAL frame holds
at most ``WAL_FRAME_RECORDS`` records and a snapshot chunk at most ``CHUNK_RECORDS``
records or ``CHUNK_BYTES`` bytes (a single larger record gets a chunk of its own), so one
damaged byte costs at most one frame.

Format 3 is format 2 plus the batch records ``ADD_BATCH_TEXT`` and ``CONSUMED_BATCH`` (a
WAL frame holds one of them alone, of at most ``WAL_FRAME_RECORDS`` messages). Format 4
writes ``ADD_BATCH`` instead of ``ADD_BATCH_TEXT``: the payloads as the bytes
``Message.body`` holds, so writing one is no work and reading one assigns it. WAL
segments are written in format 4, snapshots (which hold no batch records) in format 2,
and files of formats 2 and 3 are read as before.

Format 1 (earlier builds) is still read: ``length u32 | count u32 | crc32 u32`` then
``count`` msgpack records back to back; it cannot be resynchronised, so damage in a
format-1 file costs everything after it in that file.

Records (msgpack arrays):

* ``ADD``    ``[1, code, topic, data, create_time, consumed_time, delay_time, status,
  arrival, attempts]`` — a whole message (WAL: a publish; snapshot: every message)
* ``UPDATE`` ``[2, code, status, consumed_time, delay_time, attempts]`` — an ack, a delay
  coming due, a redelivery, a requeue, a message going dead
* ``REMOVE`` ``[3, code]``
* ``META``   ``[4, code, ttl, deadline or nil, [[time, event], ...]]`` — a message's TTL,
  when it dies unless consumed (nil while delayed), its dead-letter history (WAL: whenever
  one of them changes; snapshot: after the message's ADD, for messages that have any)
* ``DEDUP``  ``[5, key, code, until]`` — a producer dedup id remembered until ``until``
* ``TRACE``  ``[6, code, [event, ...]]`` — a snapshot's copy of one message trace (after the
  DEDUP records, oldest trace first); an event is ``[time, kind, details...]``
  (core/trace.py), a publish's details one ``[producer id, ip, engine]`` array
* ``TRACE_EVENTS`` ``[7, [code, event, code, event, ...]]`` — WAL: trace events recorded
  since the previous such record, in order (one record per loop iteration at most)
* ``END``    ``[9, message_count]`` — the last record of a complete snapshot
* ``ADD_BATCH`` ``[12, topic, create_time, arrival, codes, [body, ...], delays]`` — WAL
  (format 4): the messages one publish call created (one topic, creation time and
  arrival, none consumed or pushed yet); ``codes`` their 128-bit codes as 16 big-endian
  bytes each, back to back; each ``body`` (msgpack bin) the payload as ``Message.body``
  holds it: its JSON string encoding without the quotes (model.py ``body_of``);
  ``delays`` one delay for all (0 mostly) or one per message; a message is delayed if
  its delay is > 0, else waiting
* ``ADD_BATCH_TEXT`` ``[10, topic, create_time, arrival, codes, [data, ...], delays]`` —
  format 3's ``ADD_BATCH`` (read only): the payloads as text
* ``CONSUMED_BATCH`` ``[11, consumed_time, codes, [attempts, ...]]`` — WAL: messages
  acked together: consumed at ``consumed_time``, with their delivery attempts

All integers are little-endian.
"""

from __future__ import annotations

import functools
import mmap
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import msgpack
import msgspec

from kapokmq.model import Code, Message, Status, bodies_of, code_text

try:  # ISA-L's CRC-32, the same checksum as zlib's, ~8x faster: 0.02 against 0.165 ns per
    # byte, ~30 ns of the WAL's work per message (docs/performance.md, "Session 5: WAL")
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - a platform without an isal wheel
    from zlib import crc32

checksum = crc32  # every file and frame checksum of this format

MAGIC = b"KAPOKMQ\x00"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
# a snapshot holds no batch records: it stays format 2, so an earlier build can start
# from the final snapshot of a clean stop (docs/durability.md "Files")
SNAPSHOT_VERSION = 2
KIND_WAL = 1
KIND_SNAPSHOT = 2

HEADER = struct.Struct("<8sHHQd")
HEADER_SIZE = HEADER.size + 4

FRAME_MAGIC = b"\xc1KQF"
FRAME_HEAD = struct.Struct("<4sIII")  # magic, length, count, body crc; then the head crc
FRAME_SIZE = FRAME_HEAD.size + 4
FRAME_V1 = struct.Struct("<III")
MAX_FRAME = 1 << 30  # a length beyond this is garbage, not a frame

WAL_FRAME_RECORDS = 100
CHUNK_RECORDS = 500  # one bad byte in a 20,000-message snapshot costs at most 2.5 %
CHUNK_BYTES = 64 << 10

ADD = 1
UPDATE = 2
REMOVE = 3
META = 4
DEDUP = 5
TRACE = 6
TRACE_EVENTS = 7
END = 9
ADD_BATCH_TEXT = 10  # format 3
CONSUMED_BATCH = 11
ADD_BATCH = 12
CODE_BYTES = 16  # a code in a batch record: its 128-bit int, big-endian

STATUS_OF = {int(s): s for s in Status}

Record = tuple[Any, ...]  # a record as written: a tuple packed by msgpack

_unpackb = msgpack.unpackb


# Records as read back: each record type is an array-like msgspec Struct whose tag is the
# record's first element, so a whole frame body decodes with one call.
class AddRecord(msgspec.Struct, array_like=True, tag=ADD, gc=False):
    """An ADD record (recovery.py ``Tables.add`` makes the broker's Message of it)."""

    code: str
    topic: str
    data: str
    create_time: int
    consumed_time: int
    delay_time: int
    status: Status
    arrival: float
    attempts: int = 0


class Update(msgspec.Struct, array_like=True, tag=UPDATE, gc=False):
    code: str
    status: Status
    consumed_time: int
    delay_time: int
    attempts: int


class Remove(msgspec.Struct, array_like=True, tag=REMOVE, gc=False):
    code: str


class MetaRecord(msgspec.Struct, array_like=True, tag=META, gc=False):
    code: str
    ttl: int
    deadline: float | None
    history: list[tuple[int, str]]


class DedupRecord(msgspec.Struct, array_like=True, tag=DEDUP, gc=False):
    key: str
    code: str
    until: float


class TraceRecord(msgspec.Struct, array_like=True, tag=TRACE, gc=False):
    code: str
    events: list[Any]  # tuples again once read: see ``tuples``


class TraceEvents(msgspec.Struct, array_like=True, tag=TRACE_EVENTS, gc=False):
    pairs: list[Any]  # code, event, code, event, ...


def tuples(value: Any) -> Any:
    """Arrays as tuples, recursively: a trace event is compared with the ones held."""
    if isinstance(value, list | tuple):
        return tuple(tuples(item) for item in value)
    return value


class End(msgspec.Struct, array_like=True, tag=END, gc=False):
    count: int


class AddBatch(msgspec.Struct, array_like=True, tag=ADD_BATCH, gc=False):
    topic: str
    create_time: int
    arrival: float
    codes: bytes
    bodies: list[bytes]  # msgspec makes each a new exact-size bytes (model.py ``body_of``)
    delays: int | list[int]

    def messages(self, topic: str) -> list[Message] | None:
        """The messages it adds (codes as the broker keeps them, ``topic``: the record's
        topic, interned by the caller); None if its fields disagree in length."""
        return batch_messages(self, topic, self.bodies)


class AddBatchText(msgspec.Struct, array_like=True, tag=ADD_BATCH_TEXT, gc=False):
    """Format 3's ADD_BATCH: the payloads as text."""

    topic: str
    create_time: int
    arrival: float
    codes: bytes
    data: list[str]
    delays: int | list[int]

    def messages(self, topic: str) -> list[Message] | None:
        return batch_messages(self, topic, bodies_of(self.data))


def batch_messages(
    rec: AddBatch | AddBatchText, topic: str, bodies: list[bytes]
) -> list[Message] | None:
    """The messages of an ADD_BATCH record whose payloads are ``bodies``; None if its
    fields disagree in length."""
    delays = rec.delays
    n = len(bodies)
    if len(rec.codes) != CODE_BYTES * n or (type(delays) is list and len(delays) != n):
        return None
    codes = split_codes(rec.codes, n)
    if type(delays) is int:
        statuses: Iterable[Status] = repeat(Status.DELAYED if delays > 0 else Status.WAITING)
        each: Iterable[int] = repeat(delays)
    else:
        assert isinstance(delays, list)
        statuses = [Status.DELAYED if d > 0 else Status.WAITING for d in delays]
        each = delays
    arrival = rec.arrival
    if int(arrival) != rec.create_time:  # as model.new_message: CreateTime wins
        arrival = float(rec.create_time)
    # the Message constructor from C, no Python code per message (recovery's hot loop)
    return list(map(Message, codes, repeat(topic), bodies, each, statuses, repeat(arrival)))


class ConsumedBatch(msgspec.Struct, array_like=True, tag=CONSUMED_BATCH, gc=False):
    consumed_time: int
    codes: bytes
    attempts: list[int]

    def code_list(self) -> list[int] | None:
        """Its codes as the broker keeps them; None if they disagree with ``attempts``."""
        n = len(self.attempts)
        if len(self.codes) != CODE_BYTES * n:
            return None
        return split_codes(self.codes, n)


@functools.lru_cache(maxsize=256)
def _cutter(n: int) -> Callable[[bytes], tuple[bytes, ...]]:
    return struct.Struct("16s" * n).unpack


def split_codes(raw: bytes, n: int) -> list[int]:
    """``n`` codes of a batch record (16 bytes each) as ints, in C."""
    return list(map(_from_bytes, _cutter(n)(raw)))


_from_bytes = int.from_bytes


def join_codes(msgs: list[Message]) -> bytes:
    """The codes of ``msgs`` for a batch record, 16 bytes each (~0.9k instructions per
    code against ~1.1k for ``code_text``). AttributeError or OverflowError if one is not
    one of the broker's 128-bit ints (a code kept as its string: see ``code_key``)."""
    return b"".join([m.code.to_bytes(CODE_BYTES) for m in msgs])  # type: ignore[union-attr]


class Unknown(msgspec.Struct, gc=False):
    """A record this build does not know (or cannot read): reported or ignored."""

    op: object


_DecodedUnion = (
    AddRecord
    | Update
    | Remove
    | MetaRecord
    | DedupRecord
    | TraceRecord
    | TraceEvents
    | End
    | AddBatch
    | AddBatchText
    | ConsumedBatch
)
Decoded = _DecodedUnion | Unknown
_decode_records = msgspec.msgpack.Decoder(list[_DecodedUnion]).decode
_convert = msgspec.convert


def typed_records(records: tuple[Any, ...] | list[Any]) -> list[Decoded]:
    """Records decoded by msgpack (format 1, or a frame msgspec refused as a whole) as
    the typed records; one that fits no record type becomes ``Unknown``."""
    out: list[Decoded] = []
    for rec in records:
        try:
            out.append(_convert(rec, _DecodedUnion, strict=False))
        except (msgspec.ValidationError, TypeError):
            out.append(Unknown(rec[0] if isinstance(rec, list | tuple) and rec else rec))
    return out


def as_record(rec: Decoded | Message) -> Record:
    """A record read back (or a recovered message), as the tuple that was written (for
    tests and tools)."""
    if isinstance(rec, Message):
        return message_record(rec)
    if isinstance(rec, Unknown):
        return (rec.op,)
    fields = msgspec.structs.astuple(rec)
    if isinstance(rec, MetaRecord):
        fields = (*fields[:3], [list(event) for event in rec.history])
    elif isinstance(rec, TraceRecord | TraceEvents):
        fields = tuple(tuples(field) for field in fields)
    return (rec.__struct_config__.tag, *fields)


def decode_body(body: bytes) -> list[Decoded]:
    """A frame body (one msgpack array of records) as typed records. One msgspec call for
    the whole frame (the hot path of a recovery); a body it refuses (a record of another
    shape or type) goes record by record. Raises ValueError if it is not msgpack."""
    try:
        return _decode_records(body)  # type: ignore[return-value]
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from exc
    try:
        records = _unpackb(body, use_list=False, raw=False, strict_map_key=False)
    except msgpack.UnpackException as exc:
        raise ValueError(str(exc)) from exc
    if type(records) is not tuple:
        raise ValueError("frame body is not an array")
    return typed_records(records)


class FormatError(ValueError):
    """A file that is not ours, or of a version this code cannot read."""


class HeaderDamaged(FormatError):
    """A file header with a bad magic or checksum: damage at byte offset 0, the frames
    after it may still be intact (recovery resynchronises on them)."""


@dataclass(frozen=True, slots=True)
class FileHeader:
    kind: int
    seq: int
    created: float
    version: int = VERSION


def encode_header(kind: int, seq: int, created: float) -> bytes:
    version = VERSION if kind == KIND_WAL else SNAPSHOT_VERSION
    head = HEADER.pack(MAGIC, version, kind, seq, created)
    return head + struct.pack("<I", crc32(head))


def decode_header(raw: bytes) -> FileHeader:
    if len(raw) < HEADER_SIZE:
        raise FormatError(f"header truncated ({len(raw)} of {HEADER_SIZE} bytes)")
    head = raw[: HEADER.size]
    magic, version, kind, seq, created = HEADER.unpack(head)
    if magic != MAGIC:
        raise HeaderDamaged("not a KapokMQ data file (bad magic)")
    (crc,) = struct.unpack_from("<I", raw, HEADER.size)
    if crc != crc32(head):
        raise HeaderDamaged("header checksum mismatch")
    if version not in READABLE_VERSIONS:
        raise FormatError(
            f"format version {version} is not supported (this build reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    return FileHeader(kind, seq, created, version)


def array_head(count: int) -> bytes:
    """The msgpack array header of ``count`` items (records are packed without one)."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 65536:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


_ARRAY_HEADS = [array_head(n) for n in range(CHUNK_RECORDS + 1)]
_pack_head = FRAME_HEAD.pack
_pack_u32 = struct.Struct("<I").pack
_crc32 = crc32


def frame_head(records: bytes | bytearray | memoryview, count: int) -> bytes:
    """Frame header plus array header for ``count`` packed ``records``; write ``records``
    right after it (on the WAL's hot path: once per frame)."""
    array = _ARRAY_HEADS[count] if count <= CHUNK_RECORDS else array_head(count)
    head = _pack_head(FRAME_MAGIC, len(array) + len(records), count, _crc32(records, _crc32(array)))
    return head + _pack_u32(_crc32(head)) + array


# ---------------------------------------------------------------------------- reading
@dataclass(slots=True)
class Damage:
    """Bytes a reader could not use, from ``offset`` up to ``end``."""

    offset: int
    end: int
    torn: bool  # an incomplete last frame: what a crash in the middle of a write leaves
    at_tail: bool  # no valid frame after it
    frames: int = 0  # damaged frames whose header could still be read
    records: int = 0  # records those headers announced (a lower bound of what was lost)
    codes: list[str] = field(default_factory=list)  # message codes still legible in it
    frames_before: int = 0  # valid frames read before it
    frames_after: int = 0  # valid frames read after it (set at the end of the file)

    @property
    def bytes(self) -> int:
        return self.end - self.offset

    def describe(self, name: str) -> str:
        where = "incomplete last frame" if self.torn else "damaged data"
        what = f"{name}: {where} at byte offset {self.offset} ({self.bytes} bytes"
        if self.frames:
            what += f", {self.frames} frame(s) holding at least {self.records} record(s)"
        what += f"); {self.frames_after} valid frame(s) follow"
        if self.codes:
            more = ", ..." if len(self.codes) >= CODES_REPORTED else ""
            what += f"; message codes legible in it: {', '.join(self.codes)}{more}"
        return what


CODES_REPORTED = 10


@dataclass(slots=True)
class Scan:
    """What reading one file's frames found besides the records."""

    frames: int = 0
    damages: list[Damage] = field(default_factory=list)
    pos: int = 0  # end of the last frame read

    def problems(self) -> list[Damage]:
        """Damage that is not the torn tail a crash leaves."""
        return [d for d in self.damages if not (d.torn and d.at_tail)]

    @property
    def torn_tail(self) -> Damage | None:
        last = self.damages[-1] if self.damages else None
        return last if last is not None and last.torn and last.at_tail else None


Buffer = bytes | mmap.mmap  # a whole file; slices of either are bytes
RELEASE_EVERY = 16 << 20  # a mapped file's pages read so far leave the RSS this often


def read_frames(buf: Buffer, start: int, version: int, scan: Scan) -> Iterator[list[Decoded]]:
    """Yield the records of each intact frame of ``buf`` from ``start``; note damage in
    ``scan``. Format 2 skips a damaged region and goes on with the next valid frame."""
    reader = _frames_v2 if version >= 2 else _frames_v1
    for records in reader(buf, start, scan):
        scan.frames += 1
        yield records
    for damage in scan.damages:
        damage.frames_after = scan.frames - damage.frames_before


def _valid_v2(buf: Buffer, pos: int, size: int) -> tuple[int, int, int] | None:
    """(length, count, body crc) of a frame header at ``pos`` whose own CRC is right."""
    if pos + FRAME_SIZE > size or buf[pos : pos + 4] != FRAME_MAGIC:
        return None
    head = buf[pos : pos + FRAME_HEAD.size]
    (crc,) = struct.unpack_from("<I", buf, pos + FRAME_HEAD.size)
    if crc32(head) != crc:
        return None
    _, length, count, body_crc = FRAME_HEAD.unpack(head)
    if length > MAX_FRAME:
        return None
    return length, count, body_crc


def _decode_v2(buf: Buffer, pos: int, size: int) -> tuple[int, list[Decoded]] | None:
    """(end offset, records) of an intact frame at ``pos``."""
    head = _valid_v2(buf, pos, size)
    if head is None:
        return None
    length, count, body_crc = head
    body_at = pos + FRAME_SIZE
    end = body_at + length
    if end > size:
        return None
    body = buf[body_at:end]
    if crc32(body) != body_crc:
        return None
    try:
        records = decode_body(body)
    except ValueError:
        return None
    if len(records) != count:
        return None
    return end, records


def _frames_v2(buf: Buffer, pos: int, scan: Scan) -> Iterator[list[Decoded]]:
    size = len(buf)
    released = 0
    while pos < size:
        frame = _decode_v2(buf, pos, size)
        if frame is not None:
            pos = scan.pos = frame[0]
            yield frame[1]
            if pos - released > RELEASE_EVERY:
                released = _release(buf, released, pos)
            continue
        damage = Damage(pos, size, torn=False, at_tail=True, frames_before=scan.frames)
        scan.damages.append(damage)
        head = _valid_v2(buf, pos, size)
        if head is not None:
            body_at = pos + FRAME_SIZE + len(array_head(head[1]))
            damage.codes, named = _legible_codes(
                buf, body_at, min(size, pos + FRAME_SIZE + head[0])
            )
            damage.frames, damage.records = 1, max(head[1], named)
            if pos + FRAME_SIZE + head[0] > size:  # announced more than the file holds
                damage.torn = True
                return
        elif size - pos < FRAME_SIZE:
            damage.torn = True
            return
        candidate = buf.find(FRAME_MAGIC, pos + 1)
        while candidate != -1:
            if _decode_v2(buf, candidate, size) is not None:
                break
            other = _valid_v2(buf, candidate, size)
            if other is not None:
                damage.frames += 1
                damage.records += other[1]
            candidate = buf.find(FRAME_MAGIC, candidate + 1)
        if candidate == -1:
            # nothing valid after it: a torn tail if what is left is zeros (blocks
            # allocated but never written, as a power loss can leave them)
            damage.torn = damage.torn or not any(buf[pos:size])
            return
        damage.end = candidate
        damage.at_tail = False
        pos = candidate


# where a record names its message's code: the field after the tag, or (DEDUP) the one
# after that; a batch record's codes are one bin field (16 bytes each) after these many
_CODE_FIELD = {ADD: 0, UPDATE: 0, REMOVE: 0, META: 0, TRACE: 0, DEDUP: 1}
_BATCH_CODES_FIELD = {ADD_BATCH: 3, ADD_BATCH_TEXT: 3, CONSUMED_BATCH: 1}


def _legible_codes(buf: Buffer, start: int, end: int) -> tuple[list[str], int]:
    """(the first ``CODES_REPORTED`` message codes, how many messages they name) of the
    records that still decode from the start of a damaged body, field by field: a batch
    record damaged in its data still shows its codes and its size."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(buf[start:end])
    codes: list[str] = []
    named = 0
    try:
        while True:
            fields = unpacker.read_array_header() - 1
            tag = unpacker.unpack()
            at = _CODE_FIELD.get(tag)
            batch = _BATCH_CODES_FIELD.get(tag)
            if at is not None and fields > at:
                for _ in range(at):
                    unpacker.skip()
                fields -= at + 1
                code = unpacker.unpack()
                named += 1
                if isinstance(code, str):
                    codes.append(code)
            elif batch is not None and fields > batch:
                for _ in range(batch):
                    unpacker.skip()
                fields -= batch + 1
                raw = unpacker.unpack()
                if isinstance(raw, bytes):
                    named += len(raw) // CODE_BYTES
                    codes += [
                        raw[i : i + CODE_BYTES].hex()
                        for i in range(0, min(len(raw), CODE_BYTES * CODES_REPORTED), CODE_BYTES)
                        if i + CODE_BYTES <= len(raw)
                    ]
            for _ in range(fields):
                unpacker.skip()
    except Exception:  # the damage, or the end of what was given
        pass
    return codes[:CODES_REPORTED], named


def _release(buf: Buffer, start: int, upto: int) -> int:
    """Drop the pages of a mapped file read so far from this process (not from the page
    cache), so a recovery's RSS does not grow by the file's size; returns the new mark."""
    if not isinstance(buf, mmap.mmap):
        return upto
    end = upto - upto % mmap.PAGESIZE
    if end > start:
        buf.madvise(mmap.MADV_DONTNEED, start, end - start)
    return end


def _frames_v1(buf: Buffer, pos: int, scan: Scan) -> Iterator[list[Decoded]]:
    size = len(buf)
    released = 0
    while pos < size:
        damage = Damage(pos, size, torn=True, at_tail=True, frames_before=scan.frames)
        if pos + FRAME_V1.size > size:
            scan.damages.append(damage)
            return
        length, count, crc = FRAME_V1.unpack_from(buf, pos)
        end = pos + FRAME_V1.size + length
        if length > MAX_FRAME or end > size:
            damage.frames, damage.records = 1, count if length <= MAX_FRAME else 0
            scan.damages.append(damage)
            return
        payload = buf[pos + FRAME_V1.size : end]
        records: list[Record] = []
        ok = crc32(payload, crc32(buf[pos : pos + 8])) == crc
        if ok:
            unpacker = msgpack.Unpacker(use_list=False, raw=False, strict_map_key=False)
            unpacker.feed(payload)
            try:
                records = list(unpacker)
            except (ValueError, msgpack.UnpackException):
                ok = False
        if not ok or len(records) != count:
            damage.torn = False  # a complete frame that fails its check: no resync in v1
            damage.frames, damage.records = 1, count
            scan.damages.append(damage)
            return
        pos = scan.pos = end
        yield typed_records(records)
        if pos - released > RELEASE_EVERY:
            released = _release(buf, released, pos)


# ---------------------------------------------------------------------------- records
def meta_record(
    code: Code, ttl: int, deadline: float | None, history: list[tuple[int, str]]
) -> Record:
    return (META, code_text(code), ttl, deadline, [list(event) for event in history])


def message_record(msg: Message) -> Record:
    return (
        ADD,
        code_text(msg.code),
        msg.topic,
        msg.data,
        msg.create_time,
        msg.consumed_time,
        msg.delay_time,
        int(msg.status),
        msg.arrival,
        msg.attempts,
    )


def clean_text(value: str) -> str:
    """Lone surrogates cannot be UTF-8 encoded; store U+FFFD as consumers would see it."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def sanitized(record: Record) -> Record:
    """``record`` with every string (also those in a list: a batch's payloads) clean."""
    return tuple(
        clean_text(v)
        if isinstance(v, str)
        else [clean_text(x) if isinstance(x, str) else x for x in v]
        if isinstance(v, list)
        else v
        for v in record
    )

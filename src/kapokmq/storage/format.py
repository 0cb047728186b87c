"""On-disk format shared by WAL segments and snapshots.

Every file starts with a 32-byte header::

    magic b"KAPOKMQ\\0" | version u16 | kind u16 | seq u64 | created f64 | crc32 u32

followed by frames::

    length u32 | count u32 | crc32 u32 | payload (length bytes)

A frame's payload is ``count`` msgpack arrays back to back (one per record); its CRC32
covers the length, the count and the payload. One frame is one write batch (everything
appended during one event-loop iteration), so a torn write tears at most the last frame.
All integers are little-endian.

Records (msgpack arrays):

* ``ADD``    ``[1, code, topic, data, create_time, consumed_time, delay_time, status,
  arrival, attempts]`` — a whole message (WAL: a publish; snapshot: every message)
* ``UPDATE`` ``[2, code, status, consumed_time, delay_time, attempts]`` — an ack, a delay
  coming due, a redelivery, a requeue, a message going dead
* ``REMOVE`` ``[3, code]``
* ``END``    ``[9, message_count]`` — the last frame of a complete snapshot
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from kapokmq.model import Message, Status

MAGIC = b"KAPOKMQ\x00"
VERSION = 1
KIND_WAL = 1
KIND_SNAPSHOT = 2

HEADER = struct.Struct("<8sHHQd")
HEADER_SIZE = HEADER.size + 4
FRAME = struct.Struct("<III")
FRAME_SIZE = FRAME.size
MAX_FRAME = 1 << 30  # a length beyond this is garbage, not a frame

ADD = 1
UPDATE = 2
REMOVE = 3
END = 9

STATUS_OF = {int(s): s for s in Status}

Record = tuple[Any, ...]


class FormatError(ValueError):
    """A file that is not ours, or of a version this code cannot read."""


@dataclass(frozen=True, slots=True)
class FileHeader:
    kind: int
    seq: int
    created: float
    version: int = VERSION


def encode_header(kind: int, seq: int, created: float) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, kind, seq, created)
    return head + struct.pack("<I", zlib.crc32(head))


def decode_header(raw: bytes) -> FileHeader:
    if len(raw) < HEADER_SIZE:
        raise FormatError(f"header truncated ({len(raw)} of {HEADER_SIZE} bytes)")
    head = raw[: HEADER.size]
    magic, version, kind, seq, created = HEADER.unpack(head)
    if magic != MAGIC:
        raise FormatError("not a KapokMQ data file (bad magic)")
    (crc,) = struct.unpack_from("<I", raw, HEADER.size)
    if crc != zlib.crc32(head):
        raise FormatError("header checksum mismatch")
    if version != VERSION:
        raise FormatError(f"format version {version} is not supported (this build reads {VERSION})")
    return FileHeader(kind, seq, created, version)


def encode_frame(payload: bytes | bytearray, count: int) -> bytes:
    """Frame header for ``payload`` (``count`` records); the caller writes both."""
    head = struct.pack("<II", len(payload), count)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc)


def frame_ok(head: bytes, payload: bytes) -> bool:
    (expected,) = struct.unpack_from("<I", head, 8)
    return zlib.crc32(payload, zlib.crc32(head[:8])) == int(expected)


@dataclass(slots=True)
class Tail:
    """What a frame reader found after the last good frame."""

    good_end: int  # offset just past the last intact frame
    size: int  # file size
    reason: str = ""  # empty when the file ended cleanly at a frame boundary
    dropped_frames: int = 0
    dropped_records: int = 0  # lower bound: every frame holds at least one record

    @property
    def clean(self) -> bool:
        return not self.reason


def read_frames(f: BinaryIO, size: int, tail: Tail) -> Iterator[tuple[int, bytes]]:
    """Yield (count, payload) for each intact frame from the current offset.

    Stops at the first short, oversized or checksum-failing frame and records in ``tail``
    where the valid prefix ends and roughly how much was lost after it.
    """
    pos = f.tell()
    while True:
        if pos == size:
            tail.good_end = pos
            return
        head = f.read(FRAME_SIZE)
        if len(head) < FRAME_SIZE:
            tail.good_end = pos
            tail.reason = f"torn frame header at offset {pos}"
            tail.dropped_frames = 1
            tail.dropped_records = 1
            return
        length, count, _ = FRAME.unpack(head)
        if length > MAX_FRAME or pos + FRAME_SIZE + length > size:
            tail.good_end = pos
            tail.reason = f"torn frame at offset {pos} ({length} bytes announced)"
            tail.dropped_frames = 1
            tail.dropped_records = max(1, count) if length <= MAX_FRAME else 1
            return
        payload = f.read(length)
        if not frame_ok(head, payload):
            tail.good_end = pos
            tail.reason = f"checksum mismatch in frame at offset {pos}"
            _count_rest(f, size, tail, pos + FRAME_SIZE + length, count)
            return
        pos += FRAME_SIZE + length
        yield count, payload


def _count_rest(f: BinaryIO, size: int, tail: Tail, pos: int, bad_count: int) -> None:
    """After a bad frame, count what follows (for the report); best effort."""
    frames, records = 1, max(1, bad_count)
    f.seek(pos)
    while pos + FRAME_SIZE <= size:
        head = f.read(FRAME_SIZE)
        length, count, _ = FRAME.unpack(head)
        if length > MAX_FRAME or pos + FRAME_SIZE + length > size:
            frames += 1
            records += 1
            break
        payload = f.read(length)
        frames += 1
        records += max(1, count) if frame_ok(head, payload) else 1
        pos += FRAME_SIZE + length
    tail.dropped_frames = frames
    tail.dropped_records = records


def new_unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(use_list=False, raw=False, strict_map_key=False)


def message_record(msg: Message) -> Record:
    return (
        ADD,
        msg.code,
        msg.topic,
        msg.data,
        msg.create_time,
        msg.consumed_time,
        msg.delay_time,
        int(msg.status),
        msg.arrival,
        msg.attempts,
    )


def update_record(msg: Message) -> Record:
    return (UPDATE, msg.code, int(msg.status), msg.consumed_time, msg.delay_time, msg.attempts)


def clean_text(value: str) -> str:
    """Lone surrogates cannot be UTF-8 encoded; store U+FFFD as consumers would see it."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def sanitized(record: Record) -> Record:
    return tuple(clean_text(v) if isinstance(v, str) else v for v in record)


def message_from_record(rec: Record, topics: dict[str, str]) -> Message:
    """Build a Message from an ADD record; ``topics`` interns topic names."""
    (_, code, topic, data, create_time, consumed_time, delay_time, status, arrival, attempts) = rec[
        :10
    ]
    topic = topics.setdefault(topic, topic)
    msg = Message(
        code,
        data,
        topic,
        create_time,
        delay_time,
        STATUS_OF[status],
        float(arrival),
        consumed_time,
    )
    msg.attempts = attempts
    return msg

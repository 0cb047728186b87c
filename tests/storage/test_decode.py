"""Frames decoded in bulk (storage/format.py ``decode_body``): a whole frame goes to typed
records with one msgspec call; a frame with a record of another shape falls back to
record-by-record decoding, so the records around it are still applied, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from kapokmq.model import Status
from kapokmq.storage.format import (
    ADD,
    DEDUP,
    END,
    KIND_SNAPSHOT,
    KIND_WAL,
    META,
    REMOVE,
    UPDATE,
    AddRecord,
    DedupRecord,
    MetaRecord,
    Unknown,
    Update,
    as_record,
    decode_body,
    encode_header,
    frame_head,
)
from kapokmq.storage.layout import DataDir
from kapokmq.storage.recovery import CorruptData, recover

pack = msgpack.Packer().pack


def add(i: int, topic: str = "t", arrival: float = 1.7e9) -> tuple[Any, ...]:
    return (ADD, f"{i:032x}", topic, f"data-{i}", 1_700_000_000, 0, 0, -1, arrival, 0)


def write(path: Path, kind: int, frames: list[list[tuple[Any, ...]]]) -> None:
    with path.open("wb") as f:
        f.write(encode_header(kind, 1, 0.0))
        for records in frames:
            payload = b"".join(pack(r) for r in records)
            f.write(frame_head(payload, len(records)) + payload)


def body(records: list[tuple[Any, ...]]) -> bytes:
    return frame_head(b"", len(records))[20:] + b"".join(pack(r) for r in records)


def test_a_frame_decodes_into_messages_and_records() -> None:
    records = [
        add(1),
        (UPDATE, f"{1:032x}", 1, 1_700_000_001, 0, 1),
        (META, f"{1:032x}", 60, None, [[1_700_000_000, "expired"]]),
        (DEDUP, "t\x00id", f"{1:032x}", 1.7e9),
        (REMOVE, f"{1:032x}"),
        (END, 1),
    ]
    decoded = decode_body(body(records))
    assert isinstance(decoded[0], AddRecord) and decoded[0].status is Status.WAITING
    assert isinstance(decoded[1], Update) and decoded[1].status is Status.CONSUMED
    assert isinstance(decoded[2], MetaRecord) and decoded[2].history == [(1_700_000_000, "expired")]
    assert isinstance(decoded[3], DedupRecord)
    assert [as_record(r) for r in decoded] == [tuple(r) for r in records]


def test_an_unknown_record_falls_back_record_by_record() -> None:
    records = [add(1), (8, "from a newer build"), add(2, arrival=1_700_000_000), (UPDATE, "x", 9)]
    decoded = decode_body(body(records))
    assert [type(r) for r in decoded] == [AddRecord, Unknown, AddRecord, Unknown]
    assert isinstance(decoded[2], AddRecord) and decoded[2].arrival == 1.7e9


def test_wal_replay_keeps_the_records_around_an_unknown_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = DataDir(tmp_path, "MQDATA")
    write(
        d.wal_path(1),
        KIND_WAL,
        [[add(1, "a"), (8, "?"), add(2, "b"), (UPDATE, f"{1:032x}", 1, 5, 0, 1), add(3, "a")]],
    )
    result = recover(d)
    assert list(result.messages) == [1, 2, 3]  # codes as the broker keeps them (code_key)
    first, _, third = result.messages.values()
    assert first.status is Status.CONSUMED and first.consumed_time == 5
    assert first.topic is third.topic  # topic names are interned
    assert first.create_time == third.create_time == 1_700_000_000
    assert "1 record(s) of a type or shape this build does not read" in caplog.text
    assert "record types: 8" in caplog.text


def test_consecutive_adds_share_their_topic_and_arrival(tmp_path: Path) -> None:
    """A run of ADD records is built at once (recovery.py ``Tables._add_run``): equal
    arrivals share one object, topics are interned, payloads become bodies."""
    d = DataDir(tmp_path, "MQDATA")
    odd = (ADD, f"{4:032x}", "t", 'say "hi" <b>', 1_600_000_000, 7, 5, 1, 1.7e9, 2)
    write(d.wal_path(1), KIND_WAL, [[add(1), add(2), add(3, arrival=1.8e9), odd]])
    msgs = list(recover(d).messages.values())
    assert msgs[0].arrival is msgs[1].arrival and msgs[0].topic is msgs[3].topic
    assert [m.data for m in msgs] == ["data-1", "data-2", "data-3", 'say "hi" <b>']
    assert msgs[3].body == b'say \\"hi\\" \\u003cb\\u003e'
    # a CreateTime that is not its arrival's second wins (model.new_message)
    assert [m.create_time for m in msgs] == [1_700_000_000] * 3 + [1_600_000_000]
    assert msgs[2].arrival == 1.7e9 and msgs[3].arrival == 1.6e9
    assert [m.consumed_time for m in msgs] == [0, 0, 0, 7]
    assert (msgs[3].delay_time, msgs[3].status, msgs[3].attempts) == (5, Status.CONSUMED, 2)


def test_a_snapshot_with_an_unknown_record_is_damaged(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    write(d.snapshot_path(1), KIND_SNAPSHOT, [[add(1), (8, "?")], [(END, 1)]])
    with pytest.raises(CorruptData, match="unexpected record type 8"):
        recover(d)

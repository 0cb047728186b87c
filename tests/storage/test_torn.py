"""Torn and corrupt files: the valid prefix survives, real corruption stops start-up."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kapokmq.model import Message, Status
from kapokmq.storage.format import (
    HEADER_SIZE,
    KIND_SNAPSHOT,
    KIND_WAL,
    encode_frame,
    encode_header,
    message_record,
)
from kapokmq.storage.layout import DataDir
from kapokmq.storage.recovery import CorruptData, recover

pack = msgpack.Packer().pack


def msg(i: int) -> Message:
    return Message(f"{i:032x}", f"data-{i}", "t", 1_700_000_000, 0, Status.WAITING, 1.7e9)


def write_file(path: Path, kind: int, seq: int, frames: list[list[int]]) -> list[int]:
    """Write frames of ADD records; returns the end offset of each frame."""
    ends = []
    with path.open("wb") as f:
        f.write(encode_header(kind, seq, 0.0))
        for ids in frames:
            payload = b"".join(pack(message_record(msg(i))) for i in ids)
            f.write(encode_frame(payload, len(ids)) + payload)
            ends.append(f.tell())
    return ends


def write_snapshot(path: Path, seq: int, frames: list[list[int]]) -> list[int]:
    total = sum(len(f) for f in frames)
    ends = write_file(path, KIND_SNAPSHOT, seq, [*frames])
    with path.open("ab") as f:
        payload = pack((9, total))
        f.write(encode_frame(payload, 1) + payload)
    return ends


frame_lists = st.lists(st.integers(1, 6), min_size=1, max_size=15).map(
    lambda sizes: [list(range(sum(sizes[:k]), sum(sizes[: k + 1]))) for k in range(len(sizes))]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frame_lists, data=st.data())
def test_truncated_wal_keeps_valid_prefix(frames: list[list[int]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = DataDir(Path(tmp), "MQDATA")
        path = d.wal_path(1)
        ends = write_file(path, KIND_WAL, 1, frames)
        cut = data.draw(st.integers(0, ends[-1]), label="cut")
        with path.open("r+b") as f:
            f.truncate(cut)
        result = recover(d)
        kept = [i for ids, end in zip(frames, ends, strict=True) if end <= cut for i in ids]
        assert list(result.messages) == [f"{i:032x}" for i in kept]
        if cut >= HEADER_SIZE:
            good = max([HEADER_SIZE, *(e for e in ends if e <= cut)])
            assert path.stat().st_size == good  # the torn tail was truncated
            again = recover(d)
            assert not again.problems and list(again.messages) == list(result.messages)
        else:
            assert not path.exists()  # a segment whose header never made it is dropped


@settings(max_examples=100, deadline=None)
@given(frames=frame_lists, data=st.data())
def test_corrupt_byte_in_last_wal_keeps_prefix(
    frames: list[list[int]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = DataDir(Path(tmp), "MQDATA")
        path = d.wal_path(1)
        ends = write_file(path, KIND_WAL, 1, frames)
        where = data.draw(st.integers(HEADER_SIZE, ends[-1] - 1), label="where")
        raw = bytearray(path.read_bytes())
        raw[where] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        path.write_bytes(bytes(raw))
        result = recover(d)
        kept = [i for ids, end in zip(frames, ends, strict=True) if end <= where for i in ids]
        assert list(result.messages) == [f"{i:032x}" for i in kept]
        assert result.problems and result.dropped_records >= 1


def test_corrupt_middle_segment_stops_start_up(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    ends = write_file(d.wal_path(1), KIND_WAL, 1, [[1, 2], [3, 4]])
    write_file(d.wal_path(2), KIND_WAL, 2, [[5]])
    with d.wal_path(1).open("r+b") as f:
        f.truncate(ends[0] + 5)
    with pytest.raises(CorruptData, match="recover-skip-corrupt"):
        recover(d)
    result = recover(d, skip_corrupt=True)
    assert list(result.messages) == [f"{i:032x}" for i in (1, 2, 5)]


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-end", "bad-magic"])
def test_corrupt_snapshot_stops_start_up(tmp_path: Path, damage: str) -> None:
    d = DataDir(tmp_path, "MQDATA")
    snap = d.snapshot_path(3)
    ends = write_snapshot(snap, 3, [[1, 2], [3, 4], [5]])
    write_file(d.wal_path(3), KIND_WAL, 3, [[6]])
    raw = bytearray(snap.read_bytes())
    if damage == "flip":
        raw[ends[1] + 14] ^= 0xFF  # inside the third frame
        keep = [1, 2, 3, 4, 6]
    elif damage == "truncate":
        raw = raw[: ends[1] + 3]
        keep = [1, 2, 3, 4, 6]
    elif damage == "no-end":
        raw = raw[: ends[2]]
        keep = [1, 2, 3, 4, 5, 6]
    else:
        raw[0:4] = b"JUNK"
        keep = [6]
    snap.write_bytes(bytes(raw))
    with pytest.raises(CorruptData) as info:
        recover(d)
    assert "snapshot MQDATA.000000000003.snap" in str(info.value)
    assert "--recover-skip-corrupt" in str(info.value)
    result = recover(d, skip_corrupt=True)
    assert list(result.messages) == [f"{i:032x}" for i in keep]


def test_unfinished_snapshot_is_ignored(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    write_snapshot(d.snapshot_path(1), 1, [[1]])
    write_file(d.wal_path(1), KIND_WAL, 1, [[2]])
    d.temp_path(2).write_bytes(b"half a snapshot")
    result = recover(d)
    assert list(result.messages) == [f"{i:032x}" for i in (1, 2)]
    assert not d.temp_path(2).exists()


def test_old_files_before_snapshot_are_not_replayed(tmp_path: Path) -> None:
    """A crash after a snapshot's rename but before old segments were deleted."""
    d = DataDir(tmp_path, "MQDATA")
    write_file(d.wal_path(1), KIND_WAL, 1, [[1], [2]])
    write_snapshot(d.snapshot_path(2), 2, [[2]])
    write_file(d.wal_path(2), KIND_WAL, 2, [[3]])
    result = recover(d)
    assert list(result.messages) == [f"{i:032x}" for i in (2, 3)]

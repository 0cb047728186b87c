"""Torn and damaged files: a torn tail is truncated, damage stops start-up with the file
and offset, and ``skip_corrupt`` skips only the damaged frames (resynchronising on the
next valid one) after keeping a copy of the file."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kapokmq.model import Code, Message, Status, code_text, new_message
from kapokmq.storage.format import (
    ADD_BATCH,
    DEDUP,
    END,
    HEADER,
    HEADER_SIZE,
    KIND_SNAPSHOT,
    KIND_WAL,
    MAGIC,
    encode_header,
    frame_head,
    message_record,
)
from kapokmq.storage.layout import DataDir
from kapokmq.storage.recovery import CorruptData, recover

pack = msgpack.Packer().pack


def msg(i: int) -> Message:
    return new_message(code(i), "t", f"data-{i}", 1_700_000_000, 0, 0, Status.WAITING, 1.7e9)


def code(i: int) -> Code:
    """Message i's code as the broker keeps it (``code_key(f"{i:032x}")``)."""
    return i


def write_file(path: Path, kind: int, seq: int, frames: list[list[int]]) -> list[int]:
    """Write frames of ADD records; returns the end offset of each frame."""
    ends = []
    with path.open("wb") as f:
        f.write(encode_header(kind, seq, 0.0))
        for ids in frames:
            payload = b"".join(pack(message_record(msg(i))) for i in ids)
            f.write(frame_head(payload, len(ids)) + payload)
            ends.append(f.tell())
    return ends


def write_snapshot(path: Path, seq: int, frames: list[list[int]]) -> list[int]:
    total = sum(len(f) for f in frames)
    ends = write_file(path, KIND_SNAPSHOT, seq, frames)
    with path.open("ab") as f:
        payload = pack((END, total))
        f.write(frame_head(payload, 1) + payload)
    return ends


def flip(path: Path, where: int, mask: int = 0xFF) -> None:
    raw = bytearray(path.read_bytes())
    raw[where] ^= mask
    path.write_bytes(bytes(raw))


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
        result = recover(d)  # a torn tail never needs the flag
        kept = [i for ids, end in zip(frames, ends, strict=True) if end <= cut for i in ids]
        assert list(result.messages) == [code(i) for i in kept]
        assert not result.kept_copies
        if cut >= HEADER_SIZE:
            good = max([HEADER_SIZE, *(e for e in ends if e <= cut)])
            assert path.stat().st_size == good  # the torn tail was truncated
            again = recover(d)
            assert not again.problems and list(again.messages) == list(result.messages)
        else:
            assert not path.exists()  # a segment whose header never made it is dropped


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frame_lists, data=st.data())
def test_random_damage_never_loses_an_intact_frame(
    frames: list[list[int]], data: st.DataObject
) -> None:
    """Flips anywhere (the file header too), maybe a truncation: recovery never crashes,
    keeps every record of every frame whose bytes are intact, and without the flag either
    refuses (naming the offset) or finds nothing worse than a torn tail."""
    with tempfile.TemporaryDirectory() as tmp:
        d = DataDir(Path(tmp), "MQDATA")
        path = d.wal_path(1)
        ends = write_file(path, KIND_WAL, 1, frames)
        starts = [HEADER_SIZE, *ends[:-1]]
        raw = bytearray(path.read_bytes())
        flips = data.draw(
            st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=3), label="at"
        )
        for where in flips:
            raw[where] ^= data.draw(st.integers(1, 255), label="mask")
        cut = data.draw(st.one_of(st.none(), st.integers(HEADER_SIZE, len(raw))), label="cut")
        if cut is not None:
            del raw[cut:]
        path.write_bytes(bytes(raw))
        end_of_file = len(raw)
        intact = [
            ids
            for ids, start, end in zip(frames, starts, ends, strict=True)
            if end <= end_of_file and not any(start <= w < end for w in flips)
        ]
        try:
            strict = recover(d)
        except CorruptData as exc:
            assert "byte offset" in str(exc) and "recover-skip-corrupt" in str(exc)
        else:  # only a torn tail: everything before it is intact
            assert set(strict.messages) >= {code(i) for ids in intact for i in ids}
            return
        result = recover(d, skip_corrupt=True)
        assert set(result.messages) >= {code(i) for ids in intact for i in ids}
        assert set(result.messages) <= {code(i) for ids in frames for i in ids}
        assert result.kept_copies and result.kept_copies[0].exists()


def test_damage_in_the_middle_stops_start_up_with_offset_and_frames_after(
    tmp_path: Path,
) -> None:
    d = DataDir(tmp_path, "MQDATA")
    path = d.wal_path(1)
    ends = write_file(path, KIND_WAL, 1, [[i] for i in range(10)])
    where = ends[4] - 1  # the fifth frame's last byte (its record's attempts)
    flip(path, where, 0x01)
    with pytest.raises(CorruptData) as info:
        recover(d)
    text = str(info.value)
    assert "MQDATA.000000000001.wal" in text
    assert f"byte offset {ends[3]}" in text
    assert "5 valid frame(s) follow" in text
    assert "--recover-skip-corrupt" in text
    assert path.read_bytes()[where] == 1 and len(list(tmp_path.iterdir())) == 1  # untouched

    result = recover(d, skip_corrupt=True)
    assert list(result.messages) == [code(i) for i in range(10) if i != 4]
    (copy,) = result.kept_copies
    assert copy.name.startswith("MQDATA.000000000001.wal.corrupt-")
    assert copy.read_bytes() == path.read_bytes()
    assert result.dropped_records == 1
    assert any(code_text(code(4)) in p for p in result.problems)  # its code is still legible


def test_damaged_frame_header_is_skipped_by_resynchronising(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    path = d.wal_path(1)
    ends = write_file(path, KIND_WAL, 1, [[i, i + 100] for i in range(6)])
    flip(path, ends[1] + 5)  # the length field of the third frame
    result = recover(d, skip_corrupt=True)
    assert set(result.messages) == {code(i) for i in range(6) for i in (i, i + 100)} - {
        code(2),
        code(102),
    }


@pytest.mark.parametrize("where", [0, 8, HEADER_SIZE - 1])  # magic, version, checksum
@pytest.mark.parametrize("kind", ["wal", "snap"])
def test_a_damaged_file_header_costs_only_the_header(tmp_path: Path, kind: str, where: int) -> None:
    """Refused at byte offset 0 without the flag; with it every frame after it is kept."""
    d = DataDir(tmp_path, "MQDATA")
    frames = [[i, i + 100] for i in range(4)]
    if kind == "wal":
        path = d.wal_path(1)
        write_file(path, KIND_WAL, 1, frames)
    else:
        path = d.snapshot_path(1)
        write_snapshot(path, 1, frames)
    flip(path, where)
    with pytest.raises(CorruptData, match=r"byte offset 0 \(32 bytes\); \d+ valid frame"):
        recover(d)
    result = recover(d, skip_corrupt=True)
    assert set(result.messages) == {code(i) for ids in frames for i in ids}
    assert len(result.kept_copies) == 1


def test_a_segment_of_zeros_is_one_whose_header_never_made_it(tmp_path: Path) -> None:
    """A power loss right after a segment was created can leave its blocks as zeros."""
    d = DataDir(tmp_path, "MQDATA")
    write_file(d.wal_path(1), KIND_WAL, 1, [[1], [2]])
    d.wal_path(2).write_bytes(bytes(8192))
    result = recover(d)
    assert list(result.messages) == [code(1), code(2)]
    assert not d.wal_path(2).exists()


def test_zeros_at_the_end_are_a_torn_tail(tmp_path: Path) -> None:
    """A power loss can leave allocated but never written blocks."""
    d = DataDir(tmp_path, "MQDATA")
    path = d.wal_path(1)
    ends = write_file(path, KIND_WAL, 1, [[1], [2]])
    with path.open("ab") as f:
        f.write(bytes(4096))
    result = recover(d)
    assert list(result.messages) == [code(1), code(2)]
    assert path.stat().st_size == ends[-1]


def test_complete_last_frame_with_a_bad_checksum_is_damage(tmp_path: Path) -> None:
    """Not what a crash leaves (the frame is whole): it needs the operator's say-so."""
    d = DataDir(tmp_path, "MQDATA")
    path = d.wal_path(1)
    ends = write_file(path, KIND_WAL, 1, [[1], [2]])
    flip(path, ends[-1] - 3)
    with pytest.raises(CorruptData, match=f"byte offset {ends[0]}"):
        recover(d)
    assert list(recover(d, skip_corrupt=True).messages) == [code(1)]


def test_damaged_older_segment_skips_only_its_damaged_frames(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    ends = write_file(d.wal_path(1), KIND_WAL, 1, [[1, 2], [3, 4], [5]])
    write_file(d.wal_path(2), KIND_WAL, 2, [[6]])
    flip(d.wal_path(1), ends[0] + 30)
    with pytest.raises(CorruptData, match="recover-skip-corrupt"):
        recover(d)
    result = recover(d, skip_corrupt=True)
    assert list(result.messages) == [code(i) for i in (1, 2, 5, 6)]


def test_torn_tail_of_an_older_segment_is_truncated(tmp_path: Path) -> None:
    """What a full disk leaves when the broker starts a new segment afterwards."""
    d = DataDir(tmp_path, "MQDATA")
    ends = write_file(d.wal_path(1), KIND_WAL, 1, [[1, 2], [3, 4]])
    write_file(d.wal_path(2), KIND_WAL, 2, [[5]])
    with d.wal_path(1).open("r+b") as f:
        f.truncate(ends[0] + 5)
    result = recover(d)
    assert list(result.messages) == [code(i) for i in (1, 2, 5)]
    assert d.wal_path(1).stat().st_size == ends[0]


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-end", "bad-magic"])
def test_damaged_snapshot_stops_start_up(tmp_path: Path, damage: str) -> None:
    d = DataDir(tmp_path, "MQDATA")
    snap = d.snapshot_path(3)
    ends = write_snapshot(snap, 3, [[1, 2], [3, 4], [5]])
    write_file(d.wal_path(3), KIND_WAL, 3, [[6]])
    raw = bytearray(snap.read_bytes())
    if damage == "flip":
        raw[ends[0] + 30] ^= 0xFF  # inside the second chunk
        keep = [1, 2, 5, 6]
    elif damage == "truncate":
        raw = raw[: ends[1] + 3]
        keep = [1, 2, 3, 4, 6]
    elif damage == "no-end":
        raw = raw[: ends[2]]
        keep = [1, 2, 3, 4, 5, 6]
    else:
        raw[0:4] = b"JUNK"  # only the header is lost: its frames resynchronise
        keep = [1, 2, 3, 4, 5, 6]
    original = bytes(raw)
    snap.write_bytes(original)
    with pytest.raises(CorruptData) as info:
        recover(d)
    assert "snapshot MQDATA.000000000003.snap" in str(info.value)
    assert "--recover-skip-corrupt" in str(info.value)
    result = recover(d, skip_corrupt=True)
    assert list(result.messages) == [code(i) for i in keep]
    (copy,) = result.kept_copies
    assert copy.read_bytes() == original


def test_unfinished_snapshot_is_ignored(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    write_snapshot(d.snapshot_path(1), 1, [[1]])
    write_file(d.wal_path(1), KIND_WAL, 1, [[2]])
    d.temp_path(2).write_bytes(b"half a snapshot")
    result = recover(d)
    assert list(result.messages) == [code(i) for i in (1, 2)]
    assert not d.temp_path(2).exists()


def test_old_files_before_snapshot_are_not_replayed(tmp_path: Path) -> None:
    """A crash after a snapshot's rename but before old segments were deleted."""
    d = DataDir(tmp_path, "MQDATA")
    write_file(d.wal_path(1), KIND_WAL, 1, [[1], [2]])
    write_snapshot(d.snapshot_path(2), 2, [[2]])
    write_file(d.wal_path(2), KIND_WAL, 2, [[3]])
    result = recover(d)
    assert list(result.messages) == [code(i) for i in (2, 3)]


@pytest.mark.parametrize("damage", ["empty", "flip", "truncate"])
@pytest.mark.parametrize("wal", [True, False])
def test_a_damaged_newest_snapshot_falls_back_on_the_older_files_still_there(
    tmp_path: Path, damage: str, wal: bool
) -> None:
    """A crash between snapshot 3's rename and the deletion of the files it obsoletes,
    then snapshot 3 found damaged: with skip_corrupt, what it lost comes from snapshot 2
    (and WAL segment 2), which recovery used to ignore and the next snapshot deleted."""
    d = DataDir(tmp_path, "MQDATA")
    write_snapshot(d.snapshot_path(2), 2, [[1, 2], [3]])
    if wal:
        write_file(d.wal_path(2), KIND_WAL, 2, [[4]])
    snap = d.snapshot_path(3)
    ends = write_snapshot(snap, 3, [[1, 2], [3, 4]])
    write_file(d.wal_path(3), KIND_WAL, 3, [[5]])
    if damage == "empty":
        snap.write_bytes(b"")  # renamed, but its blocks never reached the disk
    elif damage == "flip":
        flip(snap, ends[0] + 30)  # inside the chunk holding 3 and 4
    else:
        snap.write_bytes(snap.read_bytes()[: ends[0] + 3])
    with pytest.raises(CorruptData, match=r"snapshot MQDATA\.000000000003\.snap"):
        recover(d)
    result = recover(d, skip_corrupt=True)
    # 4 lives only in the damaged chunk and, with a WAL, in segment 2
    assert sorted(result.messages) == [code(i) for i in (1, 2, 3, 4, 5) if wal or i != 4]
    assert [c.name.split(".corrupt-")[0] for c in result.kept_copies] == [snap.name]
    assert result.snapshot_seq == 3 and result.max_seq == 3


# ---------------------------------------------------------------------------- format 1
def write_v1(path: Path, kind: int, seq: int, frames: list[list[Any]]) -> list[int]:
    """A file as the previous build wrote it: version 1, frames without a magic."""
    head = HEADER.pack(MAGIC, 1, kind, seq, 0.0)
    ends = []
    with path.open("wb") as f:
        f.write(head + struct.pack("<I", zlib.crc32(head)))
        for records in frames:
            payload = b"".join(pack(r) for r in records)
            frame = struct.pack("<II", len(payload), len(records))
            f.write(frame + struct.pack("<I", zlib.crc32(payload, zlib.crc32(frame))) + payload)
            ends.append(f.tell())
    return ends


def test_files_of_the_previous_format_are_read(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    write_v1(
        d.snapshot_path(1),
        KIND_SNAPSHOT,
        1,
        [[message_record(msg(1)), message_record(msg(2))], [(END, 2)]],
    )
    ends = write_v1(
        d.wal_path(1),
        KIND_WAL,
        1,
        [[message_record(msg(3))], [(2, code_text(code(1)), 1, 1_700_000_001, 0, 1)]],
    )
    write_file(d.wal_path(2), KIND_WAL, 2, [[4]])  # written by this build after the upgrade
    result = recover(d)
    assert list(result.messages) == [code(i) for i in (1, 2, 3, 4)]
    assert result.messages[code(1)].status is Status.CONSUMED
    with d.wal_path(1).open("ab") as f:  # a torn tail in a format-1 segment
        f.write(b"\x10\x00")
    assert len(recover(d).messages) == 4
    assert d.wal_path(1).stat().st_size == ends[-1]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frame_lists, data=st.data())
def test_random_damage_in_a_snapshot_keeps_every_intact_chunk(
    frames: list[list[int]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = DataDir(Path(tmp), "MQDATA")
        path = d.snapshot_path(1)
        ends = write_snapshot(path, 1, frames)
        starts = [HEADER_SIZE, *ends[:-1]]
        raw = bytearray(path.read_bytes())
        flips = data.draw(
            st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=3, unique=True),
            label="at",
        )
        for where in flips:
            raw[where] ^= data.draw(st.integers(1, 255), label="mask")
        path.write_bytes(bytes(raw))
        with pytest.raises(CorruptData, match=r"snapshot MQDATA\.000000000001\.snap"):
            recover(d)
        result = recover(d, skip_corrupt=True)
        intact = [
            i
            for ids, start, end in zip(frames, starts, ends, strict=True)
            if not any(start <= w < end for w in flips)
            for i in ids
        ]
        assert set(result.messages) >= {code(i) for i in intact}
        assert set(result.messages) <= {code(i) for ids in frames for i in ids}
        assert len(result.kept_copies) == 1


def test_a_damaged_batch_record_is_reported_with_its_codes_and_size(tmp_path: Path) -> None:
    """A WAL frame holding one ADD_BATCH record of 50 messages, damaged in its data: the
    report names how many messages it held and their codes, not the topic (format 4)."""
    d = DataDir(tmp_path, "MQDATA")
    path = d.wal_path(1)
    ids = list(range(1, 51))
    batch = pack(
        (
            ADD_BATCH,
            "orders",
            1_700_000_000,
            1.7e9,
            b"".join(i.to_bytes(16, "big") for i in ids),
            [f"data-{i}".encode() for i in ids],
            0,
        )
    )
    after = pack(message_record(msg(99)))
    with path.open("wb") as f:
        f.write(encode_header(KIND_WAL, 1, 0.0))
        f.write(frame_head(batch, 1) + batch)
        end = f.tell()
        f.write(frame_head(after, 1) + after)
    flip(path, end - 3, 0x01)  # inside the last body
    with pytest.raises(CorruptData) as info:
        recover(d)
    text = str(info.value)
    assert "holding at least 50 record(s)" in text, text
    assert code_text(code(1)) in text and code_text(code(10)) in text
    assert "orders" not in text
    result = recover(d, skip_corrupt=True)
    assert list(result.messages) == [code(99)]
    assert result.dropped_records == 50


def test_a_damaged_dedup_record_names_its_message_not_its_dedup_id(tmp_path: Path) -> None:
    """A DEDUP record is ``[5, key, code, until]``: the code legible in the damage report
    is the message's (field 2), not the producer's dedup id."""
    d = DataDir(tmp_path, "MQDATA")
    path = d.wal_path(1)
    record = pack((DEDUP, "order-42", code_text(code(7)), 1.7e9 + 60))
    with path.open("wb") as f:
        f.write(encode_header(KIND_WAL, 1, 0.0))
        f.write(frame_head(record, 1) + record)
        end = f.tell()
        after = pack(message_record(msg(8)))
        f.write(frame_head(after, 1) + after)
    flip(path, end - 1, 0x01)  # the until field
    with pytest.raises(CorruptData) as info:
        recover(d)
    text = str(info.value)
    assert code_text(code(7)) in text and "order-42" not in text, text

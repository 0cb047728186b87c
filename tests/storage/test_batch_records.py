"""Format 4's batch records: one publish call's messages as ADD_BATCH records (payloads
as the bytes Message.body holds) and one consumer's acks as CONSUMED_BATCH records, each
a frame of its own of at most WAL_FRAME_RECORDS messages, replayed to exactly the state
in memory; string codes fall back to per-message records; format-2 and format-3 files
still read (docs/durability.md "Files")."""

from __future__ import annotations

import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack
import pytest

from kapokmq.model import ClientInfo, Message, Status, body_of, code_text
from kapokmq.server.session import ack_codes
from kapokmq.storage.format import (
    ADD,
    ADD_BATCH,
    ADD_BATCH_TEXT,
    CONSUMED_BATCH,
    FRAME_MAGIC,
    HEADER,
    HEADER_SIZE,
    KIND_WAL,
    MAGIC,
    UPDATE,
    VERSION,
    WAL_FRAME_RECORDS,
    AddBatch,
    Scan,
    as_record,
    checksum,
    decode_header,
    frame_head,
    message_record,
    read_frames,
    split_codes,
)
from kapokmq.storage.layout import DataDir
from kapokmq.storage.manager import WalListener
from kapokmq.storage.recovery import CorruptData, recover
from kapokmq.storage.wal import WalWriter
from tests.storage.helpers import crash, make_config, start, state

pack = msgpack.Packer().pack


def frames_of(path: Path) -> list[list[tuple[object, ...]]]:
    scan = Scan()
    frames = read_frames(path.read_bytes(), HEADER_SIZE, VERSION, scan)
    got = [[as_record(r) for r in frame] for frame in frames]
    assert not scan.damages
    return got


async def test_a_publish_call_and_its_acks_are_batch_frames_and_replay_exactly(
    tmp_path: Path,
) -> None:
    runtime, storage = start(make_config(tmp_path, fsync="no"))
    broker = runtime.broker
    session = broker.attach_consumer(ClientInfo("c", "t", "", 0), lambda batch: None)
    items = [(f"m{i}", 3600 if i % 7 == 3 else 0) for i in range(250)]
    assert broker.publish_many("t", items) == (250, True)  # type: ignore[arg-type]
    broker.dispatch()
    pushed = [code for code in session.in_flight]
    broker.ack_many(session, [code_text(c) for c in pushed[:150]])
    assert storage.wal is not None
    storage.wal.flush()
    frames = frames_of(storage.datadir.wal_path(storage.seq))
    assert [(f[0][0], len(f)) for f in frames] == [(ADD_BATCH, 1)] * 3 + [(CONSUMED_BATCH, 1)] * 2
    adds = [split_codes(f[0][4], len(f[0][5])) for f in frames[:3]]  # type: ignore[arg-type]
    assert [len(a) for a in adds] == [WAL_FRAME_RECORDS, WAL_FRAME_RECORDS, 50]
    assert frames[0][0][6] != 0  # some delayed: one delay per message
    before = state(list(broker.store), attempts=False)  # a push alone logs nothing
    consumed = state([m for m in broker.store if m.status is Status.CONSUMED])
    assert len(consumed) == 150 and {v[-1] for v in consumed.values()} == {1}
    crash(runtime, storage)

    runtime2, storage2 = start(make_config(tmp_path, fsync="no"))
    assert state(list(runtime2.broker.store), attempts=False) == before
    assert state([runtime2.broker.store.get(c) for c in consumed]) == consumed  # type: ignore[misc]
    assert [m.code for m in runtime2.broker.store] == list(before)  # creation order
    await storage2.close()
    runtime2.close()


class _Handed:
    """Records whether each batch came with its codes' bytes (MessageListener)."""

    def __init__(self) -> None:
        self.added: list[bool] = []
        self.updated: list[bool] = []

    def message_added(self, msg: Message) -> None: ...
    def message_updated(self, msg: Message) -> None: ...
    def message_removed(self, msg: Message) -> None: ...

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        self.added.append(codes is not None)

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        self.updated.append(codes is not None)


class _Unhanded(WalListener):
    """A WalListener that converts every code itself, as when the broker has no bytes."""

    def messages_added(self, msgs: list[Message], codes: bytes | None = None) -> None:
        super().messages_added(msgs)

    def messages_updated(self, msgs: list[Message], codes: bytes | None = None) -> None:
        super().messages_updated(msgs)


async def test_handed_down_codes_write_the_same_bytes(tmp_path: Path) -> None:
    """The code bytes the broker hands the WAL (the generator's draw, a consumer's
    unhexlified acks) make the very bytes the listener's own conversion makes: across
    a draw of codes (4,096), WAL_FRAME_RECORDS parts, and a read with an unknown ack."""
    runtime, storage = start(make_config(tmp_path / "a", fsync="no"))
    broker = runtime.broker
    other = DataDir(tmp_path / "b", "MQDATA")
    other.open()
    executor = ThreadPoolExecutor(1)
    wal = WalWriter(runtime.loop, other, storage.seq, "no", executor)
    broker.add_listener(_Unhanded(wal, broker))
    handed = _Handed()
    broker.add_listener(handed)
    session = broker.attach_consumer(ClientInfo("c", "t", "", 0), lambda batch: None)
    for _ in range(20):  # 5,000 codes: two draws
        broker.publish_many("t", [(f"m{i}", 0) for i in range(250)])
        broker.dispatch()
        acks = [code_text(c).encode() for c in session.in_flight]
        broker.ack_keys(session, *ack_codes(acks[:200]))
        broker.ack_keys(session, *ack_codes([*acks[200:220], b"%032x" % 7, *acks[220:]]))
    assert handed.added == [True] * 20
    assert handed.updated == [True, False, False] * 20  # the unknown ack: not all of the read
    assert storage.wal is not None
    storage.wal.flush()
    wal.flush()
    mine = storage.datadir.wal_path(storage.seq).read_bytes()
    theirs = other.wal_path(storage.seq).read_bytes()
    assert len(mine) > 5000 * 32 and mine[HEADER_SIZE:] == theirs[HEADER_SIZE:]  # 2 codes each
    await wal.close()
    other.close()
    executor.shutdown()
    crash(runtime, storage)


async def test_string_codes_are_written_as_one_record_per_message(tmp_path: Path) -> None:
    runtime, storage = start(make_config(tmp_path, fsync="no"))
    broker = runtime.broker
    session = broker.attach_consumer(ClientInfo("c", "t", "", 0), lambda batch: None)
    names = iter(f"ODD-{i}" for i in range(10))
    broker.new_code = lambda: next(names)
    broker.publish_many("t", [("a", 0), ("b", 0), ("c", 0)])
    broker.dispatch()
    broker.ack_many(session, ["ODD-0", "ODD-2"])
    assert storage.wal is not None
    storage.wal.flush()
    records = [r for f in frames_of(storage.datadir.wal_path(storage.seq)) for r in f]
    assert [(r[0], r[1]) for r in records] == [
        (ADD, "ODD-0"),
        (ADD, "ODD-1"),
        (ADD, "ODD-2"),
        (UPDATE, "ODD-0"),
        (UPDATE, "ODD-2"),
    ]
    before = state(list(broker.store), attempts=False)
    crash(runtime, storage)
    runtime2, storage2 = start(make_config(tmp_path, fsync="no"))
    assert state(list(runtime2.broker.store), attempts=False) == before
    await storage2.close()
    runtime2.close()


def test_a_batch_whose_fields_disagree_is_an_unknown_record(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    good = (ADD_BATCH, "t", 1, 1.5, (7).to_bytes(16), [b"x"], 0)
    bad = (ADD_BATCH, "t", 1, 1.5, (8).to_bytes(16), [b"x", b"y"], 0)  # two payloads, one code
    with d.wal_path(1).open("wb") as f:
        head = HEADER.pack(MAGIC, VERSION, KIND_WAL, 1, 0.0)
        f.write(head + struct.pack("<I", checksum(head)))
        for rec in (good, bad):
            body = pack(rec)
            f.write(frame_head(body, 1) + body)
    result = recover(d)
    assert list(result.messages) == [7]
    assert any("unknown" in p for p in result.problems)
    assert AddBatch("t", 1, 1.5, b"\0" * 16, [b"x"], [5]).messages("t")[0].status is Status.DELAYED  # type: ignore[index]


def test_a_format_2_segment_is_read(tmp_path: Path) -> None:
    d = DataDir(tmp_path, "MQDATA")
    now = time.time()
    msgs = [(ADD, f"{i:032x}", "t", f"d{i}", int(now), 0, 0, -1, now, 0) for i in (1, 2)]
    with d.wal_path(1).open("wb") as f:
        head = HEADER.pack(MAGIC, 2, KIND_WAL, 1, 0.0)
        f.write(head + struct.pack("<I", checksum(head)))
        body = b"".join(pack(r) for r in [*msgs, (UPDATE, f"{1:032x}", 1, int(now), 0, 1)])
        f.write(frame_head(body, 3) + body)
    result = recover(d)
    assert list(result.messages) == [1, 2]
    assert result.messages[1].status is Status.CONSUMED and result.messages[1].attempts == 1
    assert as_record(result.messages[2])[:4] == message_record(result.messages[2])[:4]


def test_a_format_3_segment_is_read(tmp_path: Path) -> None:
    """Format 3's ADD_BATCH (now ADD_BATCH_TEXT) holds the payloads as text: read back as
    the bodies a publish of them makes, each an exact-size bytes of its own, as format
    4's are (model.py ``body_of``)."""
    d = DataDir(tmp_path, "MQDATA")
    now = int(time.time())
    texts = ["plain", 'quo"te', "<tag>&", "naïve \\ \n", ""]
    codes = b"".join(i.to_bytes(16) for i in range(1, 6))
    rec = (ADD_BATCH_TEXT, "t", now, now + 0.5, codes, texts, 0)
    with d.wal_path(1).open("wb") as f:
        head = HEADER.pack(MAGIC, 3, KIND_WAL, 1, 0.0)
        f.write(head + struct.pack("<I", checksum(head)))
        body = pack(rec)
        f.write(frame_head(body, 1) + body)
    result = recover(d)
    assert list(result.messages) == [1, 2, 3, 4, 5]
    got = [result.messages[i] for i in range(1, 6)]
    assert [m.body for m in got] == [body_of(t) for t in texts]
    assert [m.data for m in got] == texts
    assert {m.status for m in got} == {Status.WAITING}


def test_format_4_bodies_are_read_as_exact_size_bytes(tmp_path: Path) -> None:
    """A body read back is a bytes object of its own length, not a view keeping the
    frame alive (docs/performance.md "Session 7: memory")."""
    d = DataDir(tmp_path, "MQDATA")
    bodies = [body_of(t) for t in ["a" * 100, "caf\u00e9 <b>", "x"]]
    codes = b"".join(i.to_bytes(16) for i in range(1, 4))
    rec = (ADD_BATCH, "t", 1, 1.5, codes, bodies, [0, 5, 0])
    with d.wal_path(1).open("wb") as f:
        head = HEADER.pack(MAGIC, VERSION, KIND_WAL, 1, 0.0)
        f.write(head + struct.pack("<I", checksum(head)))
        body = pack(rec)
        f.write(frame_head(body, 1) + body)
    result = recover(d)
    got = [result.messages[i] for i in range(1, 4)]
    assert [m.body for m in got] == bodies
    assert [m.status for m in got] == [Status.WAITING, Status.DELAYED, Status.WAITING]
    for m in got:
        assert type(m.body) is bytes
        assert sys.getsizeof(m.body) == sys.getsizeof(b"") + len(m.body)


async def test_segments_are_format_4_and_snapshots_format_2(tmp_path: Path) -> None:
    """A clean stop leaves only a format-2 snapshot: a build reading formats 1 and 2
    starts from it (docs/durability.md "Files")."""
    runtime, storage = start(make_config(tmp_path, fsync="no"))
    runtime.broker.publish_many("t", [("a", 0), ("b", 0)])
    assert storage.wal is not None
    storage.wal.flush()
    wal = storage.datadir.wal_path(storage.seq).read_bytes()[:HEADER_SIZE]
    assert decode_header(wal).version == 4
    await storage.close()
    runtime.close()
    (snap,) = tmp_path.glob("*.snap")
    assert not list(tmp_path.glob("*.wal"))
    assert decode_header(snap.read_bytes()[:HEADER_SIZE]).version == 2


async def test_one_damaged_byte_in_a_batch_costs_its_frame_and_names_its_codes(
    tmp_path: Path,
) -> None:
    runtime, storage = start(make_config(tmp_path, fsync="no"))
    msgs = runtime.broker.publish_many("t", [(f"m{i}", 0) for i in range(250)])
    assert msgs == (250, False)
    codes = [m.code for m in runtime.broker.store]
    path = storage.datadir.wal_path(storage.seq)
    crash(runtime, storage)
    raw = bytearray(path.read_bytes())
    first_end = raw.index(FRAME_MAGIC, HEADER_SIZE + 1)  # the second frame's start
    raw[first_end - 3] ^= 0x01  # in the first frame's last payloads, after its codes
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptData, match=f"byte offset {HEADER_SIZE}"):
        recover(DataDir(tmp_path, "MQDATA"))
    result = recover(DataDir(tmp_path, "MQDATA"), skip_corrupt=True)
    assert list(result.messages) == codes[WAL_FRAME_RECORDS:]  # only the first 100 lost
    assert any(code_text(codes[0]) in p and code_text(codes[9]) in p for p in result.problems)

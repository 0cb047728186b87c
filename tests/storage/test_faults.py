"""Storage faults a tmpfs cannot produce, through a fake file layer: EIO on write, on
fsync, on rename. Writes are refused while storage fails, nothing is acknowledged that is
not on disk, and storage comes back by itself once the calls succeed again."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
from aiohttp import web
from multidict import MultiDict

from kapokmq.config import Config
from kapokmq.model import ClientInfo, Code, Status, code_text
from kapokmq.server.app import build_app
from kapokmq.server.main import listen
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.send import accept_send, settled
from kapokmq.server.session import ProducerWebSocket, State
from kapokmq.storage import Storage, open_storage
from kapokmq.storage.files import FileOps, LoopSync
from kapokmq.storage.format import ADD_BATCH, CONSUMED_BATCH, UPDATE, split_codes
from kapokmq.storage.wal import WalError
from tests.harness import SECRET
from tests.server.test_session import FakeLink, FakeTransport, frames, send_frame
from tests.storage.helpers import crash, make_config


class FaultyFiles(FileOps):
    """The real calls, recorded, except that ``failing`` ones raise ``OSError(EIO)``."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.calls: list[tuple[str, object]] = []

    def _check(self, name: str, detail: object = None) -> None:
        self.calls.append((name, detail))
        if name in self.failing:
            raise OSError(errno.EIO, "Input/output error")

    def create(self, path: Path, exclusive: bool = False) -> int:
        self._check("create", path.name)
        return super().create(path, exclusive)

    def write(self, fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        self._check("write", b"".join(bytes(p) for p in parts))
        super().write(fd, parts)

    def datasync(self, fd: int) -> None:
        self._check("fsync")
        super().datasync(fd)

    def loop_sync(self) -> LoopSync | None:
        return None  # the thread's datasync: the failing "fsync" is checked there

    def replace(self, source: Path, target: Path) -> None:
        self._check("rename", target.name)
        super().replace(source, target)


class FaultyLoopSync(LoopSync):
    """The real Linux AIO fdatasync, whose results are EIO while ``files`` fails "fsync"."""

    files: FaultyFiles
    reaped = 0

    def results(self) -> list[int]:
        done = super().results()
        self.reaped += len(done)
        if done and "fsync" in self.files.failing:
            return [-errno.EIO] * len(done)
        return done


class FaultyAioFiles(FaultyFiles):
    """FaultyFiles whose WAL fdatasync is the loop's AIO request (files.LoopSync)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncers: list[FaultyLoopSync] = []

    def loop_sync(self) -> LoopSync | None:
        syncer = FaultyLoopSync.open()
        if syncer is None:
            pytest.skip("no Linux AIO here: the WAL syncs in its thread")
        assert isinstance(syncer, FaultyLoopSync)
        syncer.files = self
        self.syncers.append(syncer)
        return syncer


def start(config: Config, files: FileOps) -> tuple[BrokerRuntime, Storage]:
    runtime = BrokerRuntime(config)
    storage = open_storage(runtime, files)
    assert storage is not None
    storage._retry_delay = 0.01  # retry at once in tests
    return runtime, storage


def records_written(files: FaultyFiles) -> list[tuple[object, ...]]:
    """Every WAL record the fake layer saw written (frames decoded, headers skipped)."""
    out = []
    for name, data in files.calls:
        if name != "write" or not isinstance(data, bytes) or data.startswith(b"KAPOKMQ"):
            continue
        pos = 0
        while pos < len(data):
            length = int.from_bytes(data[pos + 4 : pos + 8], "little")
            out.extend(msgpack.unpackb(data[pos + 20 : pos + 20 + length], use_list=False))
            pos += 20 + length
    return out


@pytest.mark.parametrize("fault", ["write", "fsync", "aio fsync"])
async def test_fsync_always_fault_answers_errors_then_resumes(tmp_path: Path, fault: str) -> None:
    files = FaultyAioFiles() if fault == "aio fsync" else FaultyFiles()
    fault = fault.removeprefix("aio ")
    runtime, storage = start(make_config(tmp_path, fsync="always"), files)
    ticket = runtime.durable_ticket
    assert ticket is not None
    kept = runtime.publish("t", "before", 0)
    await runtime.durable_barrier()  # type: ignore[misc]

    files.failing.add(fault)
    lost = runtime.publish("t", "during", 0)
    pending = ticket()
    assert pending is not None
    with pytest.raises(WalError) as info:
        await asyncio.wait_for(asyncio.shield(pending), 5)
    assert str(info.value).startswith("storage unavailable: Input/output error")
    if isinstance(files, FaultyAioFiles):  # the failure came from the loop's AIO request
        assert files.syncers[0].reaped >= 1
    assert runtime.refusal is not None
    assert runtime.refusal.ws_text == str(info.value)
    assert storage.fault is not None and "Input/output error" in storage.fault
    assert storage.write_failures >= 1
    await asyncio.sleep(0.05)  # deliberately: no retry may succeed while the fault lasts
    assert runtime.refusal is not None and not storage.available.is_set()

    files.failing.clear()
    await asyncio.wait_for(storage.available.wait(), 5)
    assert runtime.refusal is None and storage.fault is None
    assert storage.wal is not None and storage.wal.seq > 1  # a new writer on a new segment
    after = runtime.publish("t", "after", 0)
    await runtime.durable_barrier()
    crash(runtime, storage)

    runtime2, storage2 = start(make_config(tmp_path, fsync="always"), FileOps())
    codes = {m.code for m in runtime2.broker.store}
    # the message whose `ok` was refused is still in memory, so the rebuilt files hold it
    assert codes == {kept.code, lost.code, after.code}
    assert storage2.recovered is not None and not storage2.recovered.problems
    await storage2.close()
    runtime2.close()


async def test_everysec_write_fault_refuses_writes_at_once(tmp_path: Path) -> None:
    files = FaultyFiles()
    runtime, storage = start(make_config(tmp_path, fsync="everysec"), files)
    files.failing.add("write")
    runtime.publish("t", "x", 0)
    assert runtime.refusal is None  # the write happens at the end of the iteration
    await asyncio.sleep(0)
    assert runtime.refusal is not None
    assert runtime.refusal.ws_text.startswith("storage unavailable: Input/output error")
    files.failing.clear()
    await asyncio.wait_for(storage.available.wait(), 5)
    assert runtime.refusal is None
    await storage.close()
    runtime.close()


@pytest.mark.parametrize("policy", ["everysec", "no"])
async def test_http_send_whose_wal_write_fails_is_answered_with_the_error(
    tmp_path: Path, policy: str
) -> None:
    """HTTP Send waits for its iteration's WAL write (docs/durability.md "Guarantees"), so
    it knows when that write failed: the answer is the storage error, never code 0 for a
    message a SIGKILL would lose (measured on a full tmpfs: 43 of 100 code-0 answers lost)."""
    files = FaultyFiles()
    runtime, storage = start(make_config(tmp_path, fsync=policy), files)
    form = MultiDict({"messageData": "kept", "topic": "t", "delayTime": "0"})
    answer = accept_send(runtime, SECRET, form)
    assert answer.durable is not None
    await asyncio.wait([answer.durable])
    assert orjson.loads(settled(answer))["code"] == 0
    files.failing.add("write")
    answer = accept_send(runtime, SECRET, MultiDict({**form, "messageData": "not written"}))
    assert answer.durable is not None
    await asyncio.wait([answer.durable])
    body = orjson.loads(settled(answer))
    assert body["code"] == -1, body
    assert body["msg"].startswith("storage unavailable: Input/output error"), body
    files.failing.clear()
    await asyncio.wait_for(storage.available.wait(), 5)
    await storage.close()
    runtime.close()


@pytest.mark.parametrize("mode", [1, 2])
async def test_rename_fault_in_a_snapshot_refuses_writes_then_resumes(
    tmp_path: Path, mode: int
) -> None:
    files = FaultyFiles()
    runtime, storage = start(make_config(tmp_path, isPersistent=mode), files)
    msgs = [runtime.publish("t", str(i), 0) for i in range(10)]
    files.failing.add("rename")
    assert await storage.start_snapshot() is None
    assert runtime.refusal is not None and "rename" not in runtime.refusal.ws_text
    assert "Input/output error (writing snapshot" in runtime.refusal.ws_text
    assert not list(tmp_path.glob("*.snap.tmp"))  # the unfinished snapshot is removed
    files.failing.clear()
    await asyncio.wait_for(storage.available.wait(), 5)
    snapshots = list(tmp_path.glob("*.snap"))
    assert len(snapshots) == 1
    crash(runtime, storage)
    runtime2, storage2 = start(make_config(tmp_path, isPersistent=mode), FileOps())
    assert {m.code for m in runtime2.broker.store} == {m.code for m in msgs}
    await storage2.close()
    runtime2.close()


async def test_an_ack_is_flushed_and_synced_with_its_batch(tmp_path: Path) -> None:
    """Acks are WAL records like publishes: written in the same frames, covered by the
    same fsync (group commit), and nobody waits for them."""
    files = FaultyFiles()
    runtime, storage = start(make_config(tmp_path, fsync="always"), files)
    broker = runtime.broker
    session = broker.attach_consumer(ClientInfo("c", "t", "", 0), lambda batch: None)
    first = runtime.publish("t", "a", 0)
    await runtime.durable_barrier()  # type: ignore[misc]
    broker.dispatch()
    files.calls.clear()

    broker.ack(session, first.code)  # no reply: nothing to wait for
    second = runtime.publish("t", "b", 0)
    await runtime.durable_barrier()  # type: ignore[misc]
    writes = [c for c in files.calls if c[0] == "write"]
    assert len(writes) == 1, files.calls  # one write holds the ack and the publish
    ack, add = records_written(files)
    assert (ack[0], split_codes(ack[2], 1)) == (CONSUMED_BATCH, [first.code])  # type: ignore[arg-type]
    assert (add[0], split_codes(add[4], 1)) == (ADD_BATCH, [second.code])  # type: ignore[arg-type]
    assert [c[0] for c in files.calls] == ["write", "fsync"]  # and one fsync covers both

    files.calls.clear()
    broker.requeue(first.code)  # an ack alone (any update) is flushed within the iteration
    await asyncio.sleep(0)
    assert [(r[0], r[1]) for r in records_written(files)] == [(UPDATE, code_text(first.code))]
    await storage.close()
    runtime.close()


async def test_a_failed_batch_is_answered_with_errors_and_the_connection_kept(
    tmp_path: Path,
) -> None:
    files = FaultyFiles()
    runtime, storage = start(make_config(tmp_path, fsync="always"), files)
    producer = ProducerWebSocket(runtime, FakeTransport(), FakeLink(), "t", "p1", "")
    transport = producer.transport
    assert isinstance(transport, FakeTransport)
    producer.receive(b"test")
    transport.out.clear()
    producer.receive(send_frame("0"))
    producer.end_of_read()
    await runtime.durable_barrier()  # type: ignore[misc]
    await asyncio.sleep(0)
    assert frames(b"".join(transport.out)) == [b"ok"]
    transport.out.clear()
    files.failing.add("fsync")
    for i in range(3):
        producer.receive(send_frame(str(i)))
    producer.receive(b"not json")
    producer.end_of_read()

    async def four_replies() -> list[bytes]:  # the failed fsync runs on a worker thread
        while len(replies := frames(b"".join(transport.out))) < 4:
            await asyncio.sleep(0.005)
        return replies

    replies = await asyncio.wait_for(four_replies(), 10)
    assert len(replies) == 4
    assert len(set(replies[:3])) == 1
    assert replies[0].startswith(b"error: storage unavailable: Input/output error")
    assert replies[3].startswith(b"error: ") and b"storage" not in replies[3]
    assert producer.state is State.OPEN
    await storage.close()
    runtime.close()


async def test_storage_that_fails_at_start_starts_refusing_writes(tmp_path: Path) -> None:
    """Recovery only reads; if the new segment cannot be written, the broker still starts
    and delivers what it recovered, refusing writes until storage works."""
    runtime, storage = start(make_config(tmp_path), FileOps())
    kept = runtime.publish("t", "kept", 0)
    crash(runtime, storage)

    files = FaultyFiles()
    files.failing.add("create")
    runtime, storage = start(make_config(tmp_path), files)
    assert storage.fault is not None and "Input/output error (creating" in storage.fault
    assert runtime.refusal is not None
    assert runtime.broker.store.get(kept.code) is not None
    files.failing.clear()
    await asyncio.wait_for(storage.available.wait(), 5)
    assert runtime.refusal is None
    await storage.close()
    runtime.close()


async def test_console_changes_are_answered_once_on_disk_and_refused_while_storage_fails(
    tmp_path: Path,
) -> None:
    """DelMessage, Requeue and DeliverNow change stored messages: under fsync always their
    `{"code":0}` waits for the disk like Send's, and while storage fails they are refused
    with its reason and change nothing (a crash would undo a change that was not logged)."""
    files = FaultyFiles()
    config = make_config(tmp_path, fsync="always")
    config.server.port = 0
    runtime, storage = start(config, files)
    broker = runtime.broker
    done = runtime.publish("done", "consumed", 0)
    session = broker.attach_consumer(ClientInfo("c", "done", "", 0), lambda batch: None)
    broker.dispatch()
    broker.ack(session, done.code)
    broker.detach_consumer(session)
    doomed = runtime.publish("t", "delete me", 0)
    delayed = runtime.publish("t", "later", 3600)
    await runtime.durable_barrier()  # type: ignore[misc]
    assert done.status is Status.CONSUMED
    runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
    await runner.setup()
    server = await listen(runtime, runner, None)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def console(http: aiohttp.ClientSession, route: str, code: Code) -> Any:
        async with http.post(
            f"{base}/Console/{route}",
            data={"messageCode": code_text(code)},
            headers={"secretKey": SECRET},
        ) as resp:
            assert resp.status == 200
            return orjson.loads(await resp.read())

    try:
        async with aiohttp.ClientSession() as http:
            files.failing.add("fsync")  # the delete reaches the OS, its fsync fails
            answer = await asyncio.wait_for(console(http, "DelMessage", doomed.code), 10)
            assert answer["code"] == -1, answer
            assert answer["msg"].startswith("storage unavailable: Input/output error")
            assert runtime.refusal is not None
            for route, code in (("DeliverNow", delayed.code), ("Requeue", done.code)):
                answer = await console(http, route, code)
                assert answer == {"code": -1, "msg": runtime.refusal.http_text}, route
            assert broker.store.get(delayed.code).status is Status.DELAYED  # type: ignore[union-attr]
            assert done.status is Status.CONSUMED

            files.failing.clear()
            await asyncio.wait_for(storage.available.wait(), 5)
            assert await console(http, "DeliverNow", delayed.code) == {"code": 0}
            assert await console(http, "Requeue", done.code) == {"code": 0}
    finally:
        server.close()
        await runner.cleanup()
    crash(runtime, storage)
    runtime2, storage2 = start(make_config(tmp_path, fsync="always"), FileOps())
    store = runtime2.broker.store
    assert store.get(doomed.code) is None  # in memory when the fsync failed: rebuilt without
    assert store.get(delayed.code).status is Status.WAITING  # type: ignore[union-attr]
    assert store.get(done.code).status is Status.WAITING  # type: ignore[union-attr]
    await storage2.close()
    runtime2.close()


async def test_everysec_console_change_whose_write_fails_is_answered_with_the_error(
    tmp_path: Path,
) -> None:
    """Under everysec a console change is answered once its write reached the OS
    (docs/durability.md): a write that fails is answered with the error, not code 0."""
    files = FaultyFiles()
    config = make_config(tmp_path, fsync="everysec")
    config.server.port = 0
    runtime, storage = start(config, files)
    doomed = runtime.publish("t", "delete me", 0)
    runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
    await runner.setup()
    server = await listen(runtime, runner, None)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/Console/DelMessage"
    try:
        async with aiohttp.ClientSession() as http:
            files.failing.add("write")
            async with http.post(
                url, data={"messageCode": code_text(doomed.code)}, headers={"secretKey": SECRET}
            ) as resp:
                answer = orjson.loads(await resp.read())
        assert answer["code"] == -1, answer
        assert answer["msg"].startswith("storage unavailable: Input/output error")
        files.failing.clear()
        await asyncio.wait_for(storage.available.wait(), 5)
    finally:
        server.close()
        await runner.cleanup()
    await storage.close()
    runtime.close()


class FillingDisk(FileOps):
    """Real calls, but once ``room`` is set a write stores only that many more bytes and
    then fails with ENOSPC, as a filling disk does (writev takes what fits)."""

    def __init__(self) -> None:
        self.room: int | None = None

    def write(self, fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        data = b"".join(bytes(p) for p in parts)
        if self.room is None or len(data) <= self.room:
            if self.room is not None:
                self.room -= len(data)
            super().write(fd, parts)
            return
        os.write(fd, data[: self.room])
        self.room = 0
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_write_cut_short_by_a_full_disk_keeps_the_whole_frames_it_wrote(
    tmp_path: Path,
) -> None:
    """everysec answers `ok` before the write: the frames of a big batch that fitted on
    the disk stay in the segment (ended at the last whole frame), so a crash before the
    rebuild loses only what did not fit, not the whole batch."""
    files = FillingDisk()
    runtime, storage = start(make_config(tmp_path, fsync="everysec"), files)
    storage._retry_delay = 60.0  # no rebuild: the crash comes first
    first = runtime.publish("t", "before", 0)
    await asyncio.sleep(0)
    files.room = 30_000  # about a third of the next batch
    batch = [runtime.publish("t", f"{i:04d}" + "x" * 200, 0) for i in range(500)]
    await asyncio.sleep(0)
    assert runtime.refusal is not None and "No space left" in runtime.refusal.ws_text
    crash(runtime, storage)

    runtime2, storage2 = start(make_config(tmp_path, fsync="everysec"), FileOps())
    recovered = {m.code for m in runtime2.broker.store}
    assert first.code in recovered
    kept = [m.code in recovered for m in batch]
    assert 100 <= sum(kept) < 500, sum(kept)  # whole frames of 100 records that fitted
    assert kept == sorted(kept, reverse=True)  # a prefix of the batch, in order
    assert storage2.recovered is not None and not storage2.recovered.problems
    await storage2.close()
    runtime2.close()


async def test_a_failed_final_snapshot_says_what_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """isPersistent 1 has no WAL: a final snapshot that fails loses the changes since the
    last one, and the log says so (it said "the WAL is kept")."""
    files = FaultyFiles()
    runtime, storage = start(make_config(tmp_path, isPersistent=1), files)
    runtime.publish("t", "x", 0)
    files.failing.add("rename")
    await storage.close()
    runtime.close()
    assert "final snapshot failed" in caplog.text
    assert "the changes since the last snapshot are lost" in caplog.text
    assert "WAL" not in caplog.text

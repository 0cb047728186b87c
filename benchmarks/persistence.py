"""Durability benchmarks: throughput per persistence mode, recovery of 1M messages, loop pauses.

    python benchmarks/persistence.py            # everything (a few minutes)
    python benchmarks/persistence.py --n 50000 --skip-recovery

Throughput: a broker process per mode, and a separate client process (picows) with one
pipelined producer and one consumer that acks every message; msgs/s is N divided by the
time from the first send to the N-th delivery, reported as a ratio to memory-only
measured in the same run. Recovery: 1,000,000 messages (100-byte payloads) written once as
a snapshot and once as a WAL segment; time to "listening" and peak RSS of the broker.
Loop pause: the longest event-loop callback while a snapshot of 1,000,000 messages is
written in the background. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAYLOAD = "x" * 100
KEY = b"test"
LISTENING = re.compile(r"listening on http://[^:]+:(\d+)")

MODES: dict[str, dict[str, object]] = {
    "memory only": {"mq.isPersistent": 0},
    "snapshot (isPersistent 1, every 5 s)": {"mq.isPersistent": 1, "mq.persistentTime": 5},
    "WAL fsync no": {"mq.isPersistent": 2, "mq.fsync": "no"},
    "WAL fsync everysec": {"mq.isPersistent": 2, "mq.fsync": "everysec"},
    "WAL fsync always": {"mq.isPersistent": 2, "mq.fsync": "always"},
}


# ---------------------------------------------------------------------------- server process
class Server:
    def __init__(self, settings: dict[str, object], cwd: Path) -> None:
        self.settings = {"mq.maxInFlight": 1000, **settings}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = cwd / "broker.log"
        self.ready_after = 0.0

    def start(self, timeout: float = 120) -> Server:
        args = [sys.executable, "-m", "kapokmq", "serve", "--addr", "127.0.0.1", "--port", "0"]
        for k, v in self.settings.items():
            args += ["--set", f"{k}={v}"]
        log = self.log_path.open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.cwd)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTENING.search(self.log())
            if m:
                self.port = int(m.group(1))
                self.ready_after = time.perf_counter() - started
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited:\n{self.log()}")
            time.sleep(0.01)
        raise TimeoutError(self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------- client process
async def client(port: int, n: int, window: int) -> dict[str, Any]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    loop = asyncio.get_running_loop()
    frame = f'{{"MessageData":"{PAYLOAD}","DelayTime":0}}'.encode()

    class Auth(WSListener):
        def __init__(self) -> None:
            self.ready = loop.create_future()
            self.authed = False

        def on_ws_frame(self, transport: WSTransport, f: WSFrame) -> None:
            if f.msg_type is not WSMsgType.TEXT:
                return
            if not self.authed:
                text = f.get_payload_as_bytes()
                if text.startswith(b"Please"):
                    transport.send(WSMsgType.TEXT, KEY)
                elif text.startswith(b"Secret key matching succeeded"):
                    self.authed = True
                    self.ready.set_result(None)
                return
            self.on_data(transport, f)

        def on_data(self, transport: WSTransport, f: WSFrame) -> None:
            raise NotImplementedError

    class Consumer(Auth):
        def __init__(self) -> None:
            super().__init__()
            self.got = 0
            self.done = loop.create_future()

        def on_data(self, transport: WSTransport, f: WSFrame) -> None:
            payload = f.get_payload_as_memoryview()
            transport.send(WSMsgType.TEXT, payload[16:48])  # the MessageCode
            self.got += 1
            if self.got == n and not self.done.done():
                self.done.set_result(time.perf_counter())

    class Producer(Auth):
        def __init__(self) -> None:
            super().__init__()
            self.sent = 0
            self.oks = 0

        def go(self, transport: WSTransport) -> None:
            while self.sent < min(n, window):
                transport.send(WSMsgType.TEXT, frame)
                self.sent += 1

        def on_data(self, transport: WSTransport, f: WSFrame) -> None:
            self.oks += 1
            if self.sent < n:
                transport.send(WSMsgType.TEXT, frame)
                self.sent += 1

    base = f"ws://127.0.0.1:{port}"
    ct, cl = await ws_connect(Consumer, f"{base}/Consumers/Conn/bench/c1")
    pt, pl = await ws_connect(Producer, f"{base}/Producers/Conn/bench/p1")
    assert isinstance(cl, Consumer) and isinstance(pl, Producer)
    await cl.ready
    await pl.ready
    started = time.perf_counter()
    pl.go(pt)
    finished = await asyncio.wait_for(cl.done, 1800)
    pt.disconnect()
    ct.disconnect()
    return {"n": n, "seconds": finished - started, "rate": n / (finished - started)}


def run_client(port: int, n: int, window: int) -> dict[str, Any]:
    args = ["client", "--port", str(port), "--n", str(n), "--window", str(window)]
    out = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        check=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def dir_bytes(path: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in path.glob(f"*{suffix}")) if path.exists() else 0


def throughput(n: int, n_always: int, window: int) -> list[dict[str, Any]]:
    rows = []
    for name, settings in MODES.items():
        count = n_always if settings.get("mq.fsync") == "always" else n
        with tempfile.TemporaryDirectory(prefix="kmq-bench-") as tmp:
            server = Server(settings, Path(tmp)).start()
            try:
                result = run_client(server.port, count, window)
                wal = dir_bytes(Path(tmp) / "data", ".wal")
            finally:
                server.stop()
            snap = dir_bytes(Path(tmp) / "data", ".snap")
        rows.append({"mode": name, **result, "wal_bytes": wal, "snapshot_bytes_final": snap})
        print(f"  {name}: {result['rate']:,.0f} msgs/s ({count} messages)", file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------- 1M messages
def make_messages(count: int) -> list[Any]:
    from kapokmq.model import CodeGenerator, Status, new_message

    gen = CodeGenerator()
    now = time.time()
    return [
        new_message(gen(), f"topic-{i % 4}", PAYLOAD, int(now), 0, 0, Status.WAITING, now)
        for i in range(count)
    ]


def write_wal(path: Path, messages: list[Any]) -> None:
    """``messages`` as a broker's WAL holds them: the records its WalListener writes for
    publish calls of up to WAL_FRAME_RECORDS messages of one topic (ADD_BATCH frames in
    the checkout's own format), one frame per batch record."""
    import msgpack

    from kapokmq.storage.format import KIND_WAL, WAL_FRAME_RECORDS, encode_header, frame_head
    from kapokmq.storage.manager import WalListener

    frames: list[list[Any]] = []

    class Frames:  # the WalWriter methods the listener calls, each record list a frame
        def append(self, record: Any) -> None:
            frames.append([record])

        def append_many(self, records: list[Any]) -> None:
            frames.append(records)

        def append_batches(self, records: list[Any]) -> None:
            frames.extend([record] for record in records)

    listener = WalListener(Frames(), None)  # type: ignore[arg-type]
    by_topic: dict[str, list[Any]] = {}
    for m in messages:
        by_topic.setdefault(m.topic, []).append(m)
    for msgs in by_topic.values():
        for start in range(0, len(msgs), WAL_FRAME_RECORDS):
            listener.messages_added(msgs[start : start + WAL_FRAME_RECORDS])
    pack = msgpack.Packer().pack
    with path.open("wb") as f:
        f.write(encode_header(KIND_WAL, 1, time.time()))
        for records in frames:
            payload = b"".join(pack(record) for record in records)
            f.write(frame_head(payload, len(records)) + payload)


def recovery(count: int) -> dict[str, Any]:
    from kapokmq.storage.layout import DataDir
    from kapokmq.storage.snapshot import write_snapshot_sync

    messages = make_messages(count)
    out: dict[str, Any] = {"messages": count}
    with tempfile.TemporaryDirectory(prefix="kmq-rec-") as tmp:
        root = Path(tmp)
        # baseline: an empty broker
        (root / "empty").mkdir()
        empty = Server({"mq.isPersistent": 2}, root / "empty").start()
        out["empty_start_s"] = empty.ready_after
        out["empty_rss_mib"] = empty.peak_rss_mib()
        empty.stop()
        for kind in ("snapshot", "wal"):
            work = root / kind
            (work / "data").mkdir(parents=True)
            d = DataDir(work / "data", "MQDATA")
            if kind == "snapshot":
                write_snapshot_sync(d, 1, messages)
                size = dir_bytes(work / "data", ".snap")
            else:
                write_wal(d.wal_path(1), messages)
                size = dir_bytes(work / "data", ".wal")
            server = Server({"mq.isPersistent": 2, "mq.maxInFlight": 1000}, work).start()
            m = re.search(r"recovered (\d+) messages .* in ([\d.]+)s", server.log())
            out[kind] = {
                "file_bytes": size,
                "bytes_per_message": size / count,
                "start_to_listening_s": server.ready_after,
                "recovery_s": float(m.group(2)) if m else None,
                "recovered": int(m.group(1)) if m else None,
                "peak_rss_mib": server.peak_rss_mib(),
            }
            server.stop()
            print(f"  recovery from {kind}: {out[kind]}", file=sys.stderr)
    return out


async def loop_pause(count: int, freeze: bool = True) -> dict[str, Any]:
    """Worst event-loop callback while a 1M-message snapshot is written in the background."""
    from kapokmq.config import Config
    from kapokmq.server.runtime import BrokerRuntime
    from kapokmq.storage import open_storage

    with tempfile.TemporaryDirectory(prefix="kmq-pause-") as tmp:
        config = Config()
        config.mq.isPersistent = 2
        config.mq.dataDir = tmp
        runtime = BrokerRuntime(config)
        storage = open_storage(runtime)
        assert storage is not None
        for msg in make_messages(count):
            runtime.broker.restore(msg)
        if freeze:  # what the broker does after a recovery, and tune_gc() at start
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
        # control: the same measuring loop with no snapshot, for as long as one takes
        idle: list[float] = []
        last = end = time.perf_counter()
        while end - last < 2.0:
            await asyncio.sleep(0)
            now = time.perf_counter()
            idle.append(now - end)
            end = now
        list_started = time.perf_counter()
        copy = list(runtime.broker.store)
        copy_ms = (time.perf_counter() - list_started) * 1e3
        del copy
        gaps: list[float] = []
        task = storage.start_snapshot()
        last = time.perf_counter()
        while not task.done():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        stats = task.result()
        await storage.close()
        runtime.close()
    gaps.sort()
    assert stats is not None
    return {
        "messages": stats.messages,
        "snapshot_s": stats.seconds,
        "snapshot_bytes": stats.bytes,
        "worst_pause_ms": gaps[-1] * 1e3,
        "p99_pause_ms": gaps[int(len(gaps) * 0.99)] * 1e3,
        "slices": stats.slices,
        "idle_worst_ms": max(idle) * 1e3,
        "copy_ms": copy_ms,
    }


def hot_path(count: int = 200_000) -> dict[str, float]:
    """In-process cost of the WAL listener per message (publish + ack), no sockets."""
    from kapokmq.config import Config
    from kapokmq.model import ClientInfo
    from kapokmq.server.runtime import BrokerRuntime
    from kapokmq.storage import open_storage

    async def one(persistent: int, tmp: str) -> float:
        config = Config()
        config.mq.isPersistent = persistent
        config.mq.fsync = "no"
        config.mq.dataDir = tmp
        config.mq.maxInFlight = count + 1
        runtime = BrokerRuntime(config)
        storage = open_storage(runtime)
        broker = runtime.broker
        session = broker.attach_consumer(ClientInfo("c", "t", "", 0), lambda b: None)
        started = time.perf_counter()
        for _ in range(0, count, 1000):
            msgs = [broker.publish("t", PAYLOAD, 0) for _ in range(1000)]
            broker.dispatch()
            for m in msgs:
                broker.ack(session, m.code)
            await asyncio.sleep(0)  # let the WAL flush once per "iteration"
        took = time.perf_counter() - started
        if storage is not None:
            await storage.close()
        runtime.close()
        return took / count * 1e6

    memory = wal = float("inf")
    for _ in range(3):  # alternate and keep the best of three (a noisy shared machine)
        with tempfile.TemporaryDirectory() as tmp:
            memory = min(memory, asyncio.run(one(0, tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            wal = min(wal, asyncio.run(one(2, tmp)))
    return {"memory_us": memory, "wal_us": wal, "wal_overhead_us": wal - memory}


# ---------------------------------------------------------------------------- report
def report(results: dict[str, Any]) -> str:
    lines = ["| mode | msgs/s | vs memory-only | WAL bytes/msg |", "|---|---:|---:|---:|"]
    rows = results.get("throughput", [])
    base = rows[0]["rate"] if rows else 1.0
    for r in rows:
        per = f"{r['wal_bytes'] / r['n']:.0f}" if r["wal_bytes"] else "-"
        lines.append(
            f"| {r['mode']} ({r['n']:,} msgs) | {r['rate']:,.0f} | "
            f"{r['rate'] / base:.2f}x | {per} |"
        )
    rec = results.get("recovery")
    if rec:
        lines += [
            "",
            "| recovery of 1,000,000 messages | from snapshot | from WAL |",
            "|---|---:|---:|",
        ]
        s, w = rec["snapshot"], rec["wal"]
        lines.append(f"| recovery (log) | {s['recovery_s']:.2f} s | {w['recovery_s']:.2f} s |")
        lines.append(
            f"| process start to listening | {s['start_to_listening_s']:.2f} s | "
            f"{w['start_to_listening_s']:.2f} s |"
        )
        lines.append(f"| peak RSS | {s['peak_rss_mib']:.0f} MiB | {w['peak_rss_mib']:.0f} MiB |")
        lines.append(
            f"| file size | {s['file_bytes'] / 2**20:.0f} MiB "
            f"({s['bytes_per_message']:.0f} B/msg) | "
            f"{w['file_bytes'] / 2**20:.0f} MiB ({w['bytes_per_message']:.0f} B/msg) |"
        )
        lines.append(
            f"| (empty broker: start {rec['empty_start_s']:.2f} s, "
            f"RSS {rec['empty_rss_mib']:.0f} MiB) | | |"
        )
    pause = results.get("pause")
    if pause:
        lines += [
            "",
            f"Snapshot of {pause['messages']:,} messages in the background: "
            f"{pause['snapshot_s']:.2f} s, {pause['snapshot_bytes'] / 2**20:.0f} MiB, "
            f"worst loop pause {pause['worst_pause_ms']:.1f} ms "
            f"(p99 {pause['p99_pause_ms']:.2f} ms over {pause['slices']} slices); "
            f"the first slice copies the table references ({pause['copy_ms']:.1f} ms); "
            f"the same loop with no snapshot: worst gap {pause['idle_worst_ms']:.1f} ms.",
        ]
    raw = results.get("pause_no_freeze")
    if raw:
        lines.append(
            f"Without gc.freeze() of the stored messages: worst pause "
            f"{raw['worst_pause_ms']:.1f} ms (p99 {raw['p99_pause_ms']:.2f} ms)."
        )
    hot = results.get("hot_path")
    if hot:
        lines += [
            "",
            f"In-process publish+ack: {hot['memory_us']:.2f} µs/msg memory-only, "
            f"{hot['wal_us']:.2f} µs/msg with the WAL listener "
            f"(+{hot['wal_overhead_us']:.2f} µs).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--window", type=int, default=1000)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--n-always", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--skip-pause", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.cmd == "client":
        try:
            import uvloop

            result = uvloop.run(client(args.port, args.n, args.window))
        except ImportError:
            result = asyncio.run(client(args.port, args.n, args.window))
        print(json.dumps(result))
        return
    results: dict[str, Any] = {}
    if not args.skip_throughput:
        results["throughput"] = throughput(args.n, args.n_always, args.window)
    if not args.skip_recovery:
        results["recovery"] = recovery(args.big)
    if not args.skip_pause:
        import uvloop

        results["pause"] = uvloop.run(loop_pause(args.big))
        results["pause_no_freeze"] = uvloop.run(loop_pause(args.big, freeze=False))
        results["hot_path"] = hot_path()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    shutil.which("true")
    main()

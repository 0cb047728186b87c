"""In-process cost of the WAL per message: core_bench's cycle (parse, publish_many,
dispatch with push encoding, the acks as a consumer session applies them: ack_codes and
ack_keys) with and without the WAL listener, no sockets.

    python -m benchmarks.wal_bench [N] [BATCH]      # BATCH messages per loop iteration

Prints the loop thread's CPU µs per message for both and the difference (one ADD and
one UPDATE record encoded, framed and written with ``fsync no``; the flush is timed on
its own; the WAL thread's block reservations are not counted, as in the broker, nor is
making the consumer's ack payloads, the client's work). Wall
clocks on a shared machine move by tens of percent; for a step's before/after count
instructions instead, e.g. ``valgrind --tool=callgrind python -m benchmarks.wal_bench
20000 500 --once wal`` minus the same with ``memory`` (docs/performance.md, Session 4).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kapokmq.config import Config
from kapokmq.core.broker import Broker
from kapokmq.model import ClientInfo, Message, code_text, encode_pushes
from kapokmq.protocol import parse_send_frame
from kapokmq.server.session import ack_codes
from kapokmq.storage.layout import DataDir
from kapokmq.storage.manager import WalListener
from kapokmq.storage.wal import WalWriter


def run(n: int, with_wal: bool, batch: int) -> tuple[float, float]:
    """(loop-thread CPU µs per message for the whole cycle, of which the WAL's writes)."""
    loop = asyncio.new_event_loop()
    broker = Broker(Config(), time.time, on_dirty=lambda: None)
    where = Path(tempfile.mkdtemp(prefix="kapokmq-wal-bench-"))
    datadir = DataDir(where, "MQDATA")
    datadir.open()
    executor = ThreadPoolExecutor(1)
    wal = WalWriter(loop, datadir, 1, "no", executor) if with_wal else None
    if wal is not None:
        broker.add_listener(WalListener(wal, broker))
    pushed: list[Message] = []

    def deliver(msgs: list[Message]) -> None:  # as a consumer session's deliver does
        b"".join(encode_pushes(msgs))
        pushed.extend(msgs)

    session = broker.attach_consumer(ClientInfo("c", "bench", "", 0), deliver)
    frames = [
        b'{"MessageData":"' + f"{i:010d}".encode() + b"x" * 90 + b'","DelayTime":0}'
        for i in range(n)
    ]
    gc.collect()
    writing = client = 0.0
    started = time.thread_time()
    for start in range(0, n, batch):
        broker.publish_many("bench", [parse_send_frame(f) for f in frames[start : start + batch]])
        broker.dispatch()
        before = time.thread_time()
        acks = [code_text(msg.code).encode() for msg in pushed]  # what the consumer sends
        client += time.thread_time() - before
        broker.ack_keys(session, *ack_codes(acks))
        pushed.clear()
        if wal is not None:  # what the loop's flush callback does once per iteration
            before = time.thread_time()
            wal.flush()
            writing += time.thread_time() - before
        loop.call_soon(loop.stop)  # one loop iteration: the WAL thread's results come in
        loop.run_forever()
    total = time.thread_time() - started - client
    if wal is not None:
        loop.run_until_complete(wal.close())
    datadir.close()
    executor.shutdown()
    loop.close()
    shutil.rmtree(where)
    return total / n * 1e6, writing / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=200_000)
    parser.add_argument("batch", nargs="?", type=int, default=500)
    parser.add_argument("--once", choices=["memory", "wal"], help="one run, no output")
    args = parser.parse_args()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if args.once:
        run(args.n, args.once == "wal", args.batch)
        return
    memory = sorted(run(args.n, False, args.batch)[0] for _ in range(3))[1]
    wal_runs = sorted(run(args.n, True, args.batch) for _ in range(3))
    total, writing = wal_runs[1]
    print(
        f"batch {args.batch}: memory only {memory:.2f} us/msg, with the WAL {total:.2f} "
        f"(+{total - memory:.2f}; the flush, encoding and writing, {writing:.2f}); medians of 3"
    )


if __name__ == "__main__":
    main()

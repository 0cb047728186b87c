"""What the disk under a directory does for the WAL's options, without a broker.

    python -m benchmarks.disk_probe [DIR]      # DIR defaults to the working directory

1. fdatasync after each 200 KB write (one group commit's worth), for a file that grows
   by appending (what the WAL does), one preallocated with ``posix_fallocate`` (written
   at offsets) and one filled with zeros beforehand: how much of an fdatasync is the
   metadata (size, block allocation) that preallocation would save.
2. The cost of a 50 KB write (one loop iteration's records) while another thread runs
   fdatasync every second (``everysec``) or never: how long the event loop would stall.
3. The WAL's fdatasync request (``storage.files.LoopSync``, io_uring and Linux AIO) from
   a thread that is busy on its CPU, as the event loop is under ``fsync always``: when
   its end is seen (the thread looks every 1.5 ms) and how long the thread waited for
   its CPU meanwhile.

docs/performance.md "Tried and rejected" has this machine's figures.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

MiB = 1 << 20


def _append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


def _fallocated(path: Path) -> int:
    fd = _append(path)
    os.posix_fallocate(fd, 0, 64 * MiB)
    os.fdatasync(fd)
    return fd


def _zeroed(path: Path) -> int:
    fd = _append(path)
    zeros = bytes(MiB)
    for _ in range(64):
        os.write(fd, zeros)
    os.fdatasync(fd)
    return fd


def _ms(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] * 1e3


def sync_latency(where: Path, name: str, prepare: Callable[[Path], int], n: int = 200) -> str:
    path = where / f"kapokmq-probe-{name}"
    fd = prepare(path)
    chunk = b"x" * 200_000
    took = []
    try:
        for i in range(n):
            os.pwrite(fd, chunk, i * len(chunk))
            started = time.perf_counter()
            os.fdatasync(fd)
            took.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return f"fdatasync, {name}: p50 {_ms(took, 0.5):.2f} ms, p90 {_ms(took, 0.9):.2f} ms"


def write_stalls(where: Path, every: float | None, seconds: float = 3.0) -> str:
    path = where / "kapokmq-probe-stalls"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    done = threading.Event()

    def syncer() -> None:
        while every is not None and not done.wait(every):
            os.fdatasync(fd)

    thread = threading.Thread(target=syncer)
    thread.start()
    took = []
    chunk = b"y" * 50_000
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            started = time.perf_counter()
            os.write(fd, chunk)
            took.append(time.perf_counter() - started)
            time.sleep(0.0003)
    finally:
        done.set()
        thread.join()
        os.close(fd)
        path.unlink()
    mean = sum(took) / len(took) * 1e6
    slow = sum(t > 0.001 for t in took)
    label = f"fdatasync every {every:g} s" if every is not None else "no fdatasync"
    return (
        f"50 KB write, {label}: mean {mean:.0f} us, p99 {_ms(took, 0.99) * 1e3:.0f} us, "
        f"max {max(took) * 1e3:.1f} ms, {slow} of {len(took)} over 1 ms"
    )


def busy_sync(where: Path, uring: bool, seconds: float = 1.0) -> str:
    from kapokmq.storage.files import LoopSync

    try:
        syncer = LoopSync(uring)
    except Exception as exc:
        return f"LoopSync({'io_uring' if uring else 'Linux AIO'}): not here ({exc})"
    kind = "io_uring" if syncer.uring else "Linux AIO"
    path = where / "kapokmq-probe-busy"
    fd = _append(path)
    schedstat = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
    chunk = b"z" * 100_000
    took: list[float] = []
    started: float | None = None
    waited = int(schedstat.read_text().split()[1])
    end = time.perf_counter() + seconds
    try:
        while (now := time.perf_counter()) < end:
            while time.perf_counter() < now + 0.0015:  # the loop's work between flushes
                pass
            if started is None:
                os.write(fd, chunk)
                syncer.submit(fd)
                started = time.perf_counter()
            elif syncer.results():
                took.append(time.perf_counter() - started)
                started = None
    finally:
        waited = int(schedstat.read_text().split()[1]) - waited
        syncer.close()
        os.close(fd)
        path.unlink()
    return (
        f"fdatasync request from a busy thread, {kind}: {len(took)} in {seconds:g} s, end "
        f"seen p50 {_ms(took, 0.5):.2f} ms, p90 {_ms(took, 0.9):.2f} ms; the thread waited "
        f"for its CPU {waited / 1e9 / seconds:.1%} of the time"
    )


def main() -> None:
    where = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for _ in range(2):  # twice: the first round warms the file system up
        for name, prepare in (
            ("appended", _append),
            ("posix_fallocate", _fallocated),
            ("zero-filled", _zeroed),
        ):
            print(sync_latency(where, name, prepare), flush=True)
    for every in (None, 1.0, None, 1.0):
        print(write_stalls(where, every), flush=True)
    for uring in (True, False, True, False):
        print(busy_sync(where, uring), flush=True)


if __name__ == "__main__":
    main()

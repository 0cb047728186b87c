"""The data directory: file names, listing, locking and directory fsync.

Files are named after ``mq.persistentFile`` (default ``MQDATA``) inside ``mq.dataDir``::

    MQDATA.lock                  held (flock) by the running broker
    MQDATA.000000000007.snap     snapshot: the state when WAL segment 7 was started
    MQDATA.000000000007.wal      WAL segment 7: every change after that point
    MQDATA.000000000008.snap.tmp a snapshot being written (deleted at start-up)

Recovery loads the newest snapshot N and replays the WAL segments numbered N and up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


class StorageError(RuntimeError):
    """Storage cannot start or go on; the message says what to do."""


@dataclass
class Listing:
    snapshots: dict[int, Path] = field(default_factory=dict)
    wals: dict[int, Path] = field(default_factory=dict)
    temps: list[Path] = field(default_factory=list)

    @property
    def max_seq(self) -> int:
        return max([0, *self.snapshots, *self.wals])


class DataDir:
    def __init__(self, path: Path, stem: str) -> None:
        self.path = path
        self.stem = Path(stem).name or "MQDATA"
        self._pattern = re.compile(re.escape(self.stem) + r"\.(\d{12})\.(snap|wal)(\.tmp)?$")
        self._lock_fd: int | None = None

    def snapshot_path(self, seq: int) -> Path:
        return self.path / f"{self.stem}.{seq:012d}.snap"

    def wal_path(self, seq: int) -> Path:
        return self.path / f"{self.stem}.{seq:012d}.wal"

    def temp_path(self, seq: int) -> Path:
        return self.path / f"{self.stem}.{seq:012d}.snap.tmp"

    def open(self) -> None:
        """Create the directory if needed and take its lock (one broker per directory)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create data directory {self.path}: {exc}") from None
        lock = self.path / f"{self.stem}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageError(
                f"data directory {self.path} is in use by another broker ({lock} is locked)"
            ) from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def list(self) -> Listing:
        listing = Listing()
        for entry in os.scandir(self.path):
            m = self._pattern.match(entry.name)
            if m is None:
                continue
            seq = int(m.group(1))
            if m.group(3):
                listing.temps.append(Path(entry.path))
            elif m.group(2) == "snap":
                listing.snapshots[seq] = Path(entry.path)
            else:
                listing.wals[seq] = Path(entry.path)
        return listing

    def remove_before(self, seq: int) -> int:
        """Delete snapshots and WAL segments older than ``seq``; returns how many."""
        removed = 0
        listing = self.list()
        for old, path in [*listing.snapshots.items(), *listing.wals.items()]:
            if old < seq:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        if removed:
            self.fsync()
        return removed

    def fsync(self) -> None:
        fsync_dir(self.path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def datasync(fd: int) -> None:
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS
        os.fsync(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

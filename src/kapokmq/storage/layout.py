"""The data directory: file names, listing, locking and directory fsync.

Files are named after ``mq.persistentFile`` (default ``MQDATA``) inside ``mq.dataDir``::

    MQDATA.lock                  held (flock) by the running broker
    MQDATA.000000000007.snap     snapshot: the state when WAL segment 7 was started
    MQDATA.000000000007.wal      WAL segment 7: every change after that point
    MQDATA.000000000008.snap.tmp a snapshot being written (deleted at start-up)
    MQDATA.000000000007.wal.corrupt-20260102T030405Z  a damaged file, kept by
                                 --recover-skip-corrupt before it was skipped

Recovery loads the newest snapshot N and replays the WAL segments numbered N and up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from kapokmq.storage.files import REAL, FileOps


def _locked(fd: int) -> int:
    """``fd`` with an exclusive flock taken (BlockingIOError if another broker has it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


class StorageError(RuntimeError):
    """Storage cannot start or go on; the message says what to do."""


def unavailable(reason: str) -> str:
    """What producers are told (after ``error: ``) while storage fails (docs/protocol.md)."""
    return f"storage unavailable: {reason}"


@dataclass
class Listing:
    snapshots: dict[int, Path] = field(default_factory=dict)
    wals: dict[int, Path] = field(default_factory=dict)
    temps: list[Path] = field(default_factory=list)

    @property
    def max_seq(self) -> int:
        return max([0, *self.snapshots, *self.wals])


class DataDir:
    def __init__(self, path: Path, stem: str, files: FileOps = REAL) -> None:
        self.path = path
        self.files = files
        self.stem = Path(stem).name or "MQDATA"
        self._pattern = re.compile(re.escape(self.stem) + r"\.(\d{12})\.(snap|wal)(\.tmp)?$")
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None

    def snapshot_path(self, seq: int) -> Path:
        return self.path / f"{self.stem}.{seq:012d}.snap"

    def wal_path(self, seq: int) -> Path:
        return self.path / f"{self.stem}.{seq:012d}.wal"

    def temp_path(self, seq: int) -> Path:
        return self.path / f"{self.stem}.{seq:012d}.snap.tmp"

    def open(self) -> None:
        """Create the directory if needed and take its lock (one broker per directory).

        The lock is an flock on the directory itself and on ``MQDATA.lock`` (what earlier
        builds lock). On a read-only file system the lock file cannot be created: the
        directory's lock is enough, and the broker starts refusing writes until the file
        system is writable again (docs/durability.md "When the disk fails")."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create data directory {self.path}: {exc}") from None
        try:
            self._dir_fd = _locked(os.open(self.path, os.O_RDONLY | os.O_DIRECTORY))
            self._lock_fd = self.lock_file()
        except BlockingIOError:
            self.close()
            raise StorageError(
                f"data directory {self.path} is in use by another broker "
                f"({self.path / (self.stem + '.lock')} is locked)"
            ) from None
        except OSError as exc:
            self.close()
            raise StorageError(f"cannot open {self.path}: {exc.strerror or exc}") from None

    @property
    def read_only(self) -> bool:
        """Opened on a read-only file system (no lock file could be created yet)."""
        return self._dir_fd is not None and self._lock_fd is None

    def lock_file(self) -> int | None:
        """Lock ``MQDATA.lock`` (None on a read-only file system: try again later)."""
        if self._lock_fd is not None:
            return self._lock_fd
        lock = self.path / f"{self.stem}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno == errno.EROFS:
                return None
            raise OSError(exc.errno, f"{lock}: {exc.strerror}") from None
        self._lock_fd = _locked(fd)
        return fd

    def close(self) -> None:
        for fd in (self._lock_fd, self._dir_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._dir_fd = None

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
        self.files.fsync_dir(self.path)

    def keep_damaged(self, path: Path) -> Path:
        """Copy a damaged file aside (``<name>.corrupt-<UTC time>``) before recovery skips
        or rewrites any of it; the copy is never read by the broker."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        copy = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while copy.exists():
            n += 1
            copy = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        try:
            shutil.copyfile(path, copy)
            self.fsync()
        except OSError as exc:
            with contextlib.suppress(OSError):
                copy.unlink()
            raise StorageError(
                f"cannot keep a copy of the damaged file {path.name} ({exc}); nothing was "
                "changed. Free some space in the data directory and start again"
            ) from None
        return copy

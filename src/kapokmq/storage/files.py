"""Every system call storage makes to change its files, in one place.

The WAL writer, the snapshot writer and the data directory go through a ``FileOps``, so
the unit tests can substitute one that fails with EIO on a chosen call (write, fsync,
rename), which a full tmpfs cannot produce (tests/storage/test_faults.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Buffer = bytes | bytearray | memoryview

IOV_MAX = 512  # iovecs per writev call, well under every platform's limit
FALLOC_FL_KEEP_SIZE = 1  # linux/falloc.h


def _fallocate() -> Callable[[int, int, int, int], int] | None:
    """glibc's fallocate(2) (the GIL is released during the call), or None where there
    is none: os.posix_fallocate cannot keep the file's size."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).fallocate64
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    call.restype = ctypes.c_int
    return call


_FALLOCATE = _fallocate()


class FileOps:
    def create(self, path: Path, exclusive: bool = False) -> int:
        """A file opened for writing: new (``exclusive``) and appending, or truncated."""
        flags = os.O_WRONLY | os.O_CREAT
        flags |= os.O_EXCL | os.O_APPEND if exclusive else os.O_TRUNC
        return os.open(path, flags, 0o644)

    def write(self, fd: int, parts: Sequence[Buffer]) -> None:
        """Write all of ``parts`` (raises, with the file possibly extended, if it cannot)."""
        if len(parts) > IOV_MAX:
            for start in range(0, len(parts), IOV_MAX):
                self.write(fd, parts[start : start + IOV_MAX])
            return
        n = os.writev(fd, parts)  # the WAL's hot path: one call, nothing else, normally
        if n != sum(map(len, parts)):
            rest = memoryview(b"".join(parts))[n:]
            while rest:
                written = os.write(fd, rest)
                if written == 0:  # pragma: no cover - a regular file never does this
                    raise OSError(errno.EIO, "write made no progress")
                rest = rest[written:]

    def reserve(self, fd: int, offset: int, length: int) -> None:
        """Allocate disk blocks for ``length`` bytes from ``offset`` without changing the
        file's size (``FALLOC_FL_KEEP_SIZE``), so later appends there need no block
        allocation: a WAL append costs the writing thread about a third less CPU
        (docs/performance.md, "Session 5: WAL"). Nothing happens where fallocate(2) is
        missing; raises OSError (ENOSPC, EOPNOTSUPP, ...) if it fails."""
        if _FALLOCATE is not None and _FALLOCATE(fd, FALLOC_FL_KEEP_SIZE, offset, length):
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def datasync(self, fd: int) -> None:
        if hasattr(os, "fdatasync"):
            os.fdatasync(fd)
        else:  # pragma: no cover - macOS
            os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


REAL = FileOps()


def describe(exc: BaseException) -> str:
    """A short reason for the operator: "No space left on device", not a traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

"""Every system call storage makes to change its files, in one place.

The WAL writer, the snapshot writer and the data directory go through a ``FileOps``, so
the unit tests can substitute one that fails with EIO on a chosen call (write, fsync,
rename), which a full tmpfs cannot produce (tests/storage/test_faults.py).

``LoopSync`` is the WAL's fdatasync without a thread: submitted from the event loop as a
Linux AIO request, run by the kernel, its end signalled on an eventfd the loop watches.
A thread's fdatasync needs the GIL back from the busy loop twice per call (to start and
to report), which cost 1-2 ms of each group commit under ``fsync always``
(docs/performance.md "Session 7: WAL").
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
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

# Linux AIO system calls (io_setup, io_destroy, io_getevents, io_submit) by machine: glibc
# has no wrappers for them (libaio has, but is not always installed)
_AIO_CALLS = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
IOCB_CMD_FDSYNC = 3  # linux/aio_abi.h
IOCB_FLAG_RESFD = 1  # signal aio_resfd (an eventfd) when the request is done


class _Iocb(ctypes.Structure):
    """struct iocb (linux/aio_abi.h, little-endian field order)."""

    _fields_ = (
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    )


class _IoEvent(ctypes.Structure):
    _fields_ = (
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    )


class LoopSync:
    """fdatasync requests the event loop submits and reaps without blocking: the kernel
    runs each in a worker (IOCB_CMD_FDSYNC, the same vfs_fsync as fdatasync(2)) and
    counts it done on ``fileno()``, an eventfd to watch for reading. One request at a
    time (the WAL's group commit has one fsync running)."""

    DEPTH = 4

    def __init__(self, calls: tuple[int, int, int, int]) -> None:
        self._setup, self._destroy, self._getevents, self._submit = calls
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = syscall = libc.syscall
        syscall.restype = ctypes.c_long
        ctx = ctypes.c_ulong(0)
        if syscall(self._setup, ctypes.c_uint(self.DEPTH), ctypes.byref(ctx)) < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self._ctx = ctx
        try:
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            syscall(self._destroy, ctx)
            raise
        self._iocb = iocb = _Iocb()
        iocb.aio_lio_opcode = IOCB_CMD_FDSYNC
        iocb.aio_flags = IOCB_FLAG_RESFD
        iocb.aio_resfd = self._efd
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(iocb))
        self._events = (_IoEvent * self.DEPTH)()
        self._one = ctypes.c_long(1)
        self._none = ctypes.c_long(0)
        self._max = ctypes.c_long(self.DEPTH)

    @classmethod
    def open(cls) -> LoopSync | None:
        """One, or None where there is no Linux AIO (another system or machine, a kernel
        without it, its request limit fs.aio-max-nr reached): then fsync in a thread."""
        calls = _AIO_CALLS.get(platform.machine()) if sys.platform == "linux" else None
        if calls is None or not hasattr(os, "eventfd"):
            return None
        try:
            return cls(calls)
        except (OSError, AttributeError):
            return None

    def fileno(self) -> int:
        return self._efd

    def submit(self, fd: int) -> None:
        """Start an fdatasync of ``fd``; OSError if the kernel refuses the request (a
        file system without fsync: EINVAL), in which case nothing was started."""
        self._iocb.aio_fildes = fd
        if self._syscall(self._submit, self._ctx, self._one, self._iocbs) != 1:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def results(self) -> list[int]:
        """The requests done since the last call, oldest first: 0, or minus the errno
        fdatasync(2) would have raised (EIO, ENOSPC, ...)."""
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return []
        events = self._events
        n = self._syscall(self._getevents, self._ctx, self._none, self._max, events, None)
        if n < 0:  # pragma: no cover - only with a bad context
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return [events[i].res for i in range(n)]

    def close(self) -> None:
        """Free the context (waits for a request still running) and the eventfd."""
        self._syscall(self._destroy, self._ctx)
        os.close(self._efd)


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

    def loop_sync(self) -> LoopSync | None:
        """What the WAL's fdatasync runs on instead of its thread (None: the thread).
        A file layer that replaces ``datasync`` (the tests' fault layers) keeps getting
        its ``datasync`` called, in the thread, unless it replaces this too."""
        if type(self).datasync is not FileOps.datasync:
            return None
        return LoopSync.open()

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

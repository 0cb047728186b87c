"""Every system call storage makes to change its files, in one place.

The WAL writer, the snapshot writer and the data directory go through a ``FileOps``, so
the unit tests can substitute one that fails with EIO on a chosen call (write, fsync,
rename), which a full tmpfs cannot produce (tests/storage/test_faults.py).

``LoopSync`` is the WAL's fdatasync without a thread: submitted from the event loop as an
io_uring request (through caio; Linux AIO where io_uring is refused), run by the kernel,
its end signalled on an eventfd the loop watches.
A thread's fdatasync needs the GIL back from the busy loop twice per call (to start and
to report), which cost 1-2 ms of each group commit under ``fsync always``
(docs/performance.md "Session 7: WAL"). io_uring first: it runs the fdatasync in a worker
the scheduler may put on another CPU, where Linux AIO queues it to the submitting CPU's
kworker, which waits for the busy loop to give up that CPU (docs/performance.md
"Session 9: WAL").
"""

from __future__ import annotations

import contextlib
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

try:  # Linux only (pyproject.toml)
    from caio import linux_aio

    _HAS_AIO = True
except ImportError:  # pragma: no cover - another system, or a kernel without AIO
    _HAS_AIO = False
try:
    from caio import linux_uring

    _HAS_URING = True
except ImportError:  # pragma: no cover - another system, or a caio without it
    _HAS_URING = False


class LoopSync:
    """fdatasync requests the event loop submits and reaps without blocking, through caio's
    io_uring context (or its Linux AIO context): the kernel runs each in a worker
    (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC, IOCB_CMD_FDSYNC: the same vfs_fsync as
    fdatasync(2)) and counts it done on ``fileno()``, an eventfd to watch for reading. One
    request at a time (the WAL's group commit has one fsync running)."""

    DEPTH = 4

    def __init__(self, uring: bool = True) -> None:
        if not _HAS_AIO:
            raise OSError(errno.ENOSYS, "caio's Linux AIO is not available")
        self.uring = uring and _HAS_URING
        self._context: linux_aio.Context | linux_uring.Context | None
        self._operation: type[linux_aio.Operation] | type[linux_uring.Operation]
        if self.uring:
            self._context, self._operation = linux_uring.Context(self.DEPTH), linux_uring.Operation
        else:
            self._context, self._operation = linux_aio.Context(self.DEPTH), linux_aio.Operation
        self._done: list[int] = []
        self._running = 0

    @classmethod
    def open(cls) -> LoopSync | None:
        """One, or None where there is neither io_uring nor Linux AIO (another system, caio
        not installed, a kernel or a seccomp filter without them, the AIO request limit
        fs.aio-max-nr reached): then fsync in a thread."""
        for uring in (True, False):
            try:
                return cls(uring)
            except Exception:  # caio raises SystemError/RuntimeError for a refused setup
                continue
        return None

    def fileno(self) -> int:
        assert self._context is not None, "closed"
        return self._context.fileno

    def submit(self, fd: int) -> None:
        """Start an fdatasync of ``fd``; OSError if the kernel refuses the request (Linux
        AIO: a bad descriptor, a file system without fsync: EINVAL), in which case nothing
        was started. io_uring refuses nothing here: such a request ends with the error."""
        context = self._context
        assert context is not None, "closed"
        operation = self._operation.fdsync(fd)
        operation.set_callback(self._finished)
        try:
            accepted = context.submit(operation)
            if accepted == 1 and self.uring and isinstance(context, linux_uring.Context):
                context.flush()  # io_uring_enter (what ends inline is in results() too)
        except Exception as exc:  # caio maps io_submit's errno to ValueError & co.
            raise OSError(errno.EINVAL, f"AIO fdatasync refused: {exc}") from exc
        if accepted != 1:
            raise OSError(errno.EAGAIN, "AIO fdatasync not submitted")
        self._running += 1

    def _finished(self, result: int) -> None:
        # caio passes io_event.res as an unsigned 64-bit number: a failure is -errno
        self._running -= 1
        self._done.append(result - (1 << 64) if result >= 1 << 63 else result)

    def results(self) -> list[int]:
        """The requests done since the last call, oldest first: 0, or minus the errno
        fdatasync(2) would have raised (EIO, ENOSPC, ...). Never waits, so it may be
        called whether or not ``fileno()`` is readable (two system calls when nothing
        has ended)."""
        context = self._context
        if context is None:
            return []
        # reset the eventfd's count first (a request that ends later signals it again);
        # BlockingIOError: reaped at an earlier call
        with contextlib.suppress(BlockingIOError):
            context.poll()
        while context.process_events():
            pass
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Wait for a request still running (its operation holds the context), then free
        the context and its eventfd (caio does both when the context is released)."""
        context, self._context = self._context, None
        if context is not None and self._running > 0:
            context.process_events(self.DEPTH, self._running, 10)


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

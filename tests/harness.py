"""Start a real `kapokmq serve` process on 127.0.0.1 and talk to it.

The process inherits the environment, so ``KAPOKMQ_SERVER_WSENGINE=aiohttp pytest
tests/compat tests/interop`` runs the black-box suites on the other WebSocket engine (as
scripts/test.sh does after the default run); a test's own ``server.wsEngine`` setting wins.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

_children: set[subprocess.Popen[bytes]] = set()  # started and not yet waited for
_reaper_installed = False


def reap_on_sigterm(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` if this (pytest) process is sent SIGTERM before it is stopped.

    A killed test run cannot reach its fixtures' cleanup, so the brokers of the test in
    progress would outlive it (and keep their ports and data directories)."""
    global _reaper_installed
    _children.add(proc)
    if _reaper_installed or threading.current_thread() is not threading.main_thread():
        return
    _reaper_installed = True
    previous = signal.getsignal(signal.SIGTERM)

    def reap(signum: int, frame: FrameType | None) -> None:
        for child in list(_children):
            with contextlib.suppress(OSError):
                child.kill()
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:  # die of SIGTERM as before, with the children gone
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, reap)


LISTENING = re.compile(r"listening on https?://[^:]+:(\d+)")
SECRET = "test"


@dataclass
class BrokerProcess:
    """A broker subprocess; ``settings`` are passed as ``--set section.key=value``."""

    SUBCOMMAND = "serve"  # `kapokmq registry` takes the same flags (tests/cluster)
    # Starting is CPU-bound (~1 s of imports on an idle core): 20 tests starting brokers at
    # once on 2 shared cores took over 15 s (the old bound, which failed them all); the
    # test's own pytest timeout bounds it anyway.
    START_TIMEOUT = 45.0

    settings: dict[str, object] = field(default_factory=dict)
    extra_args: Sequence[str] = ()
    cwd: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    addr: str = "127.0.0.1"

    @property
    def http(self) -> str:
        return f"http://{self.addr}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.addr}:{self.port}"

    def launcher(self) -> list[str]:
        """What the broker's command line is run under (tests/netns: a namespace)."""
        return []

    def start(self, timeout: float | None = None) -> BrokerProcess:
        args = [*self.launcher(), sys.executable, "-m", "kapokmq", self.SUBCOMMAND]
        args += ["--addr", self.addr, "--port", str(self.port)]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        args += list(self.extra_args)
        fd, name = tempfile.mkstemp(prefix="kapokmq-", suffix=".log")
        self.log_path = Path(name)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(args, stdout=fd, stderr=fd, cwd=self.cwd, env=env)
        reap_on_sigterm(self.proc)
        os.close(fd)
        timeout = timeout or self.START_TIMEOUT
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log())
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"broker did not start within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if self.log_path is None:
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _children.discard(self.proc)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> BrokerProcess:
        """Stop and start again on the same port."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


@contextlib.contextmanager
def running_broker(**settings: object) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(settings={k.replace("__", "."): v for k, v in settings.items()})
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()

"""Helpers for gossip tests: free ports, bounded polling, external oracles."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from kapokmq.gossip import GossipConfig, Memberlist

GONODE_SRC = Path(__file__).parent / "gonode" / "main.go"
GO_PATH = "/usr/share/gocode"
MEMBERLIST_SRC = Path(GO_PATH) / "src/github.com/hashicorp/memberlist"


def free_port() -> int:
    """A port number currently free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with ExitStack() as stack:
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
    return time.monotonic() - start


async def holds(predicate: Callable[[], bool], duration: float, step: float = 0.05) -> None:
    """Assert ``predicate`` stays true for ``duration`` seconds (an invariant, not a sleep)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        assert predicate(), "invariant broken"
        await asyncio.sleep(step)


def py_config(name: str, **overrides: object) -> GossipConfig:
    settings: dict[str, object] = {"bind_addr": "127.0.0.1", "bind_port": 0} | overrides
    return GossipConfig.lan(name, **settings)


async def start_node(name: str, **overrides: object) -> Memberlist:
    node = Memberlist(py_config(name, **overrides))
    await node.start()
    return node


def names(node: Memberlist) -> set[str]:
    return {m.name for m in node.members()}


# ------------------------------------------------------------------ serf


def serf_binary() -> str | None:
    return shutil.which("serf")


class SerfAgent:
    """A Debian ``serf agent`` subprocess bound to loopback."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.rpc_port = free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the agent
            prefix=f"serf-{name}-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, join: str | None = None, encrypt: str | None = None) -> None:
        binary = serf_binary()
        assert binary is not None
        cmd = [
            binary,
            "agent",
            f"-node={self.name}",
            f"-bind=127.0.0.1:{self.port}",
            f"-rpc-addr=127.0.0.1:{self.rpc_port}",
            "-log-level=debug",
        ]
        if join:
            cmd.append(f"-join={join}")
        if encrypt:
            cmd.append(f"-encrypt={encrypt}")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def members(self) -> dict[str, str]:
        """name → status as reported by ``serf members``; {} if the RPC isn't up."""
        binary = serf_binary()
        assert binary is not None
        out = subprocess.run(
            [binary, "members", f"-rpc-addr=127.0.0.1:{self.rpc_port}", "-format=json"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode != 0:
            return {}
        return {m["name"]: m["status"] for m in json.loads(out.stdout)["members"]}

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
        os.unlink(self.log.name)


# ------------------------------------------------------------------ Go memberlist node


def go_available() -> str | None:
    """Why the Go oracle can't run, or None if it can."""
    if shutil.which("go") is None:
        return "Go toolchain (golang-go) not installed"
    if not MEMBERLIST_SRC.is_dir():
        return "golang-github-hashicorp-memberlist-dev not installed"
    return None


def build_gonode() -> Path:
    """Build tests/gossip/gonode offline against Debian's memberlist, cached by source hash."""
    digest = hashlib.sha256(GONODE_SRC.read_bytes()).hexdigest()[:16]
    out_dir = Path(tempfile.gettempdir()) / f"kapokmq-gonode-{digest}"
    binary = out_dir / "gonode"
    if binary.exists():
        return binary
    build_dir = Path(tempfile.mkdtemp(prefix="gonode-build-"))
    shutil.copy(GONODE_SRC, build_dir / "main.go")
    env = os.environ | {
        "GO111MODULE": "off",
        "GOPATH": GO_PATH,
        "GOCACHE": str(Path(tempfile.gettempdir()) / "kapokmq-gocache"),
    }
    tmp_binary = build_dir / "gonode"
    subprocess.run(
        ["go", "build", "-o", str(tmp_binary), "."],
        cwd=build_dir,
        env=env,
        check=True,
        capture_output=True,
        timeout=170,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_binary, binary)
    shutil.rmtree(build_dir, ignore_errors=True)
    return binary


class GoNode:
    """A memberlist 0.2.2 Go node named like a KapokMQ broker (``mq:127.0.0.1:PORT``)."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.name = f"mq:127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._latest: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the node
        self._final_log = ""

    async def start(self, join: str | None = None, keys: str | None = None) -> None:
        cmd = [str(self.binary), f"-port={self.port}", "-v"]
        if join:
            cmd.append(f"-join={join}")
        if keys:
            cmd.append(f"-keys={keys}")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr)
        loop = asyncio.get_running_loop()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        async def read() -> None:
            while True:
                line = await loop.run_in_executor(None, stdout.readline)
                if not line:
                    return
                self._latest = [m["name"] for m in json.loads(line) or []]

        self._reader = asyncio.create_task(read())

    def members(self) -> set[str]:
        return set(self._latest)

    async def exit_code(self, timeout: float) -> int:
        """Wait for the process to end by itself (e.g. a failed join is fatal)."""
        assert self.proc is not None
        proc = self.proc
        return await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)

    def log_text(self) -> str:
        """The node's memberlist log (stderr), also available after stop()."""
        if self.stderr.closed:
            return self._final_log
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        if not self.stderr.closed:
            self._final_log = self.log_text()
            self.stderr.close()

"""Two network namespaces joined by a veth pair, for real partitions (tests run as root).

Every name and address is private to one test: namespaces ``kmq<pid>-<n>a/b``, addresses
10.213.<n>.1/2 exist only inside them. ``cut()`` and ``heal()`` set the link down and up;
``close()`` deletes both namespaces (and with them the veth pair) whatever happened.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import BrokerProcess

_counter = itertools.count(1)


def netns_unavailable() -> str | None:
    """Why the namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Pair:
    """Namespaces ``a`` and ``b``, addresses ``addr_a`` and ``addr_b`` on one veth link."""

    a: str = ""
    b: str = ""
    addr_a: str = ""
    addr_b: str = ""
    created: list[str] = field(default_factory=list)

    def open(self) -> Pair:
        n = next(_counter) + (os.getpid() % 200) * 10
        subnet = f"10.213.{n % 250}"
        self.a, self.b = f"kmq{os.getpid()}-{n}a", f"kmq{os.getpid()}-{n}b"
        self.addr_a, self.addr_b = f"{subnet}.1", f"{subnet}.2"
        for ns in (self.a, self.b):
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip(
            "link",
            "add",
            "kmqva",
            "netns",
            self.a,
            "type",
            "veth",
            "peer",
            "name",
            "kmqvb",
            "netns",
            self.b,
        )
        for ns, dev, addr in ((self.a, "kmqva", self.addr_a), (self.b, "kmqvb", self.addr_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        return self

    def cut(self) -> None:
        _ip("-n", self.a, "link", "set", "kmqva", "down")
        _ip("-n", self.b, "link", "set", "kmqvb", "down")

    def heal(self) -> None:
        _ip("-n", self.a, "link", "set", "kmqva", "up")
        _ip("-n", self.b, "link", "set", "kmqvb", "up")

    def close(self) -> None:
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.created.clear()


@dataclass
class NsBroker(BrokerProcess):
    """``kapokmq serve`` (or ``registry``: set ``SUBCOMMAND``) inside namespace ``ns``, on
    ``addr``."""

    ns: str = ""

    def launcher(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def client(self, *command: str, timeout: float = 60.0) -> list[str]:
        """Run tests/netns/client.py inside this broker's namespace; its output lines."""
        args = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "tests.netns.client"]
        args += [f"http://{self.addr}:{self.port}", *command]
        out = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parents[2]
        )
        if out.returncode != 0:
            raise RuntimeError(f"client {command} failed: {out.stderr[-2000:]}")
        return out.stdout.split()

    def client_process(self, *command: str) -> subprocess.Popen[str]:
        """tests/netns/client.py in the background, in this broker's namespace."""
        args = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "tests.netns.client"]
        args += [f"http://{self.addr}:{self.port}", *command]
        return subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )


@dataclass
class Star:
    """Namespaces ``n1..nK`` on one bridge (in its own namespace); ``cut(i)`` takes node i
    off the bridge, ``heal(i)`` puts it back. Addresses 10.214.<n>.<i>."""

    size: int
    hub: str = ""
    names: list[str] = field(default_factory=list)
    addrs: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def open(self) -> Star:
        n = next(_counter) + (os.getpid() % 200) * 10
        prefix = f"kmq{os.getpid()}-{n}"
        self.hub = f"{prefix}h"
        _ip("netns", "add", self.hub)
        self.created.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i in range(1, self.size + 1):
            ns, addr = f"{prefix}n{i}", f"10.214.{n % 250}.{i}"
            _ip("netns", "add", ns)
            self.created.append(ns)
            self.names.append(ns)
            self.addrs.append(addr)
            _ip("-n", ns, "link", "set", "lo", "up")
            port = f"kmqp{i}"
            _ip(
                "link",
                "add",
                port,
                "netns",
                self.hub,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            _ip("-n", self.hub, "link", "set", port, "master", "br0")
            _ip("-n", self.hub, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        return self

    def cut(self, i: int) -> None:
        _ip("-n", self.hub, "link", "set", f"kmqp{i}", "down")

    def heal(self, i: int) -> None:
        _ip("-n", self.hub, "link", "set", f"kmqp{i}", "up")

    def close(self) -> None:
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.created.clear()

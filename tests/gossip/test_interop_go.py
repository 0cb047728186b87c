"""Interop with a plain memberlist 0.2.2 Go node configured like a KapokMQ broker."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kapokmq.gossip import JoinError, Memberlist, NodeStatus
from kapokmq.gossip.crypto import Keyring
from tests.gossip.util import (
    GoNode,
    build_gonode,
    go_available,
    holds,
    names,
    start_node,
    wait_until,
)

_reason = go_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def gonode_binary() -> Path:
    return build_gonode()


@pytest.fixture
async def py() -> AsyncIterator[Memberlist]:
    node = await start_node("mq:127.0.0.1:py")  # KapokMQ style: (0,0,0) delegate, no meta
    try:
        yield node
    finally:
        await node.shutdown()


async def go_node(binary: Path, join: str | None = None) -> GoNode:
    node = GoNode(binary)
    await node.start(join=join)
    return node


@pytest.mark.timeout(180)  # first run compiles the Go node (~10 s, then cached)
async def test_go_node_joins_python_node(gonode_binary: Path, py: Memberlist) -> None:
    g = await go_node(gonode_binary, join=f"127.0.0.1:{py.port}")
    try:
        start = time.monotonic()
        await wait_until(lambda: g.members() == {g.name, py.name}, 10)
        await wait_until(lambda: names(py) == {g.name, py.name}, 10)
        print(f"Go node joined Python node; both converged in {time.monotonic() - start:.3f}s")
        member = next(m for m in py.members() if m.name == g.name)
        assert (member.addr, member.port) == ("127.0.0.1", g.port)
        assert member.protocol == (1, 5, 2) and member.delegate == (0, 0, 0)
        # A graceful leave: Go records it as left and drops it from Members() at once.
        assert await py.leave(5) is True
        await wait_until(lambda: g.members() == {g.name}, 3)
    finally:
        await g.stop()
    log = g.log_text()
    assert "[ERR]" not in log, log[-3000:]


@pytest.mark.timeout(60)
async def test_python_joins_go_seed_and_third_node_via_python(
    gonode_binary: Path, py: Memberlist
) -> None:
    seed = await go_node(gonode_binary)
    other: GoNode | None = None
    try:
        await wait_until(lambda: seed.members() == {seed.name}, 10)
        start = time.monotonic()
        assert await py.join([("127.0.0.1", seed.port)]) == 1
        await wait_until(lambda: seed.members() == {seed.name, py.name}, 10)
        print(f"Go seed lists the Python node {time.monotonic() - start:.3f}s after join")
        # A second Go node joins through the Python node (Python answers the push/pull).
        second = other = await go_node(gonode_binary, join=f"127.0.0.1:{py.port}")
        everyone = {seed.name, second.name, py.name}
        await wait_until(lambda: seed.members() == everyone == second.members(), 10)
        await wait_until(lambda: names(py) == everyone, 10)
        # Stay a few probe rounds: Go must keep getting our acks.
        await asyncio.sleep(3)  # deliberately let time pass; nothing to await
        assert seed.members() == everyone == second.members()
        # Kill the Python node: both Go nodes must drop it.
        await py.shutdown()
        killed = time.monotonic()
        await wait_until(
            lambda: py.name not in seed.members() | second.members(),
            15,
        )
        print(f"Go nodes dropped the killed Python node after {time.monotonic() - killed:.2f}s")
        # Restart it under the same name and port (a restarted broker): the Go nodes
        # still hold it as dead with the old incarnation, so it must refute to reappear.
        reborn = await start_node(py.name, bind_port=py.port)
        try:
            restarted = time.monotonic()
            await reborn.join([("127.0.0.1", seed.port)])
            await wait_until(lambda: seed.members() == everyone == second.members(), 5)
            took = time.monotonic() - restarted
            print(f"restarted Python node listed again by both Go nodes after {took:.3f}s")
            assert names(reborn) == everyone
        finally:
            await reborn.shutdown()
    finally:
        await seed.stop()
        if other is not None:
            await other.stop()
    for g in (seed, other):
        assert g is not None and "[ERR]" not in g.log_text(), g.log_text()[-3000:]


@pytest.mark.timeout(60)
async def test_python_detects_killed_go_node(gonode_binary: Path, py: Memberlist) -> None:
    g = await go_node(gonode_binary, join=f"127.0.0.1:{py.port}")
    try:
        await wait_until(lambda: names(py) == {g.name, py.name}, 10)
    finally:
        await g.stop()
    took = await wait_until(lambda: names(py) == {py.name}, 15)
    states = {m.name: m.state for m in py.all_nodes()}
    assert states[g.name] == NodeStatus.DEAD
    print(f"Python node marked the killed Go node dead after {took:.2f}s")


# ------------------------------------------------------------------ encryption

KEY_A = base64.b64encode(bytes(range(16))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()  # AES-256


async def keyed_py(keys: str | None) -> Memberlist:
    return await start_node("mq:127.0.0.1:py", keyring=Keyring.parse(keys) if keys else None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("py_keys", "go_keys"),
    [(KEY_A, KEY_A), (KEY_B, KEY_B), (f"{KEY_B},{KEY_A}", f"{KEY_A},{KEY_B}")],
    ids=["aes128", "aes256", "rotation"],
)
async def test_go_node_with_key_joins_encrypted_python(
    gonode_binary: Path, py_keys: str, go_keys: str
) -> None:
    """Rotation: each side's primary is the other's secondary (the middle of a rollout)."""
    py = await keyed_py(py_keys)
    g = GoNode(gonode_binary)
    try:
        await g.start(join=f"127.0.0.1:{py.port}", keys=go_keys)
        both = {g.name, py.name}
        await wait_until(lambda: g.members() == both == names(py), 10)
        # Encrypted probes both ways for a few rounds: nobody is suspected.
        await holds(lambda: g.members() == both == names(py), 3)
        assert py.stats.packets_unencrypted == 0
    finally:
        await g.stop()
        await py.shutdown()
    assert "[ERR]" not in g.log_text(), g.log_text()[-3000:]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("py_keys", "go_keys", "go_error"),
    [
        (KEY_A, None, "Remote state is encrypted and encryption is not configured"),
        (None, KEY_A, "Encryption is configured but remote state is not encrypted"),
        (KEY_A, KEY_B, "No installed keys could decrypt the message"),
    ],
    ids=["go-without-key", "python-without-key", "different-keys"],
)
async def test_go_node_join_fails_without_the_key(
    gonode_binary: Path, py_keys: str | None, go_keys: str | None, go_error: str
) -> None:
    py = await keyed_py(py_keys)
    g = GoNode(gonode_binary)
    try:
        await g.start(join=f"127.0.0.1:{py.port}", keys=go_keys)
        assert await g.exit_code(15) != 0  # the gonode treats a failed join as fatal
        assert go_error in g.log_text(), g.log_text()[-3000:]
        assert names(py) == {py.name}
        assert py.stats.streams_refused >= (1 if py_keys else 0)
    finally:
        await g.stop()
        await py.shutdown()


@pytest.mark.timeout(60)
async def test_python_joins_encrypted_go_seed(gonode_binary: Path) -> None:
    seed = GoNode(gonode_binary)
    await seed.start(keys=KEY_A)
    py = await keyed_py(KEY_A)
    intruder = await keyed_py(None)
    try:
        await wait_until(lambda: seed.members() == {seed.name}, 10)
        with pytest.raises(JoinError, match="encrypted"):
            await intruder.join([("127.0.0.1", seed.port)])
        assert await py.join([("127.0.0.1", seed.port)]) == 1
        await wait_until(lambda: seed.members() == {seed.name, py.name} == names(py), 10)
        await holds(lambda: seed.members() == {seed.name, py.name}, 2)
    finally:
        await intruder.shutdown()
        await py.shutdown()
        await seed.stop()
    log_text = seed.log_text()
    # Only the intruder's plaintext join may have been refused.
    errors = [line for line in log_text.splitlines() if "[ERR]" in line]
    assert all("not encrypted" in line for line in errors), log_text[-3000:]

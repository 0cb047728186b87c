"""Interop with Debian's serf agent (memberlist 0.2.2 inside) on loopback."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable

import pytest

from kapokmq.gossip import SERF_DELEGATE_VERSIONS, JoinError, Memberlist, decode_tags, encode_tags
from kapokmq.gossip.crypto import Keyring
from tests.gossip.util import SerfAgent, names, serf_binary, start_node, wait_until

pytestmark = pytest.mark.skipif(
    serf_binary() is None, reason="serf binary not installed (scripts/install-system-deps.sh)"
)

TAGS = {"role": "kapokmq", "impl": "python"}
# serf/memberlist log lines that would mean it could not read what we sent.
PROTOCOL_ERRORS = (
    "Failed to decode",
    "not supported",
    "Invalid msgType",
    "checksum",
    "Conflicting",
)


async def serf_members(agent: SerfAgent) -> dict[str, str]:
    return await asyncio.to_thread(agent.members)


async def wait_serf(
    agent: SerfAgent, check: Callable[[dict[str, str]], bool], timeout: float
) -> float:
    """Poll ``serf members`` off the event loop (our node must keep answering pings)."""
    start = time.monotonic()
    while not check(await serf_members(agent)):
        if time.monotonic() - start > timeout:
            raise AssertionError(
                f"serf condition not met in {timeout}s; members={await serf_members(agent)}\n"
                + agent.log_text()[-3000:]
            )
        await asyncio.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture
async def serf() -> AsyncIterator[SerfAgent]:
    agent = SerfAgent("s1")
    agent.start()
    try:
        await wait_serf(agent, lambda m: m.get("s1") == "alive", 10)
        yield agent
        log_text = agent.log_text()
        assert not [e for e in PROTOCOL_ERRORS if e in log_text], log_text[-3000:]
    finally:
        agent.stop()


async def serf_py_node(name: str) -> Memberlist:
    return await start_node(name, delegate_versions=SERF_DELEGATE_VERSIONS, meta=encode_tags(TAGS))


@pytest.mark.timeout(40)
async def test_python_joins_serf_then_killed_is_failed(serf: SerfAgent) -> None:
    node = await serf_py_node("py1")
    try:
        start = time.monotonic()
        assert await node.join([("127.0.0.1", serf.port)]) == 1
        await wait_serf(serf, lambda m: m.get("py1") == "alive", 10)
        print(f"serf sees py1 alive {time.monotonic() - start:.3f}s after join started")
        assert names(node) == {"py1", "s1"}
        s1 = next(m for m in node.members() if m.name == "s1")
        assert s1.delegate == (2, 5, 5) and decode_tags(s1.meta) == {}
        # Stay a few probe rounds to prove we answer serf's pings.
        await asyncio.sleep(2.5)
        assert (await serf_members(serf))["py1"] == "alive"
    finally:
        await node.shutdown()
    took = await wait_serf(serf, lambda m: m.get("py1") == "failed", 15)
    print(f"serf marked killed py1 failed after {took:.2f}s")


@pytest.mark.timeout(30)
async def test_serf_joins_through_python_node(serf: SerfAgent) -> None:
    node = await serf_py_node("py1")
    s2 = SerfAgent("s2")
    try:
        s2.start(join=f"127.0.0.1:{node.port}")
        await wait_until(lambda: names(node) == {"py1", "s2"}, 10)
        await wait_serf(s2, lambda m: m.get("py1") == "alive", 10)
        # Now link the clusters: py1 joins s1; everybody must see everybody.
        await node.join([("127.0.0.1", serf.port)])
        await wait_until(lambda: names(node) == {"py1", "s1", "s2"}, 10)
        for agent in (serf, s2):
            await wait_serf(
                agent, lambda m: all(m.get(n) == "alive" for n in ("py1", "s1", "s2")), 10
            )
    finally:
        await node.shutdown()
        s2.stop()


@pytest.mark.timeout(20)
async def test_plain_delegate_versions_are_refused_by_verify_protocol(serf: SerfAgent) -> None:
    node = await start_node("py-plain")  # (0, 0, 0) like KapokMQ nodes: serf is incompatible
    try:
        with pytest.raises(JoinError, match="delegate protocol version"):
            await node.join([("127.0.0.1", serf.port)])
    finally:
        await node.shutdown()


# ------------------------------------------------------------------ encryption

SERF_KEY = base64.b64encode(bytes(range(16))).decode()


@pytest.fixture
async def serf_encrypted() -> AsyncIterator[SerfAgent]:
    agent = SerfAgent("s1")
    agent.start(encrypt=SERF_KEY)
    try:
        await wait_serf(agent, lambda m: m.get("s1") == "alive", 10)
        yield agent
    finally:
        agent.stop()


@pytest.mark.timeout(30)
async def test_encrypted_serf_second_oracle(serf_encrypted: SerfAgent) -> None:
    """A KapokMQ node with the key gets past decryption to the delegate-version refusal;
    without the key (or with another) it is refused at decryption, by both sides."""
    keyed = await start_node("mq:127.0.0.1:k", keyring=Keyring.parse(SERF_KEY))
    plain = await start_node("mq:127.0.0.1:p")
    wrong = await start_node("mq:127.0.0.1:w", keyring=Keyring([bytes(16)]))
    seed = [("127.0.0.1", serf_encrypted.port)]
    try:
        with pytest.raises(JoinError, match="delegate protocol version"):
            await keyed.join(seed)
        with pytest.raises(JoinError, match="Remote state is encrypted"):
            await plain.join(seed)
        with pytest.raises(JoinError, match="No installed keys could decrypt"):
            await wrong.join(seed)
    finally:
        for node in (keyed, plain, wrong):
            await node.shutdown()
    log_text = serf_encrypted.log_text()
    assert "Encryption is configured but remote state is not encrypted" in log_text
    assert "No installed keys could decrypt the message" in log_text


@pytest.mark.timeout(40)
async def test_serf_node_with_key_gossips_encrypted(serf_encrypted: SerfAgent) -> None:
    """With serf's delegate triple the encrypted join completes and probes keep it alive."""
    node = await start_node(
        "py1",
        delegate_versions=SERF_DELEGATE_VERSIONS,
        meta=encode_tags(TAGS),
        keyring=Keyring.parse(SERF_KEY),
    )
    try:
        assert await node.join([("127.0.0.1", serf_encrypted.port)]) == 1
        await wait_serf(serf_encrypted, lambda m: m.get("py1") == "alive", 10)
        await asyncio.sleep(2.5)  # a few of serf's probe rounds over encrypted UDP
        assert (await serf_members(serf_encrypted))["py1"] == "alive"
        assert node.stats.packets_unencrypted == 0
    finally:
        await node.shutdown()
    log_text = serf_encrypted.log_text()
    assert not [e for e in (*PROTOCOL_ERRORS, "Decrypt packet failed") if e in log_text], log_text[
        -3000:
    ]


@pytest.mark.timeout(40)
@pytest.mark.parametrize(
    ("serf_key", "failure"),
    [
        (SERF_KEY, "delegate protocol version (0) is incompatible"),
        (None, "Remote state is encrypted and encryption is not configured"),
    ],
    ids=["serf-with-key", "serf-without-key"],
)
async def test_serf_joining_an_encrypted_kapokmq_node(serf_key: str | None, failure: str) -> None:
    """serf with the key gets past decryption to the delegate-version refusal; serf without
    it is refused at decryption (serf's join failure is fatal: the agent exits)."""
    node = await start_node("mq:127.0.0.1:k", keyring=Keyring.parse(SERF_KEY))
    agent = SerfAgent("s9")
    try:
        agent.start(join=f"127.0.0.1:{node.port}", encrypt=serf_key)
        assert agent.proc is not None
        proc = agent.proc
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 20) != 0
        log_text = agent.log_text()
        assert "Failed to join 127.0.0.1" in log_text and failure in log_text, log_text
        assert names(node) == {node.name}
        assert node.stats.streams_refused == (0 if serf_key else 1)
    finally:
        agent.stop()
        await node.shutdown()

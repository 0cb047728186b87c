"""Gossip encryption: memberlist's keyring format, and Python nodes with keys."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from kapokmq.gossip import JoinError, Memberlist, NodeStatus
from kapokmq.gossip.codec import Ack, Ping, encode, unpack, unwrap_packet
from kapokmq.gossip.crypto import SLICE_BYTES, DecryptError, Keyring, encrypted_length
from tests.gossip.util import holds, names, start_node, wait_until

K16, K24, K32 = bytes(range(16)), bytes(range(24)), bytes(range(32, 64))


def b64(*keys: bytes) -> str:
    return ",".join(base64.b64encode(k).decode() for k in keys)


@pytest.mark.parametrize("key", [K16, K24, K32])
@pytest.mark.parametrize("vsn", [0, 1])
def test_round_trip_both_versions(key: bytes, vsn: int) -> None:
    ring = Keyring([key])
    for msg in (b"", b"x", bytes(15), bytes(16), bytes(1000)):
        payload = ring.encrypt(vsn, msg)
        assert payload[0] == vsn and len(payload) == encrypted_length(vsn, len(msg))
        assert ring.decrypt(payload) == msg
        with pytest.raises(DecryptError):
            ring.decrypt(payload[:-1] + bytes((payload[-1] ^ 1,)))


def test_stream_header_is_authenticated() -> None:
    ring = Keyring([K16])
    sealed = ring.seal_stream(1, b"\x06hello")
    assert sealed[0] == 10 and int.from_bytes(sealed[1:5], "big") == len(sealed) - 5
    assert ring.decrypt(sealed[5:], sealed[:5]) == b"\x06hello"
    with pytest.raises(DecryptError):
        ring.decrypt(sealed[5:], b"\x0a\x00\x00\x00\x00")


def test_rotation_secondary_keys_decrypt_primary_encrypts() -> None:
    old, new = Keyring([K16]), Keyring([K32, K16])
    assert new.decrypt(old.encrypt(1, b"from old")) == b"from old"
    with pytest.raises(DecryptError, match="No installed keys"):
        old.decrypt(new.encrypt(1, b"from new"))
    assert Keyring([K16, K32]).decrypt(new.encrypt(1, b"from new")) == b"from new"


@pytest.mark.parametrize("vsn", [0, 1])
def test_a_big_stream_payload_is_decrypted_in_slices_by_every_key(vsn: int) -> None:
    """docs/gossip.md, Bounded work: 20 MiB in one AES-GCM call held the loop ~35 ms per
    key; in slices each step handles at most SLICE_BYTES, with the same answers."""
    msg = bytes(range(256)) * (3 * SLICE_BYTES // 256 + 7)
    header = b"\x0a\x00\x00\x00\x00"
    payload = Keyring([K24]).encrypt(vsn, msg, header)
    ring = Keyring([K16, K32, K24])  # the sender's key is the ring's last
    decryption = ring.decryption(payload, header)
    steps = 1
    while (plain := decryption.step()) is None:
        steps += 1
    assert plain == msg == ring.decrypt(payload, header)
    assert steps >= 3 * 4  # every key tried in four slices or more
    for bad in (Keyring([K16]).decryption(payload, header), ring.decryption(payload, b"x")):
        with pytest.raises(DecryptError, match="No installed keys"):
            while bad.step() is None:
                pass
    tampered = payload[:-1] + bytes((payload[-1] ^ 1,))
    broken = ring.decryption(tampered, header)
    with pytest.raises(DecryptError):
        while broken.step() is None:
            pass


async def test_a_big_encrypted_stream_yields_to_the_loop() -> None:
    """A wrongly keyed 8 MiB stream is read, refused, and the loop ran between slices."""
    from kapokmq.gossip.stream import StreamPolicy, read_stream

    payload = Keyring([K32]).seal_stream(1, bytes(8 * SLICE_BYTES))
    reader = asyncio.StreamReader()
    reader.feed_data(payload)
    reader.feed_eof()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(DecryptError):
            await read_stream(reader, 30.0, StreamPolicy(keyring=Keyring([K16])))
    finally:
        ticker.cancel()
    assert ticks >= 8


def test_parse_and_validation() -> None:
    ring = Keyring.parse(f" {b64(K32)} , {b64(K16)} ")
    assert ring is not None and ring.keys == (K32, K16)
    assert Keyring.parse("") is None and Keyring.parse(" , ") is None
    with pytest.raises(ValueError, match="16, 24 or 32"):
        Keyring.parse(b64(bytes(10)))
    with pytest.raises(ValueError, match="not valid base64"):
        Keyring.parse("not base64!")


# ------------------------------------------------------------------ Python nodes


async def keyed(name: str, *keys: bytes, **overrides: object) -> Memberlist:
    return await start_node(name, keyring=Keyring(keys) if keys else None, **overrides)


@pytest.fixture
async def secure() -> AsyncIterator[Memberlist]:
    node = await keyed("mq:127.0.0.1:1", K16)
    try:
        yield node
    finally:
        await node.shutdown()


@pytest.mark.timeout(20)
async def test_keyed_nodes_join_and_probe(secure: Memberlist) -> None:
    other = await keyed("mq:127.0.0.1:2", K16, K32)  # rotating: new key installed
    try:
        assert await other.join([("127.0.0.1", secure.port)]) == 1
        both = {secure.name, other.name}
        await wait_until(lambda: names(secure) == both == names(other), 5)
        # A few probe rounds over encrypted UDP: nobody becomes suspect.
        await holds(lambda: all(m.state == NodeStatus.ALIVE for m in secure.members()), 2.5)
        assert secure.stats.packets_unencrypted == other.stats.packets_unencrypted == 0
    finally:
        await other.shutdown()


@pytest.mark.timeout(20)
async def test_keyless_or_wrong_key_node_is_refused(
    secure: Memberlist, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kapokmq.gossip")
    for keys in ((), (K24,)):
        intruder = await keyed("mq:127.0.0.1:66", *keys)
        try:
            with pytest.raises(JoinError):
                await intruder.join([("127.0.0.1", secure.port)])
            assert names(secure) == {secure.name}
        finally:
            await intruder.shutdown()
    assert secure.stats.streams_refused >= 2

    # the operator sees why, in one line however many were refused (a key mismatch)
    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "gossip input refused" in r.getMessage()]

    await wait_until(lambda: any("streams_refused" in line for line in lines()), 12)
    assert len(lines()) <= 2  # (stray packets of an earlier test's node may come first)
    assert "(from 127.0.0.1:" in lines()[-1]


@pytest.mark.timeout(10)
async def test_plaintext_ping_gets_no_answer(secure: Memberlist) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        target = ("127.0.0.1", secure.port)
        plain = encode(Ping(1, secure.name))
        sock.sendto(plain, target)
        # Then an encrypted ping: UDP is handled in order, so once its ack is back, an
        # answer to the plaintext ping would have arrived first.
        ring = Keyring([K16])
        sock.sendto(ring.encrypt(1, encode(Ping(2, secure.name))), target)
        async with asyncio.timeout(5):
            reply = await loop.sock_recv(sock, 65536)
        messages = unwrap_packet(ring.decrypt(reply))
        acks = [unpack(Ack, m[1:]) for m in messages if m[0] == 2]
        assert [a.seq_no for a in acks] == [2]
        assert secure.stats.packets_unencrypted == 1
    finally:
        sock.close()


@pytest.mark.timeout(20)
async def test_upshift_verify_incoming_off_accepts_plaintext() -> None:
    """GossipVerifyIncoming false: plaintext is still read (upshifting a live cluster)."""
    lenient = await keyed("mq:127.0.0.1:3", K16, gossip_verify_incoming=False)
    plain = await keyed("mq:127.0.0.1:4", gossip_verify_incoming=False)
    try:
        # lenient sends encrypted (verify_outgoing on): plain cannot read its reply.
        with pytest.raises(JoinError):
            await plain.join([("127.0.0.1", lenient.port)])
        silent = await keyed("mq:127.0.0.1:5", K16, gossip_verify_outgoing=False)
        try:
            # keyed but sending plaintext: the lenient node reads it, and answers encrypted.
            assert await silent.join([("127.0.0.1", lenient.port)]) == 1
            await wait_until(lambda: silent.name in names(lenient), 5)
        finally:
            await silent.shutdown()
    finally:
        await lenient.shutdown()
        await plain.shutdown()

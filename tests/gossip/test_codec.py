"""Codec: go-msgpack golden vectors from memberlist-protocol.md, framing layers."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kapokmq.gossip import codec, lzw
from kapokmq.gossip.codec import (
    Ack,
    Alive,
    Body,
    CodecError,
    Compress,
    Dead,
    ErrResp,
    IndirectPing,
    MsgType,
    Nack,
    Ping,
    PushNodeState,
    PushPullHeader,
    Suspect,
    UserMsgHeader,
)
from kapokmq.gossip.stream import PushPull, StreamPolicy, UserStream, encode_stream, read_stream

LO = bytes([127, 0, 0, 1])
V_PLAIN = bytes([1, 5, 2, 0, 0, 0])
V_SERF = bytes([1, 5, 2, 2, 5, 5])

GOLDEN: list[tuple[Body, str]] = [
    (Ping(7, "py1"), "82a44e6f6465a3707931a55365714e6f07"),
    (
        Ping(300, "py1", LO, 7946, "s1"),
        "85a44e6f6465a3707931a55365714e6fcd012caa536f7572636541646472a47f000001"
        "aa536f757263654e6f6465a27331aa536f75726365506f7274cd1f0a",
    ),
    (
        IndirectPing(70000, LO, 7947, "py1", True, LO, 7946, "s1"),
        "88a44e61636bc3a44e6f6465a3707931a4506f7274cd1f0ba55365714e6fce00011170"
        "aa536f7572636541646472a47f000001aa536f757263654e6f6465a27331"
        "aa536f75726365506f7274cd1f0aa6546172676574a47f000001",
    ),
    (Ack(5, None), "82a75061796c6f6164c0a55365714e6f05"),
    (Ack(5, b""), "82a75061796c6f6164a0a55365714e6f05"),
    (Nack(9), "81a55365714e6f09"),
    (ErrResp("boom"), "81a54572726f72a4626f6f6d"),
    (Suspect(3, "py1", "s1"), "83a446726f6da27331ab496e6361726e6174696f6e03a44e6f6465a3707931"),
    (
        Alive(1, "py1", LO, 7947, None, V_PLAIN),
        "86a441646472a47f000001ab496e6361726e6174696f6e01a44d657461c0a44e6f6465a3707931"
        "a4506f7274cd1f0ba356736ea6010502000000",
    ),
    (Dead(2, "py1", "py1"), "83a446726f6da3707931ab496e6361726e6174696f6e02a44e6f6465a3707931"),
    (PushPullHeader(2, 0, True), "83a44a6f696ec3a54e6f64657302ac5573657253746174654c656e00"),
    (
        PushPullHeader(200, 70000, False),
        "83a44a6f696ec2a54e6f646573ccc8ac5573657253746174654c656ece00011170",
    ),
    (UserMsgHeader(12), "81aa557365724d73674c656e0c"),
    (
        PushNodeState("s1", LO, 7946, None, 1, 0, V_SERF),
        "87a441646472a47f000001ab496e6361726e6174696f6e01a44d657461c0a44e616d65a27331"
        "a4506f7274cd1f0aa5537461746500a356736ea6010502020505",
    ),
    (
        PushNodeState("s2", LO, 7948, b"", 130, 3, V_PLAIN),
        "87a441646472a47f000001ab496e6361726e6174696f6ecc82a44d657461a0a44e616d65a27332"
        "a4506f7274cd1f0ca5537461746503a356736ea6010502000000",
    ),
    (Compress(0, bytes([0, 1, 2])), "82a4416c676f00a3427566a3000102"),
]


@pytest.mark.parametrize(("body", "expected"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_encode_decode(body: Body, expected: str) -> None:
    assert codec.pack(body).hex() == expected
    assert codec.unpack(type(body), bytes.fromhex(expected)) == body


def test_ping_with_type_byte() -> None:
    assert codec.encode(Ping(7, "py1")).hex() == "0082a44e6f6465a3707931a55365714e6f07"


def test_long_name_uses_str16_never_str8() -> None:
    name = "x" * 42
    assert codec.pack(Suspect(1, name, "a")).find(bytes.fromhex("da002a")) > 0


def test_wrong_case_key_is_zero_value() -> None:
    import msgpack

    raw = msgpack.packb({"node": "py1", "SeqNo": 3}, use_bin_type=False)
    assert codec.unpack(Ping, raw) == Ping(3, "")


def test_bytes_are_sent_as_raw_never_bin() -> None:
    # go-msgpack rejects bin for string fields, so nothing may be sent as bin.
    packed = codec.pack(Alive(1, "py1", LO, 7947, b"\xff\x80", V_SERF))
    assert b"\xa2\xff\x80" in packed
    assert b"\xc4" not in packed


def test_vsn_array_accepted() -> None:
    import msgpack

    raw = msgpack.packb(
        {"Incarnation": 1, "Node": "a", "Addr": LO, "Port": 1, "Vsn": [1, 5, 2, 0, 0, 0]},
        use_bin_type=False,
    )
    assert codec.unpack(Alive, raw).vsn == V_PLAIN


def test_compound_round_trip_and_golden_layout() -> None:
    ping = codec.encode(Ping(7, "py1"))
    sus = codec.encode(Suspect(3, "py1", "s1"))
    packet = codec.make_compound([ping, sus])
    assert packet[:6].hex() == "070200120020"
    assert codec.unwrap_packet(packet) == [ping, sus]


def test_truncated_compound_keeps_complete_parts() -> None:
    ping = codec.encode(Ping(7, "py1"))
    packet = codec.make_compound([ping, ping])
    assert codec.unwrap_packet(packet[:-3]) == [ping]


def test_crc_golden_and_mismatch() -> None:
    ping = codec.encode(Ping(7, "py1"))
    wrapped = codec.add_crc(ping)
    assert wrapped[:5].hex() == "0c854e3982"
    assert codec.unwrap_packet(wrapped) == [ping]
    broken = wrapped[:-1] + b"\x08"
    with pytest.raises(CodecError):
        codec.unwrap_packet(broken)


def test_nested_compress_compound_crc_label() -> None:
    ping = codec.encode(Ping(7, "py1"))
    alive = codec.encode(Alive(1, "py1", LO, 7947, None, V_PLAIN))
    nested = codec.make_compound([ping, codec.make_compound([alive])])
    inner = codec.compress_payload(codec.make_compound([nested]))
    packet = bytes([MsgType.HAS_LABEL, 3]) + b"lbl" + codec.add_crc(inner)
    assert codec.unwrap_packet(packet) == [ping, alive]
    assert codec.unwrap_packet(codec.make_compound([ping, codec.compress_payload(alive)])) == [
        ping,
        alive,
    ]


def test_ip_forms() -> None:
    assert codec.ip_from_bytes(LO) == "127.0.0.1"
    mapped = bytes(10) + b"\xff\xff" + LO
    assert codec.ip_from_bytes(mapped) == "127.0.0.1"
    assert codec.ip_to_bytes("127.0.0.1") == LO


async def parse(data: bytes, *, eof: bool = True, policy: StreamPolicy | None = None) -> object:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return await read_stream(reader, 5.0, policy or StreamPolicy())


def parse_stream(data: bytes) -> object:
    return asyncio.run(parse(data))


@pytest.mark.parametrize("compress", [False, True])
async def test_stream_push_pull_incremental(compress: bool) -> None:
    msg = PushPull(
        join=True,
        states=[
            PushNodeState("s1", LO, 7946, b"\xff\x80", 4, 0, V_SERF),
            PushNodeState("s2", LO, 7948, None, 1, 2, V_SERF),
        ],
        user_state=b"\x02serf-user-state",
    )
    data = encode_stream(msg, compress=compress)
    for cut in range(len(data)):
        with pytest.raises((ConnectionError, CodecError)):
            await parse(data[:cut])
    # Complete without EOF: the peer waits for our reply before it closes.
    assert await parse(data, eof=False) == msg


async def test_stream_user_and_ack() -> None:
    data = encode_stream(UserStream(b"hello"), compress=False)
    assert data.hex().startswith("0881aa557365724d73674c656e05")
    assert await parse(data) == UserStream(b"hello")
    assert await parse(encode_stream(Ack(3, None), compress=True)) == Ack(3, None)


async def test_stream_rejects_unknown_type() -> None:
    with pytest.raises(CodecError):
        await parse(b"\x05\x80")


async def test_stream_limits() -> None:
    states = [PushNodeState(f"n{i}", LO, 7946, None, 1, 0, V_PLAIN) for i in range(20)]
    data = encode_stream(PushPull(join=False, states=states), compress=True)
    with pytest.raises(CodecError, match="more than the limit"):
        await parse(data, eof=False, policy=StreamPolicy(max_nodes=19))
    assert await parse(data, eof=False, policy=StreamPolicy(max_nodes=20))
    big = encode_stream(UserStream(bytes(5000)), compress=False)
    with pytest.raises(CodecError, match="larger than the limit"):
        await parse(big, eof=False, policy=StreamPolicy(max_bytes=4096))


async def test_stream_lzw_bomb_is_refused() -> None:
    bomb = codec.encode(Compress(0, lzw.compress(b"\x06" + bytes(4 << 20))))
    with pytest.raises(CodecError, match="larger than"):
        await parse(bomb, eof=False)


def test_packet_lzw_bomb_is_refused() -> None:
    bomb = codec.encode(Compress(0, lzw.compress(bytes(1 << 20))))
    with pytest.raises(CodecError, match="larger than"):
        codec.unwrap_packet(bomb)
    nested = codec.compress_payload(codec.compress_payload(codec.encode(Ping(1, "a"))))
    with pytest.raises(CodecError, match="more than one compressed layer"):
        codec.unwrap_packet(nested)


def test_serf_tags_meta() -> None:
    from kapokmq.gossip import decode_tags, encode_tags

    doc_example = bytes.fromhex("ff82a4726f6c65a76b61706f6b6d71a4696d706ca6707974686f6e")
    assert decode_tags(doc_example) == {"role": "kapokmq", "impl": "python"}
    assert decode_tags(encode_tags({"role": "kapokmq", "impl": "python"})) == decode_tags(
        doc_example
    )
    assert encode_tags({}) == b"\xff\x80"
    assert decode_tags(b"web") == {"role": "web"}
    assert decode_tags(b"") == {}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b"\x81\x90\x00")  # a map whose key is an array: unhashable
def test_garbage_packets_only_raise_codec_error(data: bytes) -> None:
    prefixes = (b"", b"\x06", b"\x07", b"\x08", b"\x09", b"\x0c")
    for candidate in [p + data for p in prefixes] + [codec.add_crc(data)]:
        try:
            for msg in codec.unwrap_packet(candidate):
                body_type = codec.PACKET_BODIES.get(msg[0])
                if body_type is not None:
                    codec.unpack(body_type, msg[1:])
        except CodecError:
            pass
        with contextlib.suppress(CodecError, ConnectionError):
            parse_stream(candidate)

"""The batched push encoder and the code generator match their simple definitions."""

from __future__ import annotations

import itertools
import json
import re
import time

import orjson
import psutil
from hypothesis import given, settings
from hypothesis import strategies as st

from kapokmq.frames import text_frame
from kapokmq.model import (
    HASH_MODULUS,
    RANDOM_BITS,
    SEQUENCE_EPOCH_NS,
    CodeGenerator,
    Message,
    PushBatches,
    Status,
    body_of,
    code_text,
    encode_push,
    encode_pushes,
    json_string,
    new_message,
)
from kapokmq.protocol import (
    Extras,
    FrameError,
    SendItem,
    _loads,
    _parse_decoded,
    parse_send_frame,
    parse_send_frames,
)
from kapokmq.storage.format import clean_text


@given(
    st.lists(
        st.tuples(
            st.text(max_size=300) | st.sampled_from(["x" * 200, "z" * 70_000, "\ud800", "<&>"]),
            st.sampled_from(["bench", "t<ö>", "a\u2028b"]),
            st.integers(0, 2**40),
            st.integers(-(2**63), 2**63 - 1),
        ),
        max_size=20,
    )
)
def test_encode_pushes_is_text_frame_of_encode_push(items: list[tuple[str, str, int, int]]) -> None:
    gen = CodeGenerator()
    msgs = [new_message(gen(), t, d, c, 0, dt, Status.WAITING, 0.0) for d, t, c, dt in items]
    assert encode_pushes(msgs) == [text_frame(encode_push(m)) for m in msgs]


PAYLOADS = [
    "",
    "hello",
    "数据 ✓ é",
    'quotes " and \\ backslashes \\" \\\\',
    "".join(map(chr, range(32))) + "\x7f",  # every control character, and DEL
    "emoji \U0001f600 \u2764\ufe0f",
    "lone \ud800 surrogate \udfff",
    "\ud83d\ude00",  # a surrogate pair as two code points: lone surrogates, each
    "<script>&amp;</script>",
    "line\u2028separators\u2029",
    "x" * 70_000,
]


def _push_from_text(msg: Message, data: str) -> bytes:
    """The push frame as it was built before the payload was stored encoded: the text
    through ``json_string`` at every push (docs/performance.md "Session 7: memory")."""
    return b'{"MessageCode":"%s","MessageData":%s,"Topic":%s,"CreateTime":%d,' % (
        code_text(msg.code).encode(),
        json_string(data),
        json_string(msg.topic),
        msg.create_time,
    ) + b'"ConsumedTime":0,"DelayTime":%d,"Status":-1}\n' % (msg.delay_time,)


@given(st.text(max_size=300) | st.sampled_from(PAYLOADS))
@settings(max_examples=300)
def test_a_push_frame_has_the_bytes_the_text_had(data: str) -> None:
    """The stored ``body`` gives byte for byte the frame the text gave (DESIGN A1), and
    ``data`` reads the text back, lone surrogates as U+FFFD, as consumers are sent it."""
    msg = new_message(CodeGenerator()(), "t<ö>", data, 1_700_000_000, 0, 3, Status.WAITING, 1.7e9)
    frame = _push_from_text(msg, data)
    assert encode_push(msg) == frame
    assert encode_pushes([msg]) == [text_frame(frame)]
    assert msg.data == clean_text(data) == orjson.loads(frame)["MessageData"]


def test_a_stored_body_is_an_exact_size_copy() -> None:
    """orjson's result is over-allocated (~4 KiB kept per 100-byte payload, measured):
    ``body_of`` must keep a copy of the encoded length, not orjson's object."""
    process = psutil.Process()
    payloads = [f"{i:0100d}" for i in range(20_000)]
    before = process.memory_info().rss
    bodies = [body_of(p) for p in payloads]
    grown = process.memory_info().rss - before
    assert bodies[7] == payloads[7].encode()
    assert grown < 1000 * len(bodies), grown / len(bodies)


def test_push_batches_encode_a_list_once_and_a_new_list_afresh() -> None:
    gen = CodeGenerator()
    msgs = [
        new_message(gen(), "t", f"m{i}", 1_700_000_000, 0, 0, Status.WAITING, 0.0) for i in range(3)
    ]
    pushes = PushBatches()
    batch = list(msgs)
    first = pushes.frames(batch)
    assert first == b"".join(text_frame(encode_push(m)) for m in msgs)
    assert pushes.frames(batch) is first  # the same list: the same bytes
    msgs[0].delay_time = 7  # a redelivery rewrites DelayTime; the next dispatch's list is new
    again = pushes.frames(list(msgs))
    assert again == b"".join(text_frame(encode_push(m)) for m in msgs) and again != first


def test_codes_are_unique_random_32_hex_across_draws() -> None:
    gen = CodeGenerator()
    codes = [gen.next_code() for _ in range(10_000)]  # more than one draw from the OS
    assert len(set(codes)) == len(codes)
    assert all(type(c) is int and re.fullmatch("[0-9a-f]{32}", code_text(c)) for c in codes)
    # not a counter: consecutive codes are far apart, and two generators share nothing
    values = [int(code_text(c), 16) for c in codes]
    assert sum(abs(b - a) < 1 << 64 for a, b in itertools.pairwise(values)) < 3
    others = [CodeGenerator() for _ in range(10)]  # each draws 4,096 codes' worth at first
    assert not set(codes).intersection(g.next_code() for g in others for _ in range(1_000))


def _int_codes(gen: CodeGenerator, n: int) -> list[int]:
    codes = [gen.next_code() for _ in range(n)]
    ints = [c for c in codes if type(c) is int]
    assert len(ints) == n
    return ints


def test_codes_hash_in_sequence_from_the_clock_with_67_random_bits() -> None:
    before = time.time_ns() - SEQUENCE_EPOCH_NS
    gen = CodeGenerator()
    after = time.time_ns() - SEQUENCE_EPOCH_NS
    assert before <= gen.start <= after
    codes = _int_codes(gen, 10_000)  # more than one draw from the OS
    # the remainder is the sequence (the hash: in-order table slots), the quotient random
    assert [hash(c) for c in codes] == list(range(gen.start, gen.start + len(codes)))
    assert [c % HASH_MODULUS for c in codes] == [hash(c) for c in codes]
    randoms = [c // HASH_MODULUS for c in codes]
    assert len(set(randoms)) == len(randoms)
    assert max(randoms).bit_length() == RANDOM_BITS  # all 67 bits used (1 - 2**-10000 sure)
    assert all(r < 1 << RANDOM_BITS for r in randoms)
    # the same start (a clock set back) still gives other codes: only their hashes agree
    again = CodeGenerator(gen.start)
    repeated = _int_codes(again, 10_000)
    assert not set(repeated) & set(codes)
    assert [hash(c) for c in repeated] == [hash(c) for c in codes]


def test_a_generator_started_later_starts_above_every_earlier_code() -> None:
    """A restarted broker's codes never meet the recovered ones: its sequence starts at
    the clock, above every sequence number used before (docs/protocol.md)."""
    gen = CodeGenerator()
    codes = _int_codes(gen, 20_000)
    later = CodeGenerator()
    assert max(c % HASH_MODULUS for c in codes) < later.start


@given(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=50),
    st.integers(-(2**63), 2**63 - 1),
)
def test_send_frame_fast_path(data: str, delay: int) -> None:
    raw = json.dumps({"MessageData": data, "DelayTime": delay}).encode()
    assert parse_send_frame(raw) == (data, delay)


def general_path(raw: bytes) -> SendItem | str:
    """parse_send_frame without its fast path: the result, or the FrameError text."""
    try:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _parse_decoded(*_loads(raw))
        return _parse_decoded(obj, False)
    except FrameError as exc:
        return str(exc)


def outcome(raw: bytes) -> SendItem | str:
    try:
        return parse_send_frame(raw)
    except FrameError as exc:
        return str(exc)


_KEYS = st.sampled_from(
    [
        *("MessageData", "DelayTime", "messagedata", "DELAYTIME", "Other"),
        *("TTL", "ttl", "MessageId", "messageId"),  # ours, exact and folded
    ]
)
_VALUES = st.one_of(
    st.text(max_size=5).map(json.dumps),
    st.integers(-(2**64), 2**64).map(str),
    st.sampled_from(['"a"', '"b"', "0", "7"]),  # valid for one of the two fields
    st.sampled_from(['"' + "i" * 128 + '"', '"' + "i" * 129 + '"', '"\\udfff"', "-1"]),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.sampled_from(["null", "true", "[]", "[1]", "{}", '"\\ud800"', "1e400", "-0", "1.0"]),
)


@settings(max_examples=1000)
@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=4), st.booleans())
def test_fast_path_agrees_with_the_general_path(pairs: list[tuple[str, str]], pad: bool) -> None:
    """Any object, duplicate keys included: the msgspec fast path either declines or
    returns exactly what the general (Go-rules) path returns."""
    raw = ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}").encode()
    if pad:
        raw = b" " + raw + b"\n"
    assert outcome(raw) == general_path(raw)


@given(st.lists(st.lists(st.tuples(_KEYS, _VALUES), max_size=3), max_size=6), st.integers(0, 3))
def test_a_read_parses_as_its_frames_one_by_one(
    objects: list[list[tuple[str, str]]], start: int
) -> None:
    """parse_send_frames: the items up to the first bad frame and that frame's error,
    exactly what parse_send_frame gives frame by frame."""
    raws = [
        ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}").encode()
        for pairs in objects
    ]
    items, error = parse_send_frames(raws, start)
    expected = [outcome(raw) for raw in raws[start:]]
    bad = next((i for i, x in enumerate(expected) if isinstance(x, str)), None)
    assert items == expected[:bad]
    assert (error and str(error)) == (None if bad is None else expected[bad])


def test_ttl_and_message_id_follow_the_go_rules() -> None:
    frame = b'{"MessageData":"x","DelayTime":2,"ttl":60,"MESSAGEID":"order-7"}'
    assert parse_send_frame(frame) == ("x", 2, Extras(60, "order-7"))
    assert parse_send_frame(b'{"MessageData":"x","TTL":5}') == ("x", 0, Extras(5, ""))
    assert parse_send_frame(b'{"MessageData":"x","MessageId":"a"}') == ("x", 0, Extras(0, "a"))
    # zero values and null are "none": the plain two-field item
    assert parse_send_frame(b'{"MessageData":"x","TTL":0,"MessageId":""}') == ("x", 0)
    assert parse_send_frame(b'{"MessageData":"x","TTL":null,"MessageId":null}') == ("x", 0)
    assert parse_send_frame(b'{"MessageData":"x","TTL":1,"TTL":0}') == ("x", 0)  # last wins
    # Go's encoding/json folds keys with Unicode simple folding: the long s is an s
    folded = '{"me\u017f\u017fagedata":"x","MESSAGE\u017fID":"a","MessageId":"b","ttl":3}'
    assert parse_send_frame(folded.encode()) == ("x", 0, Extras(3, "b"))
    assert parse_send_frame('{"messageId":"a","me\u017fsageid":"c"}'.encode()) == (
        "",
        0,
        Extras(0, "c"),
    )
    id128 = "é" * 64  # 128 bytes
    assert parse_send_frame(f'{{"MessageId":"{id128}"}}'.encode()) == ("", 0, Extras(0, id128))


def test_bad_ttl_or_message_id_is_an_error() -> None:
    too_long = b'{"MessageId":"' + b"a" * 129 + b'"}'
    for frame, reason in [
        (b'{"MessageData":"x","TTL":-1}', "TTL must be a whole number of seconds >= 0"),
        (b'{"MessageData":"x","TTL":"5"}', "TTL must be"),
        (b'{"MessageData":"x","TTL":1.5}', "TTL must be"),
        (b'{"MessageData":"x","TTL":true}', "TTL must be"),
        (b'{"MessageData":"x","TTL":9223372036854775808}', "TTL is out of the 64-bit"),
        (b'{"MessageData":"x","MessageId":5}', "MessageId must be a string"),
        (too_long, "MessageId is longer than 128 bytes"),
    ]:
        result = outcome(frame)
        assert isinstance(result, str) and result.startswith(reason), (frame, result)

"""docs/protocol.md "Producer session" under fuzzing: every producer frame gets exactly one
reply, in order.

Frames are random bytes, random text, and JSON-ish documents built from raw JSON fragments
(so that big numbers, exponents and lone surrogate escapes appear). For valid JSON the
expected answer follows Go's encoding/json decoding into
``struct{MessageData string; DelayTime int64}``: ``ok`` unless a matching key holds a value
of the wrong type; ``error: ...`` for anything that is not JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.compat.conftest import started_broker
from tests.compat.wsclient import count_all, expect_silence, producer
from tests.harness import BrokerProcess

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# A JSON fragment and its kind: null, bool, int64, bigint, float, str, array, object.
Fragment = tuple[str, str]
# A frame: (is_binary, payload, expected) where expected is True (ok), False (error)
# or None (either is fine, e.g. random bytes).
Frame = tuple[bool, bytes | str, bool | None]


def _string_fragments() -> st.SearchStrategy[str]:
    plain = st.text(max_size=12).map(lambda s: json.dumps(s, ensure_ascii=False))
    escaped = st.text(max_size=12).map(lambda s: json.dumps(s, ensure_ascii=True))
    surrogates = st.sampled_from(
        ['"\\ud800"', '"a\\udc00b"', '"\\ud83d\\ude00"', '"\\ud83dx"', '"\\u0000"', '"\\/"']
    )
    return st.one_of(plain, escaped, surrogates)


SCALARS: st.SearchStrategy[Fragment] = st.one_of(
    st.just(("null", "null")),
    st.sampled_from([("true", "bool"), ("false", "bool")]),
    st.integers(INT64_MIN, INT64_MAX).map(lambda i: (str(i), "int64")),
    st.sampled_from([("-0", "int64"), (str(INT64_MAX), "int64"), (str(INT64_MIN), "int64")]),
    st.integers(INT64_MAX + 1, 1 << 80).map(lambda i: (str(i), "bigint")),
    st.integers(-(1 << 80), INT64_MIN - 1).map(lambda i: (str(i), "bigint")),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: (repr(f), "float")),
    st.sampled_from([("1e400", "float"), ("-1e-400", "float"), ("1E2", "float"), ("1.0", "float")]),
    _string_fragments().map(lambda s: (s, "str")),
)

KEYS = st.one_of(
    st.sampled_from(
        [
            *("MessageData", "messagedata", "MESSAGEDATA", "messageData"),
            *("DelayTime", "delaytime", "DELAYTIME", "delayTime"),
            *("TTL", "ttl", "MessageId", "messageid"),  # ours (docs/protocol.md, TTL, Dedup)
            *("Topic", "MessageCode", "Status", "x", ""),
        ]
    ),
    st.text(alphabet="abcdeilmsgtyADMT_", max_size=11),
)


def _compose(children: st.SearchStrategy[Fragment]) -> st.SearchStrategy[Fragment]:
    arrays = st.lists(children, max_size=4).map(
        lambda items: ("[" + ",".join(text for text, _ in items) + "]", "array")
    )
    objects = st.lists(st.tuples(KEYS, children), max_size=4).map(
        lambda pairs: (
            "{" + ",".join(f"{json.dumps(k)}:{v}" for k, (v, _) in pairs) + "}",
            "object",
        )
    )
    return st.one_of(arrays, objects)


VALUES: st.SearchStrategy[Fragment] = st.recursive(SCALARS, _compose, max_leaves=8)


@st.composite
def json_frames(draw: st.DrawFn) -> Frame:
    """A syntactically valid JSON document and Go's verdict on it."""
    expected: bool | None
    if draw(st.integers(0, 9)) == 0:
        text, kind = draw(VALUES.filter(lambda fragment: fragment[1] != "object"))
        expected = kind == "null"  # top level: only an object or null decodes into a struct
    else:
        pairs = draw(st.lists(st.tuples(KEYS, VALUES), max_size=5))
        text = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, (v, _) in pairs) + "}"
        expected = True
        for key, (value, kind) in pairs:
            if key.lower() == "messagedata" and kind not in ("null", "str"):
                expected = False
            if key.lower() == "delaytime" and kind not in ("null", "int64"):
                expected = False
            # our optional keys: TTL a whole number >= 0, MessageId a string <= 128 bytes
            if key.lower() == "ttl" and not (
                kind == "null" or (kind == "int64" and int(value) >= 0)
            ):
                expected = False
            if key.lower() == "messageid" and kind not in ("null", "str"):
                expected = False
        lowered = [key.lower() for key, _ in pairs]
        if any(
            lowered.count(name) > 1 for name in ("messagedata", "delaytime", "ttl", "messageid")
        ) or any(
            key.lower() == "messageid" and kind == "str" and len(value.encode()) > 128
            for key, (value, kind) in pairs
        ):
            # Go reports a wrong-typed earlier duplicate even if a later one is fine; we
            # keep only the last (see test_producer's xfail). Only "one reply" is checked.
            expected = None
    space = draw(st.sampled_from(["", " ", "\n", "\t\r\n "]))
    text = draw(st.sampled_from(["", " ", "\n"])) + text + space
    if draw(st.booleans()):
        return True, text.encode(), expected
    return False, text, expected


FRAMES: st.SearchStrategy[Frame] = st.one_of(
    json_frames(),
    json_frames(),
    st.binary(max_size=40).map(lambda b: (True, b, None)),
    st.text(max_size=40).map(lambda t: (False, t, None)),
    st.sampled_from(["", " ", "[1,2]", '{"DelayTime":"5"}', "{", '{"MessageData":5}']).map(
        lambda t: (False, t, False)
    ),
)


@pytest.fixture(scope="module")
def mb(tmp_path_factory) -> Iterator[BrokerProcess]:
    # dedup off: a repeated MessageId is answered ok but not stored again, and this test
    # counts what is stored against the oks (docs/protocol.md, Dedup)
    with started_broker(tmp_path_factory.mktemp("fuzz"), {"mq.dedupWindow": 0}) as proc:
        yield proc


async def _exchange(broker: BrokerProcess, frames: list[Frame]) -> None:
    sentinels: list[Frame] = [(False, '{"MessageData":"s"}', True), (False, "x", False)]
    everything = frames + sentinels
    async with aiohttp.ClientSession() as session:
        before = await count_all(session, broker)
        ws = await producer(session, broker, "fuzz")
        for is_binary, payload, _ in everything:  # pipelined, like the Go client
            if is_binary:
                assert isinstance(payload, bytes)
                await ws.send_bytes(payload)
            else:
                assert isinstance(payload, str)
                await ws.send_str(payload)
        oks = 0
        for _, payload, expected in everything:
            reply = await ws.receive(timeout=5)
            assert reply.type is aiohttp.WSMsgType.TEXT, (reply, payload)
            text: str = reply.data
            assert text == "ok" or text.startswith("error:"), (text, payload)
            if expected is not None:
                assert (text == "ok") is expected, (payload, text)
            oks += text == "ok"
        await expect_silence(ws, 0.02)  # exactly one reply per frame
        assert await count_all(session, broker) == before + oks  # errors store nothing
        await ws.close()


# A hang is bounded per reply (receive(timeout=5) in _exchange), so the test's own bound only
# has to cover the run of 100 examples: 15-18 s alone at load 10 (the exchanges about 4 s,
# the rest hypothesis drawing frames), 32 s seen under -n 2, past the compat default of 30 s.
@pytest.mark.timeout(120)
@settings(
    max_examples=100,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain"
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(FRAMES, min_size=1, max_size=12))
def test_every_frame_gets_one_reply_in_order(mb, frames):
    asyncio.run(_exchange(mb, frames))


def test_server_still_up_after_fuzzing(mb):
    async def check() -> None:
        url = f"{mb.http}/Console/Ping"
        async with aiohttp.ClientSession() as s, s.post(url, headers={"secretKey": "test"}) as r:
            assert await r.read() == b'{"code":0}'

    asyncio.run(check())
    assert mb.proc is not None and mb.proc.poll() is None

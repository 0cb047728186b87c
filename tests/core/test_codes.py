"""Message codes inside the broker (``model.code_key``): the wire's 32 lowercase hex digits
are kept as ints, any other code as its string, and either way a code only ever matches
itself, as when every code was a string."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapokmq.frames import text_frame
from kapokmq.model import (
    CodeGenerator,
    Status,
    code_key,
    code_keys,
    code_text,
    encode_push,
    encode_pushes,
    new_message,
)
from tests.core.fakes import attach, make_broker

CANONICAL = "0123456789abcdef0123456789abcdef"
# what int(text, 16) accepts but the wire's codes never are: each stays its own string
NOT_CANONICAL = [
    CANONICAL.upper(),
    "0123456789ABCDEF0123456789abcdef",
    "0x" + CANONICAL[2:],
    "0X" + CANONICAL[2:],
    "0123456789_bcdef0123456789abcdef",
    " 123456789abcdef0123456789abcdef",
    "+123456789abcdef0123456789abcdef",
    "\u0661" + CANONICAL[1:],  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
    CANONICAL[:31],
    CANONICAL + "0",
    "g" * 32,
    "msg-1",
    "",
]


def test_canonical_codes_become_ints_and_spell_back_the_same() -> None:
    assert code_key(CANONICAL) == int(CANONICAL, 16)
    assert code_key("0" * 32) == 0
    assert code_text(code_key("0" * 32)) == "0" * 32
    assert code_text(code_key(CANONICAL)) == CANONICAL
    assert code_key(code_key(CANONICAL)) == code_key(CANONICAL)  # keys pass through


@pytest.mark.parametrize("text", NOT_CANONICAL)
def test_other_codes_stay_strings(text: str) -> None:
    assert code_key(text) == text and type(code_key(text)) is str
    assert code_text(code_key(text)) == text


@given(st.text(max_size=40) | st.from_regex(r"[0-9a-fA-Fx_ ]{32}", fullmatch=True))
def test_code_key_is_a_bijection_onto_what_it_returns(text: str) -> None:
    key = code_key(text)
    assert code_text(key) == text
    assert (type(key) is int) == (len(text) == 32 and all(c in "0123456789abcdef" for c in text))


def test_generated_codes_are_pushed_as_32_lowercase_hex() -> None:
    gen = CodeGenerator()
    msg = new_message(gen(), "t", "x", 1, 0, 0, Status.WAITING, 0.0)
    pushed = json.loads(encode_push(msg))
    assert pushed["MessageCode"] == code_text(msg.code)
    assert len(pushed["MessageCode"]) == 32 and code_key(pushed["MessageCode"]) == msg.code


@pytest.mark.parametrize("code", [*NOT_CANONICAL, "c" * 200])
def test_a_string_code_is_pushed_as_itself_in_a_right_sized_frame(code: str) -> None:
    msg = new_message(code, "t", "x", 1, 0, 0, Status.WAITING, 0.0)
    assert encode_pushes([msg]) == [text_frame(encode_push(msg))]
    assert encode_push(msg).startswith(b'{"MessageCode":"%s",' % code.encode())


def test_an_ack_with_a_non_canonical_spelling_is_unknown() -> None:
    broker, _ = make_broker()
    broker.new_code = iter([code_key(CANONICAL)]).__next__  # with letters to uppercase
    session, recorder = attach(broker)
    msg = broker.publish("t", "x")
    broker.dispatch()
    assert recorder.codes == [msg.code]
    text = code_text(msg.code)
    broker.ack_many(session, [text.upper(), "0x" + text[2:], text + " "])
    stats = broker.topic("t").stats
    assert stats.unknown_acks == 3 and stats.acked == 0
    assert broker.store.count(Status.WAITING) == 1
    broker.ack_many(session, [text])
    assert stats.acked == 1 and broker.store.count(Status.CONSUMED) == 1


@pytest.mark.parametrize("code", [CANONICAL.upper(), "msg-1"])
def test_a_replicated_message_with_a_string_code_is_found_and_acked_by_it_alone(
    code: str,
) -> None:
    broker, _ = make_broker()
    session, recorder = attach(broker)
    broker.replicate(new_message(code_key(code), "t", "x", 1, 0, 0, Status.WAITING, 1.0))
    broker.dispatch()
    assert [code_text(c) for c in recorder.codes] == [code]
    broker.ack(session, code.lower() if code != code.lower() else code + "x")
    assert broker.topic("t").stats.acked == 0
    broker.ack(session, code)
    assert broker.topic("t").stats.acked == 1


@pytest.mark.parametrize(
    "codes",
    [
        [CANONICAL, CANONICAL[::-1]],
        [CANONICAL, *NOT_CANONICAL],
        NOT_CANONICAL,
        [],
        [7, CANONICAL],
        ["0" * 32, "1" * 32],  # no letter at all
        # lengths that add up to 32 each, with whitespace fromhex skips
        [CANONICAL[:16] + " " + CANONICAL[16:], CANONICAL[:15] + " " + CANONICAL[17:]],
        [CANONICAL[:16] + " " + CANONICAL[16:], CANONICAL[:31]],
    ],
)
def test_code_keys_is_code_key_of_each(codes: list[str | int]) -> None:
    assert code_keys(codes) == [code_key(c) for c in codes]
    assert list(map(type, code_keys(codes))) == [type(code_key(c)) for c in codes]


@given(
    st.lists(
        st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
        | st.from_regex(r"[0-9a-fA-F \t_x]{30,34}", fullmatch=True)
        | st.text(max_size=34),
        max_size=6,
    )
)
def test_code_keys_agrees_with_code_key_on_any_batch(codes: list[str]) -> None:
    assert code_keys(codes) == [code_key(c) for c in codes]
    assert list(map(type, code_keys(codes))) == [type(code_key(c)) for c in codes]

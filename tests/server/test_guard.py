"""The key-guess throttle's rule, driven by a fake clock (guard.py)."""

from __future__ import annotations

from kapokmq.guard import KeyGuard, source_of
from tests.core.fakes import FakeClock


def test_twenty_free_wrong_keys_then_one_answer_per_second() -> None:
    clock = FakeClock()
    guard = KeyGuard(clock)
    assert [guard.wrong_key("10.0.0.1") for _ in range(20)] == [0.0] * 20
    # the next ones, all sent at once, are answered 1 s apart
    assert [guard.wrong_key("10.0.0.1") for _ in range(3)] == [0.0, 1.0, 2.0]
    assert guard.wrong_key("10.0.0.2") == 0.0  # another address is not affected
    clock.advance(10)
    assert guard.wrong_key("10.0.0.1") == 0.0  # its slot is long past
    assert guard.wrong_key("10.0.0.1") == 1.0
    assert guard.throttled == 5


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = FakeClock()
    guard = KeyGuard(clock)
    for _ in range(20):
        guard.wrong_key("10.0.0.1")
        clock.advance(3.1)  # 20 failures over 62 s: never 20 within 60 s
    assert guard.wrong_key("10.0.0.1") == 0.0


def test_table_of_addresses_is_bounded() -> None:
    guard = KeyGuard(FakeClock(), max_addresses=100)
    for i in range(1000):
        guard.wrong_key(f"10.0.{i // 256}.{i % 256}")
    assert len(guard) == 100


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert source_of("2001:db8::1") == source_of("2001:db8::ffff") == "2001:db8::/64"
    assert source_of("::ffff:10.0.0.1") == "10.0.0.1"
    assert source_of("10.0.0.1") == "10.0.0.1"
    assert source_of("not an address") == "not an address"


def test_loopback_is_throttled_like_any_address() -> None:
    """Not exempt (docs/protocol.md "Wrong keys"): behind a same-host proxy every client is
    127.0.0.1. The real-process check over HTTP and both engines, from loopback, is
    tests/server/test_overload.py test_key_guessing_is_throttled_per_address."""
    clock = FakeClock()
    guard = KeyGuard(clock)
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "::1"):
        delays = [guard.wrong_key(address) for _ in range(22)]
        assert delays[-1] > 0, address
        guard = KeyGuard(clock)
    assert source_of("::ffff:127.0.0.1") == "127.0.0.1"

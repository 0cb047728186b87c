"""Client behaviour against the in-process fake broker (edge cases a real broker cannot be
made to produce on demand)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kapokmq.client import (
    ApiError,
    AuthenticationError,
    Backoff,
    ClientClosedError,
    ConnectionLostError,
    Consumer,
    Message,
    Producer,
    ProtocolError,
    SendError,
    send_http,
)
from kapokmq.client.connection import base_url, session_url
from kapokmq.client.producer import encode_send
from kapokmq.client.sync import SyncConsumer, SyncProducer
from tests.client.fake_broker import DROP, HOLD, NO_REPLY, TOO_BIG, FakeBroker

FAST = Backoff(initial=0.01, maximum=0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBroker]:
    broker = FakeBroker()
    await broker.start()
    yield broker
    await broker.stop()


def test_urls() -> None:
    assert base_url("127.0.0.1:8011", websocket=True) == "ws://127.0.0.1:8011"
    assert base_url("https://h:1/", websocket=True) == "wss://h:1"
    assert base_url("ws://h:1", websocket=False) == "http://h:1"
    assert session_url("http://h:1", "Producers", "a b", "p/1") == (
        "ws://h:1/Producers/Conn/a%20b/p%2F1"
    )
    with pytest.raises(ValueError, match="scheme"):
        base_url("ftp://h", websocket=True)
    # a bad port is a bad argument, not a network failure ("cannot connect to X: X")
    for bad in ("http://h:notaport", "h:99999"):
        with pytest.raises(ValueError, match=f"bad port: '{bad}'"):
            Producer(bad, "t", "p")
    with pytest.raises(ValueError, match="no host: ''"):
        base_url("", websocket=False)


def test_encode_send() -> None:
    assert encode_send("hi", 3) == b'{"MessageData":"hi","DelayTime":3}'
    assert encode_send(b"\xc3\xa9") == '{"MessageData":"é","DelayTime":0}'.encode()
    assert encode_send("x", 2.0) == b'{"MessageData":"x","DelayTime":2}'  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_send("x", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_send(5)  # type: ignore[arg-type]


def test_backoff_grows_with_jitter() -> None:
    b = Backoff(initial=1, maximum=8, factor=2, max_attempts=3)
    for attempt, ceiling in [(0, 1), (1, 2), (2, 4), (3, 8), (10, 8)]:
        d = b.delay(attempt)
        assert ceiling / 2 <= d <= ceiling
    assert not b.exhausted(2) and b.exhausted(3)


async def test_round_trip(fake: FakeBroker) -> None:
    async with (
        Producer(fake.url, "t", "p1") as producer,
        Consumer(fake.url, "t", "c1") as consumer,
    ):
        await producer.send("hello", delay=0)
        msg = await consumer.receive(timeout=5)
        assert (msg.message_data, msg.topic, msg.status) == ("hello", "t", -1)
        await msg.ack()
        await msg.ack()  # idempotent
        await asyncio.wait_for(_until(lambda: fake.acks == [msg.message_code]), 5)


async def test_error_reply_fails_only_that_message(fake: FakeBroker) -> None:
    fake.reply_hook = lambda frame: "error: bad luck" if '"bad"' in frame else None
    async with Producer(fake.url, "t", "p1") as producer:
        results = await producer.send_many(["a", "bad", "c"], return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], SendError) and results[1].reason == "bad luck"
        with pytest.raises(SendError, match="bad luck"):
            await producer.send("bad")
        await producer.send("after")
    assert [m["MessageData"] for m in fake.messages.values()] == ["a", "c", "after"]


async def test_wrong_key_is_fatal(fake: FakeBroker) -> None:
    with pytest.raises(AuthenticationError):
        async with Producer(fake.url, "t", "p1", "nope"):
            pass
    consumer = Consumer(fake.url, "t", "c1", "nope")
    with pytest.raises(AuthenticationError):
        await consumer.receive(timeout=5)
    await consumer.close()


async def test_connect_refused_is_clear() -> None:
    producer = Producer("http://127.0.0.1:1", "t", "p1", connect_timeout=2)
    with pytest.raises(ConnectionLostError, match="cannot connect"):
        await producer.send("x")
    await producer.close()
    with pytest.raises(ClientClosedError):
        await producer.send("x")


async def test_reconnect_resends_unconfirmed(fake: FakeBroker) -> None:
    swallowed = asyncio.Event()

    def swallow(frame: str) -> str | None:
        swallowed.set()
        return NO_REPLY

    async with Producer(fake.url, "t", "p1", backoff=FAST) as producer:
        await producer.send("before")
        fake.reply_hook = swallow
        pending = asyncio.create_task(producer.send("during"))
        await asyncio.wait_for(swallowed.wait(), 5)
        assert producer.in_flight == 1
        port = fake.port
        await fake.stop()
        fake.reply_hook = None
        fake.messages.clear()
        await fake.start(port)
        await asyncio.wait_for(pending, 10)
        await producer.send("after")
        assert producer.reconnects == 1
    assert [m["MessageData"] for m in fake.messages.values()] == ["during", "after"]


async def test_consumer_reconnects(fake: FakeBroker) -> None:
    async with Consumer(fake.url, "t", "c1", backoff=FAST) as consumer:
        port = fake.port
        await fake.stop()
        await fake.start(port)
        fake._store("t", "again", 0)
        msg = await consumer.receive(timeout=10)
        assert msg.message_data == "again"
        assert consumer.reconnects == 1


async def test_no_reconnect_fails_waiters(fake: FakeBroker) -> None:
    consumer = Consumer(fake.url, "t", "c1", reconnect=False)
    await consumer.connect()
    await fake.stop()
    with pytest.raises(ConnectionLostError):
        await consumer.receive(timeout=5)
    await consumer.close()


async def test_run_acks_after_handler(fake: FakeBroker) -> None:
    for i in range(20):
        fake._store("t", str(i), 0)
    seen: list[str] = []
    done = asyncio.Event()
    async with Consumer(fake.url, "t", "c1", auto_ack=True, concurrency=4) as consumer:

        async def handler(msg) -> None:
            seen.append(msg.message_data)
            if len(seen) == 20:
                done.set()

        runner = asyncio.create_task(consumer.run(handler))
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.wait_for(_until(lambda: len(fake.acks) == 20), 5)
        await consumer.close()
        await asyncio.wait_for(runner, 5)
    assert sorted(seen, key=int) == [str(i) for i in range(20)]


async def test_send_http(fake: FakeBroker) -> None:
    code = await send_http(fake.url, "t", "via http")
    assert fake.messages[code]["MessageData"] == "via http"
    with pytest.raises(ApiError, match="Secret key matching error"):
        await send_http(fake.url, "t", "x", secret_key="bad")


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_sync_api(fake: FakeBroker) -> None:
    def work() -> list[str]:
        with SyncProducer(fake.url, "t", "p1") as producer:
            producer.send("s1")
            assert producer.send_many(["s2", "s3"]) == [None, None]
        got: list[str] = []
        with SyncConsumer(fake.url, "t", "c1") as consumer:
            for msg in consumer:
                got.append(msg.message_data)
                msg.ack()
                if len(got) == 3:
                    break
        return got

    assert await asyncio.wait_for(asyncio.to_thread(work), 10) == ["s1", "s2", "s3"]
    await asyncio.wait_for(_until(lambda: len(fake.acks) == 3), 5)


def test_message_from_wire() -> None:
    frame = (
        '{"MessageCode":"0123456789abcdef0123456789abcdef","MessageData":"hi","Topic":"t",'
        '"CreateTime":1640975470,"ConsumedTime":0,"DelayTime":0,"Status":-1}\n'
    )
    msg = Message.from_wire(frame)
    assert (msg.message_data, msg.create_time, msg.status) == ("hi", 1640975470, -1)
    assert msg.to_json() + "\n" == frame
    for bad in ("nope", "[1]", '{"MessageData":"x","Topic":"t"}', frame.replace('"hi"', "5")):
        with pytest.raises(ProtocolError):
            Message.from_wire(bad)


async def test_poison_frame_is_not_resent_forever(fake: FakeBroker) -> None:
    fake.reply_hook = lambda frame: DROP if '"poison"' in frame else None
    async with Producer(fake.url, "t", "p1", backoff=FAST) as producer:
        results = await asyncio.wait_for(
            producer.send_many(["a", "poison", "b"], return_exceptions=True), 10
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ConnectionLostError)
    assert sorted(m["MessageData"] for m in fake.messages.values()) == ["a", "b"]


async def test_the_frame_that_kills_connections_is_given_up_not_the_one_before_it(
    fake: FakeBroker,
) -> None:
    """A frame sent just before the killer is stored but unanswered on every connection
    the killer drops (as the broker answers a read's frames together): the producer gave
    up that innocent first unanswered frame, stored 4 times by then, and the killer only 4
    connections later (docs/client.md "Reconnecting, errors and closing")."""
    killer = "k" * 1000
    fake.reply_hook = lambda frame: DROP if killer in frame else HOLD if '"a"' in frame else None
    async with Producer(fake.url, "t", "p1", backoff=FAST) as producer:
        await producer.connect()
        results = await asyncio.wait_for(
            producer.send_many(["a", killer, "c"], return_exceptions=True), 10
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ConnectionLostError)
        assert str(results[1]) == "connection dropped 3 times sending this message"
        assert producer.reconnects == 3
    stored = [m["MessageData"] for m in fake.messages.values()]
    assert stored == ["a"] * 4 + ["c"]  # at-least-once: "a" on each connection


async def test_a_frame_closed_1009_takes_the_blame_for_its_connection(fake: FakeBroker) -> None:
    """After a close 1009 names the too-big frame, the others' resend counts start afresh:
    one that died with it and then with two more connections was given up for it."""
    sights = 0

    def hook(frame: str) -> str | None:
        nonlocal sights
        if "big" in frame:
            return TOO_BIG
        sights += 1
        return {1: HOLD, 2: DROP, 3: DROP}.get(sights)  # then answered

    fake.reply_hook = hook
    async with Producer(fake.url, "t", "p1", backoff=FAST) as producer:
        await producer.connect()
        results = await asyncio.wait_for(
            producer.send_many(["a", "big"], return_exceptions=True), 10
        )
        assert results[0] is None and isinstance(results[1], SendError)
        assert producer.reconnects == 3 and sights == 4


async def test_window_blocks_and_cancelled_waiter_leaks_no_slot(fake: FakeBroker) -> None:
    held: list[str] = []

    def hold(frame: str) -> str | None:
        held.append(frame)
        return NO_REPLY

    fake.reply_hook = hold
    producer = Producer(fake.url, "t", "p1", max_in_flight=1, close_timeout=0.5)
    await producer.connect()
    first = await producer.submit("first")
    blocked = asyncio.create_task(producer.send("second"))
    await asyncio.wait_for(_until(lambda: bool(held)), 5)
    await asyncio.sleep(0.05)  # give the blocked sender every chance to (wrongly) get through
    assert not blocked.done() and len(held) == 1 and producer.in_flight == 1
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert producer._free == 0 and not producer._slot_waiters
    await producer.close()
    with pytest.raises(ClientClosedError):
        await first
    assert producer._free == 1

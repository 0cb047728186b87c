"""The client against a real `kapokmq serve` process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from kapokmq.client import (
    ApiError,
    AuthenticationError,
    Backoff,
    ConsoleClient,
    Consumer,
    Message,
    MessageStatus,
    Producer,
    SendError,
    send_http,
)
from kapokmq.client.sync import SyncConsoleClient, SyncConsumer, SyncProducer
from kapokmq.client.sync import send_http as sync_send_http
from tests.harness import BrokerProcess

FAST = Backoff(initial=0.05, maximum=0.5)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll a broker-side condition that has no event to await (e.g. an ack's effect)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_round_trip_and_ack(broker: BrokerProcess) -> None:
    async with (
        Producer(broker.http, "rt", "p1") as producer,
        Consumer(broker.http, "rt", "c1") as consumer,
        ConsoleClient(broker.http) as console,
    ):
        await producer.send("hello")
        msg = await consumer.receive(timeout=10)
        assert isinstance(msg, Message)
        assert (msg.message_data, msg.topic, msg.status) == ("hello", "rt", MessageStatus.WAITING)
        assert len(msg.message_code) == 32 and msg.create_time > 0
        await msg.ack()

        async def consumed() -> bool:
            stored = await console.get_message(msg.message_code)
            return bool(stored["Status"] == MessageStatus.CONSUMED)

        await until(consumed)


async def test_pipelined_10000_confirmed_in_order(broker: BrokerProcess) -> None:
    n = 10_000
    confirmed: list[int] = []

    def on_reply(i: int) -> Callable[[asyncio.Future[None]], None]:
        return lambda _: confirmed.append(i)

    async with Producer(broker.http, "pipe", "p1", max_in_flight=500) as producer:
        futures = []
        for i in range(n):
            future = await producer.submit(str(i))
            future.add_done_callback(on_reply(i))
            futures.append(future)
        await asyncio.wait_for(asyncio.gather(*futures), 60)
        assert producer.in_flight == 0
    assert confirmed == list(range(n))
    received: list[str] = []
    async with Consumer(broker.http, "pipe", "c1", auto_ack=True) as consumer:
        while len(received) < n:
            received.append((await consumer.receive(timeout=10)).message_data)
    assert received == [str(i) for i in range(n)]


async def test_send_many(broker: BrokerProcess) -> None:
    async with Producer(broker.http, "many", "p1") as producer:
        assert await producer.send_many(["a", "b", "c"]) == [None, None, None]


async def test_delay(broker: BrokerProcess) -> None:
    async with (
        Producer(broker.http, "delay", "p1") as producer,
        Consumer(broker.http, "delay", "c1", auto_ack=True) as consumer,
    ):
        started = time.monotonic()
        await producer.send("later", delay=1)
        await producer.send("now")
        first = await consumer.receive(timeout=10)
        second = await consumer.receive(timeout=10)
        elapsed = time.monotonic() - started
    assert first.message_data == "now"
    assert (second.message_data, second.delay_time) == ("later", 1)
    assert 0.9 <= elapsed < 3


async def test_reconnect_after_broker_restart(broker: BrokerProcess) -> None:
    async with (
        Producer(broker.http, "re", "p1", backoff=FAST) as producer,
        Consumer(broker.http, "re", "c1", backoff=FAST, auto_ack=True) as consumer,
    ):
        await producer.send("before")
        assert (await consumer.receive(timeout=10)).message_data == "before"
        await asyncio.to_thread(broker.restart)
        await asyncio.wait_for(producer.send("after"), 15)
        assert (await consumer.receive(timeout=15)).message_data == "after"
        assert producer.reconnects == 1 and consumer.reconnects == 1


async def test_key_changed_during_reconnect_is_fatal(broker: BrokerProcess) -> None:
    async with (
        Producer(broker.http, "kc", "p1", backoff=FAST) as producer,
        Consumer(broker.http, "kc", "c1", backoff=FAST) as consumer,
    ):
        await producer.send("before")
        broker.settings["mq.secretKey"] = "rotated"
        await asyncio.to_thread(broker.restart)
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(producer.send("after"), 15)
        with pytest.raises(AuthenticationError):
            while True:  # the message read before the restart may come first
                await consumer.receive(timeout=15)
        assert producer.reconnects == 0 and consumer.reconnects == 0


async def test_wrong_key_raises_without_retrying(broker: BrokerProcess) -> None:
    started = time.monotonic()
    with pytest.raises(AuthenticationError):
        async with Producer(broker.http, "k", "p1", "wrong"):
            pass
    with pytest.raises(AuthenticationError):
        async with Consumer(broker.http, "k", "c1", "wrong"):
            pass
    with pytest.raises(ApiError, match="Secret key matching error"):
        await send_http(broker.http, "k", "x", secret_key="wrong")
    assert time.monotonic() - started < 5


async def test_error_reply_fails_only_that_message(broker: BrokerProcess) -> None:
    async with (
        Producer(broker.http, "err", "p1") as producer,
        Consumer(broker.http, "err", "c1", auto_ack=True) as consumer,
    ):
        # The client never writes a bad frame itself, so inject one between good ones.
        good1 = await producer.submit("one")
        bad = await producer._submit(b"this is not json")
        good2 = await producer.submit("two")
        await good1
        with pytest.raises(SendError) as info:
            await bad
        assert info.value.reply.startswith("error:")
        await good2
        await producer.send("three")
        got = [(await consumer.receive(timeout=10)).message_data for _ in range(3)]
    assert got == ["one", "two", "three"]


async def test_too_big_message_fails_alone(broker: BrokerProcess) -> None:
    async with Producer(broker.http, "big", "p1", backoff=FAST) as producer:
        small = await producer.submit("small")
        with pytest.raises(SendError, match="too big"):
            await asyncio.wait_for(producer.send("x" * (2 << 20)), 10)
        await small
        await producer.send("after")


async def test_run_with_concurrency(broker: BrokerProcess) -> None:
    n = 50
    seen: set[str] = set()
    done = asyncio.Event()
    async with Producer(broker.http, "run", "p1") as producer:
        await producer.send_many(str(i) for i in range(n))
    async with Consumer(broker.http, "run", "c1", auto_ack=True, concurrency=8) as consumer:

        async def handler(msg: Message) -> None:
            await asyncio.sleep(0.01)
            seen.add(msg.message_data)
            if len(seen) == n:
                done.set()

        runner = asyncio.create_task(consumer.run(handler))
        await asyncio.wait_for(done.wait(), 10)
        async with ConsoleClient(broker.http) as console:

            async def all_acked() -> bool:
                return (await console.count())["consumed"] == n

            await until(all_acked)
        await consumer.close()
        await asyncio.wait_for(runner, 5)


async def test_http_and_console(broker: BrokerProcess) -> None:
    code = await send_http(broker.http, "http", "via http", delay=0)
    async with ConsoleClient(broker.http) as console:
        await console.ping()
        stored = await console.get_message(code)
        assert stored["MessageData"] == "via http" and stored["Topic"] == "http"
        assert (await console.count())["all"] == 1
        assert (await console.config())["pushType"] == 1
        clients = await console.clients()
        assert clients == {"consumers": [], "producers": []}
        listed = await console.list_messages("2000-01-01 00:00:00", "2100-01-01 00:00:00")
        assert [m["MessageCode"] for m in listed] == [code]
        await console.del_message(code)
        with pytest.raises(ApiError):
            await console.get_message(code)
        with pytest.raises(ApiError, match="empty"):
            await console.send("http", "")


def test_sync_api(broker: BrokerProcess) -> None:
    with SyncProducer(broker.http, "sync", "p1") as producer:
        producer.send("s1")
        assert producer.send_many(["s2", "s3"]) == [None, None]
    got = []
    with SyncConsumer(broker.http, "sync", "c1") as consumer:
        for msg in consumer:
            got.append(msg.message_data)
            msg.ack()
            if len(got) == 3:
                break
        with pytest.raises(TimeoutError):
            consumer.receive(timeout=0.2)
    assert got == ["s1", "s2", "s3"]
    with SyncConsoleClient(broker.http) as console:
        assert console.count()["consumed"] in (2, 3)  # the last ack may still be in flight


async def test_ttl_zero_means_the_topic_default_as_on_the_wire(
    broker_factory: type[BrokerProcess], tmp_path: Path
) -> None:
    """ttl=0 is no TTL of the message's own (the wire's TTL 0): the topic's default applies,
    over WebSocket, HTTP and the blocking client alike."""
    (tmp_path / "application.yaml").write_text("mq:\n  topics:\n    news: {ttl: 60}\n")
    broker = broker_factory()
    async with (
        Producer(broker.http, "news", "p1") as news,
        Producer(broker.http, "plain", "p2") as plain,
        ConsoleClient(broker.http) as console,
    ):
        await news.send("n", ttl=0)
        await plain.send("p", ttl=0)
        codes = [await console.send(topic, "h", ttl=0) for topic in ("news", "plain")]
        listed = await console.list_messages("1970-01-02 00:00:00", "2100-01-01 00:00:00")
    with SyncProducer(broker.http, "news", "p3") as sync_producer:
        sync_producer.send("s", ttl=0)
    with SyncConsoleClient(broker.http) as sync_console:
        every = sync_console.list_messages("1970-01-02 00:00:00", "2100-01-01 00:00:00")
    ttls = {(m["Topic"], m.get("TTL")) for m in listed}
    assert ttls == {("news", 60), ("plain", None)} and len(listed) == 4
    assert {m["MessageCode"] for m in listed} >= set(codes)
    assert sorted(m.get("TTL", 0) for m in every) == [0, 0, 60, 60, 60]


async def test_ttl_and_message_id(broker: BrokerProcess) -> None:
    """The client's ttl and message_id reach the broker: a repeated id is stored once (over
    WebSocket and HTTP alike) and the TTL is on the stored message."""
    async with (
        Producer(broker.http, "ids", "p1") as producer,
        ConsoleClient(broker.http) as console,
    ):
        await producer.send("first", ttl=600, message_id="order-42")
        await producer.send("again", ttl=600, message_id="order-42")
        code = await console.send("ids", "by http", message_id="order-42")
        stored = await console.get_message(code)
        assert stored["MessageData"] == "first" and stored["TTL"] == 600
        assert (await console.count())["all"] == 1
        with pytest.raises(TypeError, match="ttl"):
            await producer.send("bad", ttl=-1)
    with SyncProducer(broker.http, "ids", "p2") as sync_producer:
        sync_producer.send("sync", message_id="order-42")
    with SyncConsoleClient(broker.http) as sync_console:
        assert sync_console.send("ids", "sync http", ttl=5) != code
        assert sync_console.count()["all"] == 2


async def test_send_many_and_send_http_take_ttl_and_message_ids(broker: BrokerProcess) -> None:
    """send_many and send_http had no ttl and no message ids, as send has: a batch could
    not be given a TTL, nor resent after a reconnect without being stored twice."""
    topic = "batch"
    async with (
        Producer(broker.http, topic, "p1") as producer,
        ConsoleClient(broker.http) as console,
    ):
        ids = ["b-1", "b-2", None]
        assert (
            await producer.send_many(["one", "two", "three"], ttl=600, message_ids=ids)
            == [None] * 3
        )
        again = ["one again", "two again", "four"]
        assert await producer.send_many(again, message_ids=iter(ids)) == [None] * 3
        code = await send_http(broker.http, topic, "by http", ttl=300, message_id="b-1")
        assert (await console.get_message(code))["MessageData"] == "one"  # not stored again
        fresh = await send_http(broker.http, topic, "fresh", ttl=300, message_id="h-1")
        assert await send_http(broker.http, topic, "fresh again", message_id="h-1") == fresh
        stored = await console.get_message(fresh)
        assert (stored["MessageData"], stored["TTL"]) == ("fresh", 300)

        # the errors of send: before anything is sent (a bad ttl or id, the ids' count)
        with pytest.raises(ValueError, match="one id per item: 1 for 2"):
            await producer.send_many(["x", "y"], message_ids=["only"])
        with pytest.raises(TypeError, match="ttl"):
            await producer.send_many(["x"], ttl=-1)
        with pytest.raises(TypeError, match="message_id"):
            await producer.send_many(["x"], message_ids=[""])
        with pytest.raises(ApiError, match="ttl must be"):  # as ConsoleClient.send
            await send_http(broker.http, topic, "x", ttl=-1)
        listed = await console.list_messages(
            "1970-01-02 00:00:00", "2100-01-01 00:00:00", topic=topic
        )
    assert sorted(m.get("TTL", 0) for m in listed) == [0, 300, 600, 600, 600]

    with SyncProducer(broker.http, topic, "p2") as sync_producer:
        assert (
            sync_producer.send_many(["s1", "s2"], ttl=60, message_ids=["b-2", "s-2"]) == [None] * 2
        )
        with pytest.raises(ValueError, match="one id per item"):
            sync_producer.send_many(["x"], message_ids=[])
    code = sync_send_http(broker.http, topic, "s2 again", ttl=60, message_id="s-2")
    with SyncConsoleClient(broker.http) as sync_console:
        stored = sync_console.get_message(code)
        assert (stored["MessageData"], stored["TTL"]) == ("s2", 60)
        assert sync_console.count()["all"] == 6

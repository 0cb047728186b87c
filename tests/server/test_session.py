"""The session machines of server/session.py, driven with raw messages and a fake clock:
no sockets, no event loop (docs/protocol.md "WebSocket sessions")."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any, cast

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapokmq.config import Config
from kapokmq.login import MATCHED, MISMATCH, PROMPT
from kapokmq.model import Code, Status, code_key
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.session import (
    CLOSE_GRACE,
    ConsumerWebSocket,
    ProducerWebSocket,
    Session,
    State,
    SyncWebSocket,
    ack_codes,
    close_all,
)
from kapokmq.storage.format import split_codes

KEY = b"test"


# ---------------------------------------------------------------------------- fakes
class FakeHandle:
    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...], when: float):
        self.callback, self.args, self.when, self.cancelled = callback, args, when, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The clock and scheduler a runtime and its sessions use; time moves only on advance."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.soon: list[FakeHandle] = []
        self.timers: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[..., object], *args: Any) -> FakeHandle:
        handle = FakeHandle(callback, args, self.now)
        self.soon.append(handle)
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> FakeHandle:
        handle = FakeHandle(callback, args, when)
        self.timers.append(handle)
        return handle

    def run(self) -> None:
        """Run what was scheduled with call_soon, and what that schedules, until idle."""
        while self.soon:
            batch, self.soon = self.soon, []
            for handle in batch:
                if not handle.cancelled:
                    handle.callback(*handle.args)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [h for h in self.timers if h.when <= self.now and not h.cancelled]
        self.timers = [h for h in self.timers if h not in due]
        for handle in due:
            handle.callback(*handle.args)
        self.run()


WRITES: list[tuple[FakeTransport, bytes]] = []  # every fake transport's writes, in order


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.close_frame_sent = False  # by the link: nothing may be written after it
        self.buffered = 0  # what get_write_buffer_size says (the socket never fills)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        assert not self.close_frame_sent, "written after the close frame"
        self.out.append(data)
        WRITES.append((self, data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = self.closing = True


class FakeLink:
    def __init__(self, transport: FakeTransport | None = None) -> None:
        self.transport = transport
        self.closed: tuple[int, bytes] | None = None
        self.reading = True

    def close(self, code: int, reason: bytes) -> None:
        """As the engines do: the close frame goes out, the connection stays open for the
        client's answer (server/session.py CLOSE_GRACE)."""
        self.closed = (code, reason)
        if self.transport is not None:
            self.transport.close_frame_sent = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class FakeFuture:
    """What a durable ticket returns (an asyncio.Future in the broker)."""

    def __init__(self) -> None:
        self._done = False
        self._exc: BaseException | None = None
        self._callbacks: list[Callable[[object], None]] = []

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return self._exc

    def add_done_callback(self, callback: Callable[[object], None]) -> None:
        self._callbacks.append(callback)

    def finish(self, exc: BaseException | None = None) -> None:
        self._done, self._exc = True, exc
        for callback in self._callbacks:
            callback(self)


class FakeStorage:
    """What the runtime reads from durable storage (storage/manager.py Storage)."""

    def __init__(self, ticket: Callable[[], object]) -> None:
        self.durable_ticket = ticket
        self.durable_barrier = None
        self.wal = None
        self.fault = None
        self.write_failures = 0


def use_ticket(runtime: BrokerRuntime, ticket: Callable[[], object]) -> None:
    """fsync `always` without a disk: every reply waits for ``ticket()``."""
    runtime.storage_opened(cast(Any, FakeStorage(ticket)))


def use_tickets(runtime: BrokerRuntime) -> list[FakeFuture]:
    """``use_ticket`` with a fresh FakeFuture per ticket, listed in the order taken."""
    tickets: list[FakeFuture] = []

    def ticket() -> FakeFuture:
        tickets.append(FakeFuture())
        return tickets[-1]

    use_ticket(runtime, ticket)
    return tickets


def frames(data: bytes) -> list[bytes]:
    """Split unmasked server-to-client text frames (RFC 6455 5.2) into their payloads."""
    out: list[bytes] = []
    while data:
        assert data[0] == 0x81, data[:2]
        n, head = data[1], 2
        if n == 126:
            n, head = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[2:10], "big"), 10
        out.append(data[head : head + n])
        data = data[head + n :]
    return out


def send_frame(data: str, delay: int = 0) -> bytes:
    return orjson.dumps({"MessageData": data, "DelayTime": delay})


class Harness:
    def __init__(self, **mq: object) -> None:
        config = Config()
        for key, value in mq.items():
            setattr(config.mq, key, value)
        self.loop = FakeLoop()
        self.runtime = BrokerRuntime(config, cast(asyncio.AbstractEventLoop, self.loop))

    def connect(self, kind: type[Session], topic: str = "t") -> Client:
        transport = FakeTransport()
        link = FakeLink(transport)
        session = kind(self.runtime, transport, link, topic, "c1", "127.0.0.1")
        return Client(self, session, transport, link)

    def login(self, kind: type[Session], topic: str = "t") -> Client:
        client = self.connect(kind, topic)
        client.session.receive(KEY)
        assert client.texts() == [PROMPT.encode(), MATCHED.encode()]
        return client


class Client:
    def __init__(
        self, harness: Harness, session: Session, transport: FakeTransport, link: FakeLink
    ) -> None:
        self.harness, self.session, self.transport, self.link = harness, session, transport, link

    def state(self) -> State:
        return self.session.state

    def texts(self) -> list[bytes]:
        """Everything written since the last call, as frame payloads."""
        written, self.transport.out = self.transport.out, []
        return frames(b"".join(written))

    def read(self, *payloads: bytes) -> list[bytes]:
        """One read's messages; what the server wrote once the read is done."""
        for payload in payloads:
            self.session.receive(payload)
        self.harness.loop.run()
        return self.texts()


@pytest.fixture
def harness() -> Harness:
    return Harness()


# ---------------------------------------------------------------------------- handshake
@pytest.mark.parametrize("kind", [ProducerWebSocket, ConsumerWebSocket])
def test_prompt_then_right_key_opens(harness: Harness, kind: type[Session]) -> None:
    client = harness.connect(kind)
    assert client.texts() == [PROMPT.encode()]
    assert client.state() is State.AWAITING_KEY
    assert client.read(KEY) == [MATCHED.encode()]
    assert client.state() is State.OPEN
    consumers, producers = harness.runtime.broker.clients()
    assert len(consumers if kind is ConsumerWebSocket else producers) == 1


@pytest.mark.parametrize("kind", [ProducerWebSocket, ConsumerWebSocket])
def test_five_wrong_keys_close_1008(harness: Harness, kind: type[Session]) -> None:
    client = harness.connect(kind)
    client.texts()
    for _ in range(4):
        assert client.read(b"wrong") == [MISMATCH.encode(), PROMPT.encode()]
    assert client.link.closed is None
    assert client.read(b"wrong") == [MISMATCH.encode()]  # the fifth: no prompt, a close
    assert client.link.closed == (1008, b"too many wrong secret keys")
    assert client.state() is State.CLOSING
    client.session.receive(KEY)  # too late: ignored
    assert client.link.closed == (1008, b"too many wrong secret keys")


def test_no_key_within_key_timeout_closes_1008() -> None:
    harness = Harness(keyTimeout=30)
    client = harness.connect(ProducerWebSocket)
    client.read(b"wrong")
    harness.loop.advance(29.9)
    assert client.link.closed is None
    harness.loop.advance(0.2)
    assert client.link.closed == (1008, b"no secret key in time")


def test_key_timeout_stops_at_the_right_key() -> None:
    harness = Harness(keyTimeout=30)
    client = harness.login(ConsumerWebSocket)
    harness.loop.advance(60)
    assert client.link.closed is None and client.state() is State.OPEN


def test_connection_lost_while_awaiting_key_attaches_nothing(harness: Harness) -> None:
    client = harness.connect(ProducerWebSocket)
    client.session.connection_lost()
    assert client.state() is State.CLOSED
    assert harness.runtime.broker.clients() == ([], [])
    assert not harness.runtime.sessions


# ---------------------------------------------------------------------------- closing handshake
def test_after_its_close_frame_a_consumer_gets_no_pushes_and_a_silent_client_is_cut_off(
    harness: Harness,
) -> None:
    """docs/protocol.md "WebSocket sessions": the connection stays open for the client's
    answering close, with nothing written after the close frame; no answer within
    CLOSE_GRACE and it is cut off (what it held goes back to the queue)."""
    consumer = harness.login(ConsumerWebSocket)
    consumer.read(b" " * (1024 * 1024 + 1))
    assert consumer.link.closed == (1009, b"message too big")
    harness.runtime.publish("t", "after the close", 0)
    harness.loop.run()  # FakeTransport.write fails on a write after the close frame
    assert consumer.texts() == []
    harness.loop.advance(CLOSE_GRACE - 0.1)
    assert not consumer.transport.aborted
    harness.loop.advance(0.1)
    assert consumer.transport.aborted
    consumer.session.connection_lost()
    other = harness.login(ConsumerWebSocket)
    harness.loop.run()
    assert [orjson.loads(p)["MessageData"] for p in other.texts()] == ["after the close"]


def test_a_client_that_answers_the_close_is_not_cut_off(harness: Harness) -> None:
    client = harness.login(ProducerWebSocket)
    client.read(b"x" * (1024 * 1024 + 1))
    assert client.link.closed == (1009, b"message too big")
    assert client.read(send_frame("after the close")) == []  # read and ignored
    client.session.connection_lost()  # the engine ends it at the client's answer
    harness.loop.advance(CLOSE_GRACE)
    assert not client.transport.aborted
    assert harness.runtime.broker.backlog == 0


def test_durable_replies_due_after_the_close_frame_are_not_written(harness: Harness) -> None:
    tickets = use_tickets(harness.runtime)
    client = harness.login(ProducerWebSocket)
    assert client.read(send_frame("a")) == []
    client.session.close(1001, b"server shutting down")
    tickets[0].finish()  # FakeTransport.write fails on a write after the close frame
    harness.loop.run()
    assert client.texts() == []


def test_a_held_producer_reads_again_once_closed(harness: Harness) -> None:
    """Its answering close must be read: reading paused for backlog room resumes."""
    client = harness.login(ProducerWebSocket)
    client.link.pause_reading()
    client.session.close(1001, b"server shutting down")
    assert client.link.reading


# ---------------------------------------------------------------------------- sizes
def test_message_above_limit_closes_1009_at_limit_passes() -> None:
    harness = Harness(maxMessageBytes=100)
    client = harness.login(ProducerWebSocket)
    exact = b'{"MessageData":"' + b"x" * (100 - 32) + b'","DelayTime":0}'
    assert len(exact) == 100
    assert client.read(exact) == [b"ok"]
    client.read(exact + b" ")
    assert client.link.closed == (1009, b"message too big")


def test_a_message_above_limit_within_a_read_closes_after_those_before_it() -> None:
    """A read's messages are handled once it is done (the picows adapter appends them to
    the session's inbox): those before the one above the limit count, it closes the
    connection 1009, those after it are dropped, as when each was handled on arrival."""
    harness = Harness(maxMessageBytes=100)
    producer = harness.login(ProducerWebSocket)
    assert producer.read(send_frame("a"), b"x" * 101, send_frame("b")) == [b"ok"]
    assert producer.link.closed == (1009, b"message too big")
    assert [m.data for m in harness.runtime.broker.store] == ["a"]
    consumer = harness.login(ConsumerWebSocket)
    harness.loop.run()
    (push,) = consumer.texts()
    code = orjson.loads(push)["MessageCode"].encode()
    harness.runtime.publish("t", "c", 0)
    harness.loop.run()
    (push,) = consumer.texts()
    later = orjson.loads(push)["MessageCode"].encode()
    consumer.read(code, b" " * 101, later)
    assert consumer.link.closed == (1009, b"message too big")
    assert [m.status for m in harness.runtime.broker.store] == [
        Status.CONSUMED,
        Status.WAITING,
    ]


def test_acks_before_a_close_within_a_read_count_and_none_after_it(harness: Harness) -> None:
    consumer = harness.login(ConsumerWebSocket)
    harness.runtime.publish("t", "a", 0)
    harness.runtime.publish("t", "b", 0)
    harness.loop.run()
    codes = [orjson.loads(p)["MessageCode"].encode() for p in consumer.texts()]
    session = consumer.session
    for step in (codes[0], None, codes[1]):  # as the picows adapter hands a read over
        if step is None:
            session.receive_fragment(b"x", continuation=True, fin=True)  # closes 1002
        elif session.inbox:
            session.inbox.append(step)
        else:
            session.receive(step)
    harness.loop.run()
    assert consumer.link.closed == (1002, b"continuation without a first frame")
    assert [m.status for m in harness.runtime.broker.store] == [
        Status.CONSUMED,
        Status.WAITING,
    ]


_WIRE = "0123456789abcdefABCDEF \t\n\x00é\udcff"


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.text(alphabet=_WIRE, min_size=30, max_size=34).map(
                lambda t: t.encode("utf-8", "surrogateescape")
            ),
            st.integers(0, (1 << 128) - 1).map(lambda c: b"%032x" % c),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_ack_codes_is_code_key_of_each_acks_stripped_text(payloads: list[bytes]) -> None:
    def one(payload: bytes) -> Code:
        text = payload.decode("utf-8", "replace")
        return code_key(text if len(text) == 32 else text.strip())

    codes, raw = ack_codes(payloads)
    assert codes == [one(p) for p in payloads]
    assert list(map(type, codes)) == [type(one(p)) for p in payloads]
    if raw is not None:  # the codes as a batch record holds them (Broker.ack_keys)
        assert split_codes(raw, len(codes)) == codes


def test_ack_codes_keeps_little_for_reads_of_any_number_of_acks() -> None:
    """A consumer picks how many acks one read holds: the broker must not keep a cutter
    per count (a struct of n fields is ~35n bytes: thousands of counts were gigabytes)."""
    ack_codes([b"%032x" % 7] * 3)  # whatever a first call sets up
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(2000, 2060):
            codes, raw = ack_codes([b"%032x" % i for i in range(n)])
            assert codes == list(range(n))
            assert raw == b"".join(i.to_bytes(16) for i in range(n))
        del codes, raw
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1 << 20, kept


def test_fragments_are_joined_and_bounded() -> None:
    harness = Harness(maxMessageBytes=100)
    client = harness.login(ProducerWebSocket)
    whole = send_frame("joined")
    session = client.session
    session.receive_fragment(whole[:5], continuation=False, fin=False)
    assert session.fragments is not None
    session.receive_fragment(whole[5:], continuation=True, fin=True)
    harness.loop.run()
    assert client.texts() == [b"ok"]
    assert session.fragments is None
    session.receive_fragment(b"x" * 60, continuation=False, fin=False)
    session.receive_fragment(b"x" * 60, continuation=True, fin=False)
    assert client.link.closed == (1009, b"message too big")


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([(True, True)], b"continuation without a first frame"),
        ([(False, False), (False, True)], b"new message inside a fragmented one"),
    ],
)
def test_broken_fragmentation_closes_1002(
    harness: Harness, steps: list[tuple[bool, bool]], reason: bytes
) -> None:
    client = harness.login(ConsumerWebSocket)
    for continuation, fin in steps:
        client.session.receive_fragment(b"x", continuation, fin)
    assert client.link.closed == (1002, reason)


# ---------------------------------------------------------------------------- producer
def test_a_read_is_published_at_once_and_answered_in_one_write(harness: Harness) -> None:
    client = harness.login(ProducerWebSocket)
    for i in range(3):
        client.session.receive(send_frame(f"m{i}"))
    assert harness.runtime.broker.backlog == 0  # nothing before the read is done
    harness.loop.run()
    assert len(client.transport.out) == 1
    assert client.texts() == [b"ok"] * 3
    assert [m.data for m in harness.runtime.broker.messages()] == ["m0", "m1", "m2"]


def test_pushes_go_out_before_the_replies_of_the_read_that_caused_them(
    harness: Harness,
) -> None:
    """Answering a producer first lets it outrun delivery (docs/performance.md)."""
    consumer = harness.login(ConsumerWebSocket)
    producer = harness.login(ProducerWebSocket)
    WRITES.clear()
    producer.read(send_frame("a"), send_frame("b"))
    assert [t for t, _ in WRITES] == [consumer.transport, producer.transport]


def test_bad_frames_are_answered_in_order_and_not_stored(harness: Harness) -> None:
    client = harness.login(ProducerWebSocket)
    replies = client.read(send_frame("a"), b"not json", b'{"DelayTime":"5"}', send_frame("b"))
    assert replies[0] == b"ok" and replies[3] == b"ok"
    assert replies[1].startswith(b"error: ") and replies[2].startswith(b"error: ")
    assert [m.data for m in harness.runtime.broker.messages()] == ["a", "b"]
    assert client.state() is State.OPEN


def test_refused_writes_answer_error_and_keep_the_connection(harness: Harness) -> None:
    client = harness.login(ProducerWebSocket)
    harness.runtime.refuse_writes("storage", "storage unavailable: disk full")
    assert (
        client.read(send_frame("a"), send_frame("b"))
        == [b"error: storage unavailable: disk full"] * 2
    )
    assert harness.runtime.broker.backlog == 0 and client.link.closed is None
    harness.runtime.accept_writes("storage")
    assert client.read(send_frame("c")) == [b"ok"]


def test_delayed_message_arms_the_runtime_timer(harness: Harness) -> None:
    client = harness.login(ProducerWebSocket)
    assert client.read(send_frame("later", 5)) == [b"ok"]
    assert any(not h.cancelled for h in harness.loop.timers)  # the broker's delay timer


def test_full_backlog_holds_frames_until_room() -> None:
    harness = Harness(messageChanBuffer=2)
    producer = harness.login(ProducerWebSocket, "hold")
    assert producer.read(send_frame("a"), send_frame("b"), send_frame("c")) == [b"ok", b"ok"]
    assert producer.state() is State.HOLDING and not producer.link.reading
    assert producer.read(send_frame("d")) == []  # still in the read buffer: held, in order
    consumer = harness.login(ConsumerWebSocket, "hold")
    harness.loop.run()
    pushes = [orjson.loads(p) for p in consumer.texts()]
    assert [p["MessageData"] for p in pushes] == ["a", "b"]
    consumer.read(pushes[0]["MessageCode"].encode())  # one consumed: room for one
    assert producer.texts() == [b"ok"]
    assert producer.state() is State.HOLDING
    consumer.read(pushes[1]["MessageCode"].encode())
    assert producer.texts() == [b"ok"]
    assert producer.state() is State.OPEN and producer.link.reading
    data = [m.data for m in harness.runtime.broker.messages()]
    assert data == ["a", "b", "c", "d"]


def test_a_bad_frame_held_with_the_rest_is_answered_in_order_once_there_is_room() -> None:
    harness = Harness(messageChanBuffer=1)
    producer = harness.login(ProducerWebSocket, "hold")
    assert producer.read(send_frame("a"), send_frame("b"), b"not json", send_frame("c")) == [b"ok"]
    assert producer.state() is State.HOLDING
    consumer = harness.login(ConsumerWebSocket, "hold")
    harness.loop.run()
    pushes, replies = consumer.texts(), []
    while pushes:  # one message at a time: each ack makes room for the next
        pushes = consumer.read(*(orjson.loads(p)["MessageCode"].encode() for p in pushes))
        replies += producer.texts()
    assert replies[0] == b"ok" and replies[1].startswith(b"error: ") and replies[2] == b"ok"
    assert [m.data for m in harness.runtime.broker.messages()] == ["a", "b", "c"]
    assert producer.state() is State.OPEN


def test_connection_lost_stores_what_was_received_in_full(harness: Harness) -> None:
    client = harness.login(ProducerWebSocket)
    client.session.receive(send_frame("last words"))
    client.transport.closing = True
    client.session.connection_lost()
    harness.loop.run()
    assert [m.data for m in harness.runtime.broker.messages()] == ["last words"]
    assert harness.runtime.broker.clients() == ([], [])


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (1000, (1000, b"")),
        (4000, (4000, b"")),
        (None, (1000, b"")),  # a close frame without a code
        (0, (1002, b"invalid close code")),
        (1006, (1002, b"invalid close code")),
        (5000, (1002, b"invalid close code")),
    ],
)
def test_a_client_close_answers_what_came_before_and_ignores_what_follows(
    harness: Harness, sent: int | None, answer: tuple[int, bytes]
) -> None:
    client = harness.login(ProducerWebSocket)
    client.session.receive(send_frame("before"))
    assert client.session.close_received(sent) == answer
    assert client.texts() == [b"ok"]  # written ahead of the engine's answering close frame
    assert client.state() is State.CLOSING
    client.session.receive(send_frame("after"))
    harness.loop.run()
    client.session.connection_lost()
    assert client.texts() == []
    assert [m.data for m in harness.runtime.broker.messages()] == ["before"]


def test_durable_replies_wait_for_the_disk_in_order(harness: Harness) -> None:
    tickets = use_tickets(harness.runtime)
    client = harness.login(ProducerWebSocket)
    assert client.read(send_frame("a"), b"bad", send_frame("b")) == []
    assert len(tickets) == 2
    tickets[1].finish()  # a later batch on disk first: still waits behind the first
    assert client.texts() == []
    tickets[0].finish()
    replies = client.texts()
    assert replies[0] == b"ok" and replies[1].startswith(b"error: ") and replies[2] == b"ok"


def test_durable_replies_go_out_when_the_wal_settles_their_ticket(harness: Harness) -> None:
    """Not an iteration later, when the ticket's own callbacks run (as asyncio's do)."""
    tickets = use_tickets(harness.runtime)
    client = harness.login(ProducerWebSocket)
    assert client.read(send_frame("a"), send_frame("b")) == []
    assert client.read(send_frame("c")) == []
    harness.runtime.durable_settled()  # a sync that settled neither
    assert client.texts() == []
    tickets[0]._done = True  # settled; its callbacks have not run yet
    harness.runtime.durable_settled()
    assert client.texts() == [b"ok", b"ok"]
    tickets[0].finish()  # its callbacks, later: nothing more to send
    harness.loop.run()
    assert client.texts() == []
    tickets[1]._done = True
    harness.runtime.durable_settled()
    assert client.texts() == [b"ok"]


def test_a_failed_fsync_never_answers_ok(harness: Harness) -> None:
    future = FakeFuture()
    use_ticket(harness.runtime, lambda: future)
    client = harness.login(ProducerWebSocket)
    client.read(send_frame("a"), send_frame("b"))
    future.finish(OSError("storage unavailable: EIO"))
    assert client.texts() == [b"error: storage unavailable: EIO"] * 2
    assert client.state() is State.OPEN and not client.transport.aborted


# ---------------------------------------------------------------------------- consumer
def test_pushes_and_acks(harness: Harness) -> None:
    consumer = harness.login(ConsumerWebSocket)
    harness.runtime.publish("t", "hello", 0)
    harness.loop.run()
    (push,) = consumer.texts()
    assert push.endswith(b"\n")
    message = orjson.loads(push)
    assert message["MessageData"] == "hello" and message["Status"] == -1
    assert consumer.read(f"  {message['MessageCode']}\n".encode(), b"", b"unknown") == []
    assert harness.runtime.broker.store.counts()[Status.CONSUMED] == 1  # no reply, still open
    assert consumer.state() is State.OPEN


def test_consumer_loss_gives_back_its_unacked_messages(harness: Harness) -> None:
    first = harness.login(ConsumerWebSocket)
    harness.runtime.publish("t", "m", 0)
    harness.loop.run()
    assert len(first.texts()) == 1
    first.transport.closing = True
    first.session.connection_lost()
    second = harness.login(ConsumerWebSocket)
    harness.loop.run()
    assert [orjson.loads(p)["MessageData"] for p in second.texts()] == ["m"]


def test_close_all_says_going_away(harness: Harness) -> None:
    clients = [harness.login(ProducerWebSocket), harness.connect(ConsumerWebSocket)]
    close_all(harness.runtime)
    assert [c.link.closed for c in clients] == [(1001, b"server shutting down")] * 2


# ---------------------------------------------------------------------------- /Sync/Conn
class RecordingFeed:
    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []

    def attach(self, writer: object, extended: bool, cut: object) -> str:
        self.events.append(("attach", b""))
        return "handle"

    def received(self, slave: Any, payload: bytes) -> None:
        assert slave == "handle"
        self.events.append(("received", payload))

    def detach(self, slave: Any) -> None:
        assert slave == "handle"
        self.events.append(("detach", b""))


def test_a_slave_logs_in_then_feeds_the_hand_back(harness: Harness) -> None:
    feed = RecordingFeed()
    transport = FakeTransport()
    session = SyncWebSocket(harness.runtime, transport, FakeLink(transport), feed, "10.0.0.2")
    client = Client(harness, session, transport, cast(FakeLink, session.link))
    assert client.read(b"wrong") == [PROMPT.encode(), MISMATCH.encode(), PROMPT.encode()]
    assert feed.events == []  # nothing streamed before the right key
    assert client.read(KEY) == [MATCHED.encode()]
    client.read(b"hi", b'{"MessageCode":"x","Deleted":true}\n', b"hi")
    session.connection_lost()
    assert feed.events == [  # heartbeats too: the first ends a restarted master's hold
        ("attach", b""),
        ("received", b"hi"),
        ("received", b'{"MessageCode":"x","Deleted":true}\n'),
        ("received", b"hi"),
        ("detach", b""),
    ]


# ---------------------------------------------------------------------------- overload
def test_wrong_keys_from_one_address_are_answered_one_per_second(harness: Harness) -> None:
    clients = [harness.connect(ConsumerWebSocket) for _ in range(5)]
    for client in clients[:4]:  # 20 wrong keys: answered at once
        client.texts()
        for _ in range(5):
            assert client.read(b"wrong")[0] == MISMATCH.encode()
    late = clients[4]
    late.texts()
    assert late.read(b"wrong") == [MISMATCH.encode(), PROMPT.encode()]  # the 21st: at once
    assert late.read(b"wrong", b"wrong again") == []  # held, and so is what follows
    assert not late.link.reading
    harness.loop.advance(0.5)
    assert late.texts() == []
    harness.loop.advance(0.5)
    assert late.texts() == [MISMATCH.encode(), PROMPT.encode()]  # 1 s after the 21st
    harness.loop.advance(1.0)
    assert late.texts() == [MISMATCH.encode(), PROMPT.encode()]  # and 1 s later
    assert late.link.reading
    assert late.read(KEY) == [MATCHED.encode()]  # the right key: at once
    assert late.state() is State.OPEN


def test_a_consumer_with_a_full_socket_gets_no_pushes_until_it_drains(harness: Harness) -> None:
    client = harness.login(ConsumerWebSocket)
    broker = harness.runtime.broker
    broker.publish("t", "first", 0)
    client.transport.buffered = 100_000  # the client stopped reading
    harness.loop.run()
    assert len(client.texts()) == 1
    broker.publish("t", "second", 0)
    harness.loop.run()
    assert client.texts() == []  # paused
    harness.loop.advance(0.05)
    assert client.texts() == []  # still full
    client.transport.buffered = 0
    harness.loop.advance(0.2)
    assert [orjson.loads(p)["MessageData"] for p in client.texts()] == ["second"]


def test_a_stalled_p2p_consumer_is_cut_only_when_another_can_take_its_messages(
    harness: Harness,
) -> None:
    """docs/protocol.md "Slow consumers": the only consumer of a topic, its socket full
    and no ack for 5 s (it may be working on one message, as the Go client does), is not
    cut: nobody else could take what it holds. Once another one connects, it is."""
    broker = harness.runtime.broker
    broker.clock = harness.loop.time  # the fake clock
    slow = harness.login(ConsumerWebSocket)
    for i in range(3):
        broker.publish("t", f"m{i}", 0)
    slow.transport.buffered = 100_000  # the kernel's buffers are full
    harness.loop.run()
    assert len(slow.texts()) == 3
    harness.loop.advance(0.01)
    for _ in range(20):
        harness.loop.advance(0.5)
    assert slow.link.closed is None and slow.state() is State.OPEN
    other = harness.login(ConsumerWebSocket)
    harness.loop.advance(0.2)
    assert slow.link.closed == (1008, b"slow consumer")
    harness.loop.run()
    assert sorted(orjson.loads(p)["MessageData"] for p in other.texts()) == ["m0", "m1", "m2"]


def test_a_pubsub_subscriber_over_max_pending_bytes_is_closed_1008() -> None:
    harness = Harness(pushType=2, maxInFlight=1, maxPendingBytes=65536)
    fast = harness.login(ConsumerWebSocket)
    slow = harness.login(ConsumerWebSocket)
    broker = harness.runtime.broker
    assert isinstance(slow.session, ConsumerWebSocket) and slow.session.consumer is not None
    slow.session.consumer.acked_at -= 10  # it has acked nothing for a while (broker clock)
    for _ in range(100):
        broker.publish("t", "x" * 1000, 0)
        harness.loop.run()
        for push in fast.texts():
            fast.read(orjson.loads(push)["MessageCode"].encode())
    assert slow.link.closed == (1008, b"slow consumer")
    assert len(broker.topic("t").consumers) == 1 and broker.topic("t").stats.slow_consumers == 1
    harness.loop.advance(2.0)
    assert slow.transport.aborted  # it never read its close frame: cut off

"""Blocking wrappers over the asyncio client, for scripts and threads without an event loop.

Every wrapper runs its async twin on one shared event loop in a daemon thread, so the
behaviour (pipelining, reconnect, errors) is exactly the async client's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from kapokmq.client.backoff import Backoff
from kapokmq.client.connection import DEFAULT_HEARTBEAT, DEFAULT_SECRET_KEY, DEFAULT_URL
from kapokmq.client.consumer import Consumer
from kapokmq.client.http import STATUS_ALL, ConsoleClient, TimeLike
from kapokmq.client.http import send_http as async_send_http
from kapokmq.client.message import WIRE_FIELDS, Message
from kapokmq.client.producer import DataLike, Producer

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="kapokmq-sync", daemon=True).start()
            _loop = loop
        return _loop


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the client loop and wait; on timeout or interrupt it is cancelled."""
    loop = _background_loop()
    if _running_loop() is loop:
        coro.close()
        raise RuntimeError("kapokmq.client.sync called from its own event loop thread")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Closing:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncProducer(_Closing):
    """Blocking `Producer`: same arguments, `send` blocks until the broker's `ok`."""

    def __init__(
        self,
        url: str,
        topic: str,
        producer_id: str,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        max_in_flight: int = 1000,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 10.0,
        send_timeout: float | None = 30.0,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
    ) -> None:
        async def make() -> Producer:
            producer = Producer(
                url,
                topic,
                producer_id,
                secret_key,
                max_in_flight=max_in_flight,
                reconnect=reconnect,
                backoff=backoff,
                connect_timeout=connect_timeout,
                close_timeout=close_timeout,
                send_timeout=send_timeout,
                heartbeat=heartbeat,
            )
            await producer.connect()
            return producer

        self._producer = run(make())

    def send(
        self,
        data: DataLike,
        delay: int = 0,
        timeout: float | None = None,
        *,
        ttl: int | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish one message; raises SendError if the broker rejects it (arguments as for
        the async `Producer.send`)."""
        run(self._producer.send(data, delay, ttl=ttl, message_id=message_id), timeout)

    def send_many(
        self,
        items: Iterable[DataLike],
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_ids: Iterable[str | None] | None = None,
        return_exceptions: bool = False,
        timeout: float | None = None,
    ) -> list[BaseException | None]:
        """Publish a batch pipelined; see `Producer.send_many`."""
        batch = list(items)
        ids = None if message_ids is None else list(message_ids)
        coro = self._producer.send_many(
            batch, delay, ttl=ttl, message_ids=ids, return_exceptions=return_exceptions
        )
        return run(coro, timeout)

    def close(self) -> None:
        """Wait for outstanding replies (bounded) and close."""
        run(self._producer.close())


@dataclass(slots=True, eq=False)
class SyncMessage:
    """A received message with a blocking `ack()`; fields as in `Message`."""

    message_code: str
    message_data: str
    topic: str
    create_time: int
    consumed_time: int
    delay_time: int
    status: int
    _message: Message = field(repr=False)

    def ack(self, timeout: float | None = None) -> None:
        """Acknowledge the message; a second call does nothing."""
        run(self._message.ack(), timeout)

    def to_wire(self) -> dict[str, Any]:
        """The message as the broker sent it."""
        return self._message.to_wire()

    @classmethod
    def wrap(cls, message: Message) -> SyncMessage:
        values = {attr: getattr(message, attr) for _, attr in WIRE_FIELDS}
        return cls(**values, _message=message)


class _AsyncReceiver(Protocol):
    async def receive(self, timeout: float | None = None) -> Message: ...

    async def __anext__(self) -> Message: ...

    async def close(self) -> None: ...


class _SyncReceiver(_Closing):
    """Blocking receive, iteration and close over an async consumer (plain or cluster)."""

    _consumer: _AsyncReceiver

    def receive(self, timeout: float | None = None) -> SyncMessage:
        """The next message; TimeoutError after ``timeout`` seconds."""
        return SyncMessage.wrap(run(self._consumer.receive(timeout)))

    def __iter__(self) -> Iterator[SyncMessage]:
        while True:
            try:
                message = run(self._consumer.__anext__())
            except StopAsyncIteration:
                return
            yield SyncMessage.wrap(message)

    def close(self) -> None:
        """Close the connection; unacked messages are redelivered by the broker."""
        run(self._consumer.close())


class SyncConsumer(_SyncReceiver):
    """Blocking `Consumer`: iterate with ``for msg in consumer`` and call ``msg.ack()``."""

    def __init__(
        self,
        url: str,
        topic: str,
        consumer_id: str,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        auto_ack: bool = False,
        buffer: int = 1000,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        ack_timeout: float | None = 30.0,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
    ) -> None:
        async def make() -> Consumer:
            consumer = Consumer(
                url,
                topic,
                consumer_id,
                secret_key,
                auto_ack=auto_ack,
                buffer=buffer,
                reconnect=reconnect,
                backoff=backoff,
                connect_timeout=connect_timeout,
                ack_timeout=ack_timeout,
                heartbeat=heartbeat,
            )
            await consumer.connect()
            return consumer

        self._consumer = run(make())


class SyncConsoleClient(_Closing):
    """Blocking `ConsoleClient` for the HTTP API."""

    def __init__(
        self, url: str = DEFAULT_URL, secret_key: str = DEFAULT_SECRET_KEY, timeout: float = 30.0
    ) -> None:
        self._client = ConsoleClient(url, secret_key, timeout=timeout)

    def send(
        self,
        topic: str,
        data: str,
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish over HTTP; returns the MessageCode."""
        return run(self._client.send(topic, data, delay, ttl=ttl, message_id=message_id))

    def ping(self) -> None:
        """Raises unless the broker answers with code 0."""
        run(self._client.ping())

    def count(self) -> dict[str, int]:
        """Message counts."""
        return run(self._client.count())

    def config(self) -> dict[str, Any]:
        """Broker configuration."""
        return run(self._client.config())

    def clients(self) -> dict[str, list[dict[str, Any]]]:
        """Connected producers and consumers."""
        return run(self._client.clients())

    def get_message(self, message_code: str) -> dict[str, Any]:
        """One message by code."""
        return run(self._client.get_message(message_code))

    def del_message(self, message_code: str) -> None:
        """Delete one message."""
        run(self._client.del_message(message_code))

    def list_messages(
        self,
        start: TimeLike,
        end: TimeLike,
        status: int = STATUS_ALL,
        topic: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Messages created in [start, end], newest first."""
        return run(self._client.list_messages(start, end, status, topic, page, page_size))

    def scheduled(
        self, topic: str | None = None, page: int = 1, page_size: int = 20
    ) -> tuple[list[dict[str, Any]], int, int]:
        """One page of the delayed messages, soonest first; the total; the broker's clock."""
        return run(self._client.scheduled(topic, page, page_size))

    def deliver_now(self, message_code: str) -> None:
        """Make a delayed message due at once."""
        run(self._client.deliver_now(message_code))

    def requeue(self, message_code: str) -> None:
        """Put a dead (or consumed) message back in its queue."""
        run(self._client.requeue(message_code))

    def trace(self, message_code: str) -> list[dict[str, Any]]:
        """The message's trace events, oldest first."""
        return run(self._client.trace(message_code))

    def nodes(self) -> list[dict[str, Any]]:
        """Cluster nodes."""
        return run(self._client.nodes())

    def close(self) -> None:
        """Close the HTTP session."""
        run(self._client.close())


def send_http(
    url: str,
    topic: str,
    data: str,
    secret_key: str = DEFAULT_SECRET_KEY,
    delay: int = 0,
    *,
    ttl: int | None = None,
    message_id: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Blocking `send_http`: publish over HTTP, return the MessageCode."""
    coro = async_send_http(
        url, topic, data, secret_key, delay, ttl=ttl, message_id=message_id, timeout=timeout
    )
    return run(coro)

"""Pipelined producer (docs/protocol.md "Producer session"): many frames in flight, replies
paired with sends by order."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import aiohttp
import orjson

from kapokmq.client.backoff import Backoff
from kapokmq.client.connection import DEFAULT_HEARTBEAT, DEFAULT_SECRET_KEY, Role
from kapokmq.client.errors import ConnectionLostError, KapokMQError, ProtocolError, SendError
from kapokmq.client.session import Session, log

DataLike = str | bytes | bytearray | memoryview
TOO_BIG = aiohttp.WSCloseCode.MESSAGE_TOO_BIG  # 1009, above the broker's mq.maxMessageBytes
MAX_RESENDS = 3  # connections a frame is sent on, all dropped, before it is given up


def encode_send(
    data: DataLike, delay: int = 0, *, ttl: int | None = None, message_id: str | None = None
) -> bytes:
    """The producer frame for one message: `{"MessageData":...,"DelayTime":...}`, plus the
    optional `TTL` and `MessageId` keys (docs/protocol.md, TTL and Dedup)."""
    if isinstance(data, bytes | bytearray | memoryview):
        data = bytes(data).decode("utf-8")
    if not isinstance(data, str):
        raise TypeError(f"message data must be str or UTF-8 bytes, not {type(data).__name__}")
    seconds: object = delay
    if isinstance(seconds, float) and seconds.is_integer():
        seconds = int(seconds)
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TypeError(f"delay must be whole seconds (int), not {delay!r}")
    frame: dict[str, object] = {"MessageData": data, "DelayTime": seconds}
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
            raise TypeError(f"ttl must be whole seconds >= 0 (int), not {ttl!r}")
        if ttl:  # 0: none of its own, the topic's default applies, as on the wire
            frame["TTL"] = ttl
    if message_id is not None:
        if not isinstance(message_id, str) or not message_id:
            raise TypeError(f"message_id must be a non-empty str, not {message_id!r}")
        frame["MessageId"] = message_id
    return orjson.dumps(frame)


def with_message_ids(
    items: Iterable[DataLike], message_ids: Iterable[str | None] | None
) -> Iterable[tuple[DataLike, str | None]]:
    """A batch's items paired with their ``message_ids`` (one per item, None for an item
    without one); all None without ``message_ids``, the items then read as they are sent.
    Raises ValueError, before anything is sent, when the counts differ."""
    if message_ids is None:
        return ((item, None) for item in items)
    batch, ids = list(items), list(message_ids)
    if len(batch) != len(ids):
        raise ValueError(f"message_ids must give one id per item: {len(ids)} for {len(batch)}")
    return zip(batch, ids, strict=True)


@dataclass(slots=True)
class _Pending:
    frame: bytes
    future: asyncio.Future[None]
    sent_at: float  # loop time of the first write, for send_timeout
    sends: int = 1  # connections it was written on (MAX_RESENDS)


class Producer(Session):
    """Publishes to one topic over `/Producers/Conn/{topic}/{producer_id}`.

    `await send(...)` returns once the broker answered `ok` for that message. Up to
    ``max_in_flight`` messages may await their reply at once. After a reconnect, frames
    that were sent but not confirmed are sent again (at-least-once: a message whose reply
    was lost may be stored twice).
    """

    role: Role = "Producers"

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
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        super().__init__(
            url,
            topic,
            producer_id,
            secret_key,
            reconnect=reconnect,
            backoff=backoff,
            connect_timeout=connect_timeout,
            heartbeat=heartbeat,
            session=session,
        )
        self.max_in_flight = max_in_flight
        self._close_timeout = close_timeout
        if send_timeout is not None and send_timeout <= 0:
            raise ValueError("send_timeout must be positive (or None for no bound)")
        self.send_timeout = send_timeout
        self._expiry: asyncio.TimerHandle | None = None
        # The in-flight window: free slots, and waiters that get a freed slot handed over
        # in FIFO order (cheaper than asyncio.Semaphore on the hot path, and fair).
        self._free = max_in_flight
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pending: collections.deque[_Pending] = collections.deque()

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet answered."""
        return len(self._pending)

    async def send(
        self,
        data: DataLike,
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish one message; raises SendError if the broker rejects it, and
        ConnectionLostError if it is not answered within ``send_timeout`` seconds.

        ``delay`` is in whole seconds; the message is delivered once it is due. ``ttl``:
        seconds after it is due before an unconsumed message is dead (reason `expired`);
        0 or None: no TTL of its own, the topic's default (``mq.topics``) applies.
        ``message_id``: a repeat with the same id within the broker's dedup window is not
        stored again (so a resend after a reconnect is stored once).
        """
        future = await self._submit(encode_send(data, delay, ttl=ttl, message_id=message_id))
        await future

    async def submit(
        self,
        data: DataLike,
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_id: str | None = None,
    ) -> asyncio.Future[None]:
        """Start publishing one message: waits only for a window slot and the write.

        The returned future resolves on the broker's `ok` (or fails with SendError). Use
        it to stream messages without a task per message. Arguments as for `send`.
        """
        return await self._submit(encode_send(data, delay, ttl=ttl, message_id=message_id))

    async def send_many(
        self,
        items: Iterable[DataLike],
        delay: int = 0,
        *,
        ttl: int | None = None,
        message_ids: Iterable[str | None] | None = None,
        return_exceptions: bool = False,
    ) -> list[BaseException | None]:
        """Publish a batch, pipelined; waits for every reply.

        ``delay`` and ``ttl`` apply to every item, as for `send`; ``message_ids`` gives
        each item its own ``message_id`` (one per item, None for none). Returns one entry
        per item (None or the exception). Unless ``return_exceptions``, the first failure
        is raised after all replies arrived.
        """
        futures = [
            await self._submit(encode_send(item, delay, ttl=ttl, message_id=message_id))
            for item, message_id in with_message_ids(items, message_ids)
        ]
        results: list[BaseException | None] = []
        for future in futures:
            try:
                await future
                results.append(None)
            except KapokMQError as exc:
                results.append(exc)
        if not return_exceptions:
            for result in results:
                if result is not None:
                    raise result
        return results

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every message sent so far has its reply (errors are not raised here)."""
        futures = [p.future for p in self._pending]
        if futures:
            await asyncio.wait(futures, timeout=timeout)

    async def close(self) -> None:
        """Wait up to ``close_timeout`` for outstanding replies, then close."""
        if not self._closing and self._fatal is None:
            with contextlib.suppress(Exception):
                await self.flush(self._close_timeout)
        await super().close()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    # -- internals ---------------------------------------------------------------------------

    async def _submit(self, frame: bytes) -> asyncio.Future[None]:
        """Write one frame once a slot and a connection are available; return its reply future."""
        if self._free > 0 and not self._slot_waiters:
            self._free -= 1
        else:
            async with self._bounded("room in the in-flight window"):
                await self._wait_for_slot()
        try:
            ws = self._ws
            if ws is None or not self._ready.is_set() or self._fatal or self._closing:
                async with self._bounded("a connection"):
                    ws = await self._wait_ready()
        except BaseException:
            self._release_slot()
            raise
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append(_Pending(frame, future, loop.time()))
        if self._expiry is None and self.send_timeout is not None:
            self._expiry = loop.call_later(self.send_timeout / 4, self._expire)
        # The frame is queued before the first suspension point, so wire order == deque order.
        # A failed write means a dead socket: the reader notices and the frame is resent.
        with contextlib.suppress(aiohttp.ClientError, OSError):
            await ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
        return future

    @contextlib.asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        """Wait at most ``send_timeout`` for ``what``; then ConnectionLostError."""
        try:
            async with asyncio.timeout(self.send_timeout):
                yield
        except TimeoutError as exc:
            raise ConnectionLostError(
                f"no {what} to {self._ws_url} within {self.send_timeout:g} s"
                + ("" if self.connected else " (reconnecting)")
            ) from exc

    def _expire(self) -> None:
        """Fail the sends unanswered for ``send_timeout`` (a broker that stopped answering).

        They stay in the queue: a late reply still pairs with its frame, and a reconnect
        still resends them (so a timed-out message may yet be stored)."""
        self._expiry = None
        assert self.send_timeout is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for pending in self._pending:
            if now - pending.sent_at < self.send_timeout:
                break
            if not pending.future.done():
                state = "" if self.connected else " (reconnecting)"
                pending.future.set_exception(
                    ConnectionLostError(
                        f"no reply from {self._ws_url} within {self.send_timeout:g} s{state}"
                    )
                )
                pending.future.exception()  # retrieved: the caller may have stopped waiting
        if self._pending and not self._closing:
            self._expiry = loop.call_later(self.send_timeout / 4, self._expire)

    async def _wait_for_slot(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # a slot was handed over just as we were cancelled
            else:
                self._slot_waiters.remove(waiter)
            raise

    def _release_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def _on_connected(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # A frame that kills every connection it is sent on (one far above a limit on the
        # way, dropped without a close 1009) must not be resent forever: of those sent
        # MAX_RESENDS times, the biggest is given up, not the first: frames sent just
        # before it die with it, unanswered (docs/client.md "Reconnecting, errors and
        # closing").
        worn = [pending for pending in self._pending if pending.sends >= MAX_RESENDS]
        if worn:
            culprit = max(worn, key=lambda pending: len(pending.frame))
            self._pending.remove(culprit)
            self._settle(
                culprit,
                ConnectionLostError(f"connection dropped {MAX_RESENDS} times sending this message"),
            )
        for pending in list(self._pending):
            pending.sends += 1
            await ws.send_frame(pending.frame, aiohttp.WSMsgType.TEXT)

    def _on_fatal(self, exc: KapokMQError) -> None:
        while self._pending:
            self._settle(self._pending.popleft(), exc)

    def _settle(self, pending: _Pending, exc: BaseException | None) -> None:
        self._release_slot()
        future = pending.future
        if future.done():
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
            # Mark retrieved: a caller that stopped waiting (cancelled) must not cause a warning.
            future.exception()

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                reply = str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                reply = bytes(msg.data).decode("utf-8", "replace")
            else:
                if msg.type == aiohttp.WSMsgType.CLOSE and msg.data == TOO_BIG and self._pending:
                    # The biggest unanswered frame was too big. Smaller ones sent with it may be
                    # stored without their `ok` (the broker may close before answering frames of
                    # the same read), so they are resent after the reconnect like any other.
                    culprit = max(self._pending, key=lambda pending: len(pending.frame))
                    self._pending.remove(culprit)
                    reason = f"error: message too big for the broker (closed {TOO_BIG})"
                    self._settle(culprit, SendError(reason))
                    self._drop_explained = True
                    # The connections dropped so far are the culprit's doing: the others
                    # start afresh, or one that died with it would be given up for it.
                    for pending in self._pending:
                        pending.sends = 0
                return
            if not self._pending:
                log.warning("producer %s: reply %r with nothing in flight", self.client_id, reply)
                continue
            pending = self._pending.popleft()
            if reply == "ok":
                self._settle(pending, None)
            elif reply.startswith("error:"):
                self._settle(pending, SendError(reply))
            else:
                self._settle(pending, ProtocolError(f"unexpected producer reply {reply[:80]!r}"))

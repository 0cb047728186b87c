"""Consumer (docs/protocol.md "Consumer session"): messages pushed one per frame, acked by
sending their MessageCode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aiohttp

from kapokmq.client.backoff import Backoff
from kapokmq.client.connection import DEFAULT_HEARTBEAT, DEFAULT_SECRET_KEY, Role
from kapokmq.client.errors import ConnectionLostError, KapokMQError, ProtocolError
from kapokmq.client.lifecycle import MessageStream
from kapokmq.client.message import Message
from kapokmq.client.session import Session, log

Handler = Callable[[Message], Awaitable[None]]


class _End:
    """Queue sentinel: the consumer is finished; ``error`` says why, if it failed."""

    __slots__ = ("error",)

    def __init__(self, error: KapokMQError | None) -> None:
        self.error = error


class Consumer(MessageStream, Session):
    """Receives the messages of one topic over `/Consumers/Conn/{topic}/{consumer_id}`.

    Iterate with ``async for msg in consumer`` and call ``await msg.ack()``. With
    ``auto_ack`` the iterator acks each message as it hands it out (at-most-once for your
    code); `run(handler)` instead acks after the handler returns (at-least-once) and runs
    up to ``concurrency`` handlers at a time. ``buffer`` bounds the messages read ahead
    of your code; beyond it the socket is not read, so the broker's window fills up.
    """

    role: Role = "Consumers"

    def __init__(
        self,
        url: str,
        topic: str,
        consumer_id: str,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        auto_ack: bool = False,
        concurrency: int = 1,
        buffer: int = 1000,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        ack_timeout: float | None = 30.0,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if concurrency < 1 or buffer < 1:
            raise ValueError("concurrency and buffer must be at least 1")
        super().__init__(
            url,
            topic,
            consumer_id,
            secret_key,
            reconnect=reconnect,
            backoff=backoff,
            connect_timeout=connect_timeout,
            heartbeat=heartbeat,
            session=session,
        )
        self.auto_ack = auto_ack
        self.ack_timeout = ack_timeout
        self.concurrency = concurrency
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue(buffer)
        self._ack_bound = self.ack

    # -- receiving ---------------------------------------------------------------------------

    async def __anext__(self) -> Message:
        msg = await self._next()
        if msg is None:
            raise StopAsyncIteration
        if self.auto_ack:
            await msg.ack()
        return msg

    async def run(self, handler: Handler) -> None:
        """Call ``handler`` for every message, ``concurrency`` at a time, until closed.

        With ``auto_ack`` a message is acked when its handler returns; a handler that
        raises leaves it unacked, so the broker delivers it again later.
        """
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def handle(msg: Message) -> None:
            try:
                await handler(msg)
                if self.auto_ack:
                    await msg.ack()
            except Exception:
                log.exception("consumer %s: handler failed on %s", self.client_id, msg.message_code)
            finally:
                slots.release()

        try:
            while True:
                await slots.acquire()
                msg = await self._next()
                if msg is None:
                    break
                task = asyncio.create_task(handle(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def ack(self, message_code: str) -> None:
        """Acknowledge by code; the broker sends no reply. Waits through a reconnect, up to
        ``ack_timeout`` seconds (then ConnectionLostError; the broker redelivers it)."""
        ws = self._ws
        if ws is None or not self._ready.is_set() or self._fatal or self._closing:
            try:
                async with asyncio.timeout(self.ack_timeout):
                    ws = await self._wait_ready()
            except TimeoutError as exc:
                raise ConnectionLostError(
                    f"not connected to {self._ws_url} within {self.ack_timeout:g} s to ack"
                ) from exc
        with contextlib.suppress(aiohttp.ClientError, OSError):
            await ws.send_frame(message_code.encode(), aiohttp.WSMsgType.TEXT)

    # -- internals ---------------------------------------------------------------------------

    async def _next(self) -> Message | None:
        if self._runner is None and not self._closing and self._fatal is None:
            await self.connect()
        queue = self._queue
        item = queue.get_nowait() if queue.qsize() else await queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # let every other waiter see the end as well
            if item.error is not None and not self._closing:
                raise item.error
            return None
        return item

    def _on_fatal(self, exc: KapokMQError) -> None:
        # Drop read-ahead messages (unacked, so the broker redelivers them) and end iteration.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_End(None if self._closing else exc))

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            frame = await ws.receive()
            if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                return
            try:
                msg = Message.from_wire(frame.data, self._ack_bound)
            except ProtocolError as exc:
                log.warning("consumer %s: skipped a bad frame: %s", self.client_id, exc)
                continue
            if self._queue.full():
                await self._queue.put(msg)
            else:
                self._queue.put_nowait(msg)
